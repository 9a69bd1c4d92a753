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
# # 06 · Vision + language: MM-LoRA and QLadder (Arcana) on real images
#
# A frozen ImageNet CNN (EfficientNet-Lite0) turns a 96 px image into 3×3 = 9 **visual tokens**; a
# projector maps them into SmolLM2's embedding space, where they sit in the chat prompt like words.
# Arcana adds two things, both here as components of the workbench:
#
# * **MM-LoRA**: every linear layer of the LM gets two LoRAs, a *vision* one and a *language* one with
#   their own ranks; each token goes through exactly one, chosen by its modality (no learned gate);
# * **QLadder**: a few learned queries climb the frozen encoder stage by stage, cross-attending to each
#   stage's feature map, and are appended as extra visual tokens.
#
# The tasks are real images composed into Point-Detect-Count-style questions: Fashion-MNIST items to
# name ("what is this?") and scenes of 1-4 items to count. We train the projector first (stage 1), then
# compare MM-LoRA against **one shared LoRA of the same parameter budget**, with and without QLadder
# (stage 2). With `LORA_WORKBENCH_QUICK=1` the schedules are a few steps (numbers are then noise).

# %%
import os

import pandas as pd

import workbench as wb
from workbench import multimodal as mm
from workbench.tasks import multimodal as mmt
from workbench.multimodal.analysis import ladder_attention, modality_map
from widgets import ModalityMap, QLadderAttention

QUICK = os.environ.get("LORA_WORKBENCH_QUICK") == "1"
STEPS = (3, 3) if QUICK else (40, 60)  # (stage 1 projector, stage 2 adapters)
N_TRAIN, N_EVAL, BATCH = (24, 6, 4) if QUICK else (300, 60, 8)
R_VISION, R_LANGUAGE = 4, 12  # MM-LoRA ranks; the shared LoRA gets r = 16, the same budget

lab = wb.Workbench.from_zoo("smollm2-135m")
encoder = wb.zoo.load("efficientnet-lite0").model
tasks = [mmt.MM_TASKS.get(n)(n_train=N_TRAIN, n_eval=N_EVAL) for n in ["fashion-naming", "fashion-count"]]
tasks

# %% [markdown]
# ## The data: real items, composed scenes

# %%
import plotly.express as px

scene = tasks[1].eval[0]
print(scene.prompt, "->", scene.target)
px.imshow(scene.image, color_continuous_scale="gray", width=280, height=280)

# %% [markdown]
# ## Stage 1 (projector) and stage 2 (adapters), four variants
#
# The same stage-1 projector (and ladder) starts every stage-2 variant, so they differ only in the
# adapter. MM-LoRA: r_V = 4, r_L = 12; shared: r = 16 — both 16·(in + out) parameters per module.

# %%
def front_state(vlm):
    return {k: v.detach().clone() for k, v in vlm.state_dict().items()
            if k.startswith(("projector", "ladder"))}


def run_variant(vlm, name, start, kind):
    vlm.load_state_dict(start, strict=False)  # the stage-1 front end
    if kind == "mm":
        vlm.add_mm_lora(name, r_vision=R_VISION, r_language=R_LANGUAGE, targets="attention", dropout=0.0)
    else:
        vlm.add_shared_lora(name, r=R_VISION + R_LANGUAGE, targets="attention")
    history = mm.train_stages(vlm, tasks, [mm.Stage("adapters", use=name, steps=STEPS[1], lr=2e-3)],
                              batch_size=BATCH)
    scores = mm.evaluate_joined(vlm, tasks, {name: name})
    fronts[name] = front_state(vlm)  # this variant's trained projector (and ladder)
    return history.loss.iloc[-1], scores


results, fronts, models = [], {}, {}
for ladder in (0, 4):
    vlm = mm.VisionLanguageModel(lab, encoder, image_size=96, ladder_queries=ladder)
    h1 = mm.train_stages(vlm, tasks, [mm.Stage("projector", use=None, steps=STEPS[0], lr=2e-3)],
                         batch_size=BATCH)
    start = front_state(vlm)
    base_scores = mm.evaluate_joined(vlm, tasks, {"projector only": None})
    results.append(base_scores.assign(ladder=ladder, params=0))
    for kind in ("mm", "shared"):
        name = f"{kind}_q{ladder}"
        last, scores = run_variant(vlm, name, start, kind)
        used = lab.routers[name] if name in lab.routers else lab.adapters[name]
        n = used.n_parameters() if name in lab.routers else used.num_parameters()
        results.append(scores.assign(ladder=ladder, params=n))
    models[ladder] = vlm
table = pd.concat(results).pivot_table(index=["ladder", "adapter", "params"], columns="task", values="value")
table

# %% [markdown]
# `fashion-naming` is label accuracy (higher is better), `fashion-count` is count MAE (lower is better).
# `params` is the adapter's size: MM-LoRA and the shared LoRA have the same budget. The yardsticks: a
# guess names 1 item in 10, and the asked class appears 0-4 times uniformly, so the best constant count
# ("2") has an MAE of about 1.2; a model that has not learned to look scores there.

# %%
from workbench.tasks.multimodal.metrics import count_mae

counts = tasks[1]
{"naming: chance": 1 / len(tasks[0].labels),
 "count: best constant answer": min(count_mae([str(c)] * len(counts.eval), counts.eval) for c in range(5))}

# %% [markdown]
# ## What the MM-LoRA does, token by token and layer by layer

# %%
vlm_q4 = models[4]
vlm_q4.load_state_dict(fronts["mm_q4"], strict=False)
run = modality_map(vlm_q4, "mm_q4", tasks[0], tasks[0].eval[0])
mmap = ModalityMap.from_run(run, title="MM-LoRA with QLadder: which branch each token took, and per layer "
                                       "the size of each branch's update")
mmap

# %%
run.norms.groupby("adapter").value.sum()  # total vision vs language update on this example

# %% [markdown]
# ## Where the QLadder queries look, rung by rung

# %%
attention = ladder_attention(vlm_q4, scene.image)
ladder_view = QLadderAttention.from_arrays(scene.image, attention)
ladder_view.stage = len(attention) - 3
ladder_view

# %%
ladder_view.stage, ladder_view.attention["stage"]  # choose a rung above, re-run: Python drew that rung's map
