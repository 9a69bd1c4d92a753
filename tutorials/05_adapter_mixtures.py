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
# # 05 · Adapter mixtures: a gate that picks adapters per token
#
# You already have adapters, each good at one task. A **mixture** keeps them all and lets a small
# gate choose, token by token and module by module, which ones to apply. **MeteoRA** (Xu et al.,
# ICLR'25) does exactly that over a frozen bank: at every projection a gate W_g x scores the L
# adapters, the top k = 2 are kept and softmax-weighted, and only the gates are trained — with a
# cross-entropy that teaches each gate to name the task of the sample it sees.
#
# The ready router `routers/meteora` holds such gates over the four ready adapters (arithmetic,
# topic, language, code), trained 60 steps on all four tasks by `scripts/train_ready_routers.py`.
# In this notebook:
#
# 1. how well each layer's gate recognises the task (gate accuracy against the true task);
# 2. what the mixture scores against each adapter alone, on that adapter's own task;
# 3. a **composite prompt** that needs two adapters in one pass: does the gate switch adapters
#    between the two parts of the prompt?
# 4. freezing the mixture into one static adapter, and how far that is from the routed model;
# 5. the other mixtures in the registry.

# %%
import os

import pandas as pd
import plotly.graph_objects as go
import torch

import workbench as wb
from workbench import ready, ready_routers
from workbench.analysis.routing import records
from workbench.routing import ROUTERS
from workbench.analysis.observe import observe, task_prompts
from widgets import ExpertLoad, PromptWhatIf, TokenRouting, score_bars

QUICK = os.environ.get("LORA_WORKBENCH_QUICK") == "1"  # set by `make test`: small samples
N_PROMPTS = 6 if QUICK else 32     # held-out prompts per task for the gate statistics
EVAL_LIMIT = 4 if QUICK else None  # held-out examples per task for the live scores (None = all)
N_COMPOSITE = 4 if QUICK else 24   # composite prompts
torch.manual_seed(0)

lab = wb.Workbench.from_zoo("smollm2-135m")
ready.load_all(lab)
ready_routers.load(lab, "meteora")
gate = lab.routers["meteora"]
BANK = list(ready.NAMES)  # the gate's experts, in order
gate

# %% [markdown]
# ## 1. Does each gate recognise the task?
#
# `observe(..., targets=...)` runs the router over each task's held-out prompts and scores, per
# module, the share of real tokens whose dominant adapter is the task's own (chance: 1/4).

# %%
prompts = task_prompts(lab, BANK, n=N_PROMPTS)
seen = observe(lab, "meteora", prompts, targets={task: i for i, task in enumerate(BANK)})
per_layer = seen.accuracy.groupby(["group", "layer"], as_index=False)["accuracy"].mean()
fig = go.Figure()
for task, part in per_layer.groupby("group", sort=False):
    fig.add_scatter(x=part.layer, y=part.accuracy, name=task, mode="lines+markers")
fig.add_hline(y=1 / len(BANK), line_dash="dot", annotation_text="chance")
fig.update_layout(title="MeteoRA gate accuracy against the true task, per layer (mean over q, k, v, o)",
                  xaxis_title="layer", yaxis_title="tokens routed to their task's adapter",
                  yaxis_range=[0, 1], template="plotly_white", height=400)
fig

# %%
by_task = seen.accuracy.groupby("group")["accuracy"].agg(["mean", "min", "max"]).loc[BANK]
first, last = per_layer.layer.min(), per_layer.layer.max()
by_task["first layer"] = per_layer[per_layer.layer == first].set_index("group").loc[BANK, "accuracy"]
by_task["last layer"] = per_layer[per_layer.layer == last].set_index("group").loc[BANK, "accuracy"]
by_task.round(3)

# %% [markdown]
# Which adapter does each task's text get instead? The mean gate weight of every bank adapter on
# each task's tokens (rows: the task of the prompt; columns: the adapter):

# %%
weights = seen.frequency.groupby(["group", "expert"])["mean_weight"].mean().unstack()
weights.columns = [BANK[e] for e in weights.columns]
weights.loc[BANK].round(3)

# %% [markdown]
# `ExpertLoad` shows how the tokens of all four tasks together spread over the bank, per layer, and
# under it the gate loss over the 60 training steps (50 · cross-entropy of the gates against the
# task, from `routers/meteora.history.csv`).

# %%
history = pd.read_csv(ready_routers.root() / "meteora.history.csv")
ExpertLoad.from_frame(seen.load.groupby(["layer", "module", "router", "expert"], as_index=False)
           [["load", "entropy", "cv"]].mean(), history=history, experts=BANK)

# %% [markdown]
# ## 2. The mixture against each adapter alone
#
# The full held-out scores of the shipped router (`routers/scores.csv`) and of the ready adapters
# (`adapters/scores.csv`), on each adapter's own task; the normalised score is mixture ÷ solo for
# the accuracy tasks and solo ÷ mixture for code's loss (above 1 = the mixture is better).

# %%
solo = pd.read_csv(ready.root() / "scores.csv")
mix = pd.read_csv(ready_routers.root() / "scores.csv")
rows = []
for task in BANK:
    own = solo[(solo.adapter == task) & (solo.task == task)].iloc[0]
    m = mix[(mix.adapter == "meteora") & (mix.task == task)].iloc[0]
    ratio = m.value / own.value if own.higher_is_better else own.value / m.value
    rows.append({"task": task, "metric": own.metric, "solo adapter": own.value, "meteora": m.value,
                 "normalised": ratio, "n": int(own.n)})
pd.DataFrame(rows).round(3)

# %% [markdown]
# The same comparison live, on the first held-out examples (all of them in full mode):

# %%
tasks = wb.tasks.load(BANK)
live = lab.evaluate(["meteora", *BANK], tasks, limit=EVAL_LIMIT)
score_bars(live, title="MeteoRA over the four ready adapters against each adapter alone")

# %% [markdown]
# ## 3. A composite prompt: two skills in one pass
#
# Each composite prompt asks two things of two tasks at once: *which language is this sentence in*
# (the language adapter) and *an arithmetic question* (the arithmetic adapter). A per-token gate
# can switch adapters between the two parts; a single static adapter cannot. We measure, for the
# tokens of each part, the share routed to each adapter (dominant gate weight), over all modules.

# %%
lang, arith = tasks["language"], tasks["arithmetic"]
composites = []
for i in range(N_COMPOSITE):
    first_part, second_part = lang.eval[i].prompt, arith.eval[i].prompt
    composites.append((first_part, second_part))


def segment_of_tokens(first_part: str, second_part: str):
    """The chat prompt of the composite question and, per token, which part it belongs to."""
    text = wb.tasks.chat_prompt(lab.tokenizer, lang, wb.tasks.Example(f"{first_part}\n\n{second_part}", ""))
    start1 = text.index(first_part)
    start2 = text.index(second_part, start1 + len(first_part))
    enc = lab.tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    parts = ["language part" if start1 <= a < start1 + len(first_part) else
             "arithmetic part" if start2 <= a < start2 + len(second_part) else "template"
             for a, _ in enc["offset_mapping"]]
    return text, parts


shares = []
with lab.using("meteora"):
    for first_part, second_part in composites:
        text, parts = segment_of_tokens(first_part, second_part)
        _, cache = lab.run(lab.encode(text), record="*.routes.meteora.hook_route")
        for (layer, _module, _router), rec in records(cache).items():
            best = rec.weights[0].abs().argmax(-1)  # (T,)
            for part, expert in zip(parts, best.tolist(), strict=True):
                shares.append((part, layer, BANK[expert]))
shares = pd.DataFrame(shares, columns=["part", "layer", "adapter"])
composite = pd.crosstab(shares.part, shares.adapter, normalize="index").reindex(columns=BANK, fill_value=0)
composite.loc[["language part", "arithmetic part", "template"]].round(3)

# %%
late = shares[shares.layer >= shares.layer.max() - 9]  # the last ten layers, where gates are sharpest
late_table = pd.crosstab(late.part, late.adapter, normalize="index").reindex(columns=BANK, fill_value=0)
switch = (late_table.loc["language part", "language"], late_table.loc["arithmetic part", "arithmetic"])
print(f"last ten layers: {switch[0]:.2f} of the language part's token routings go to the language "
      f"adapter, {switch[1]:.2f} of the arithmetic part's to the arithmetic adapter "
      f"(over {N_COMPOSITE} composite prompts)")
late_table.loc[["language part", "arithmetic part"]].round(3)

# %% [markdown]
# One composite prompt token by token: choose a module in the select; each token is coloured by
# the adapter with the largest gate weight there (hover for all four weights).

# %%
text, parts = segment_of_tokens(*composites[0])
batch = lab.encode(text)
with lab.using("meteora"):
    _, cache = lab.run(batch, record="*.routes.meteora.hook_route")
TokenRouting.from_cache(cache, lab.tokenizer.convert_ids_to_tokens(batch["input_ids"][0]), experts=BANK)

# %% [markdown]
# What the model answers with the mixture, and with each of the two adapters alone:

# %%
question = f"{composites[0][0]}\n\n{composites[0][1]}"
replies = {}
for spec in ("meteora", "language", "arithmetic"):
    with lab.using(spec):
        replies[spec] = lab.chat(question, max_new_tokens=24)
pd.DataFrame({"applied": list(replies), "reply": list(replies.values())})

# %% [markdown]
# ## 4. Edit the prompt, watch the routing, freeze it
#
# `PromptWhatIf` reroutes whatever you type (press "route" or leave the box). "freeze" averages the
# gate weights over the prompt's tokens into one static weighted merge of the bank
# (`workbench.routing.freeze`) and reports how far its next-token distributions are from the routed
# model's. Below, the same freeze from code, over all the composite prompts.

# %%
what_if = PromptWhatIf.from_lab(lab, "meteora", question)
what_if

# %% [markdown]
# What the box holds and what "freeze" added are plain Python values (type, route, freeze, then run):

# %%
what_if.prompt.value

# %%
[a.name for a in what_if.frozen]

# %%
frozen, report = wb.routing.freeze(lab, "meteora", [segment_of_tokens(*c)[0] for c in composites])
print(f"frozen adapter {frozen.name!r}: relative logit error {report['rel_logit_error']:.3f}, "
      f"KL(routed ‖ frozen) {report['kl']:.4f} nats, top-1 agreement {report['top1_agreement']:.3f} "
      f"over {report['tokens']} tokens")
report["weights"].groupby("adapter")["weight"].mean().loc[BANK].round(3)

# %% [markdown]
# ## 5. The other mixtures and conditioned adapters
#
# Every mechanism is a registered router, added with `lab.add_router(name, mechanism, ...)`, trained
# with `lab.train_router(...)` (its balance or gate losses are added to the task loss), recorded
# with `record="*.hook_route"` and drawn by the same views. The registry, with what each one does,
# its capability flags (`bank`: routes over the lab's adapters; `freezable`: `freeze` turns it into
# one adapter; `needs_*`: what the routing context must carry) and its source:

# %%
pd.DataFrame([{"mechanism": n, "what it does": p.summary, "flags": sorted(p.flags), "reference": p.reference}
              for n, p in ((n, ROUTERS.info(n)) for n in ROUTERS.names())])
