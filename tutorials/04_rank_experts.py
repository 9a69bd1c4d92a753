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
# # 04 · Rank-wise experts: which ranks fire, for which task
#
# A LoRA of rank r is a sum of r rank-1 updates, ΔW·x = s·Σᵢ bᵢ (aᵢ·x). **Rank-wise experts** treat
# each of those rank-1 pieces as an expert and let a router pick k of them per token:
#
# - **SMoRA** (Zhao et al., 2025): a sigmoid router over the r ranks, top-k per token, gates
#   renormalised to sum to k, scale α/k; balance by a bias on the router's scores that moves toward
#   less-used ranks (no auxiliary loss).
# - **FlyLoRA** (Zou et al., 2025): A is a *frozen* sparse random projection and is the router itself:
#   the k ranks with the largest |A·x| fire; only B is trained (plus the same kind of bias).
# - **MoRA** (in the registry as `mora`, reconstructed from the paper: rank-1 experts added per task).
#
# The ready routers in `routers/` were trained by `scripts/train_ready_routers.py` on three tasks at
# once (arithmetic, topic, language), 100 steps each, with the **same trainable budget per layer**
# as a plain LoRA of rank 26 (`lora_r26`, trained the same way). This notebook asks:
#
# 1. how do they score against that plain LoRA;
# 2. do their per-rank activation maps **separate the tasks** (does arithmetic use other ranks than
#    topic?), measured against a yardstick — how much two halves of *one* task share;
# 3. how evenly the load spreads over the ranks, and what a single prompt's routing looks like.

# %%
import os

import pandas as pd
import plotly.graph_objects as go
import torch

import workbench as wb
from workbench import ready_routers
from workbench.analysis.routing import active_overlap, chance_overlap, task_separation
from workbench.analysis.observe import observe, task_prompts
from widgets import ExpertLoad, RankActivations, TokenRouting, score_bars

QUICK = os.environ.get("LORA_WORKBENCH_QUICK") == "1"  # set by `make test`: small samples
N_PROMPTS = 8 if QUICK else 32    # held-out prompts per task for the routing maps
EVAL_LIMIT = 4 if QUICK else None  # held-out examples per task for the live scores (None = all)
torch.manual_seed(0)

lab = wb.Workbench.from_zoo("smollm2-135m")
ready_routers.load_all(lab, ["lora_r26", "smora", "flylora"])
TASKS = ready_routers.TASKS
MODELS = ["lora_r26", "smora", "flylora"]
budget = {"lora_r26": sum(f.A.numel() + f.B.numel() for f in lab.adapters["lora_r26"].modules.values()),
          **{n: lab.routers[n].n_parameters(trainable_only=True) for n in ("smora", "flylora")}}
pd.DataFrame([{"model": n, "mechanism": lab.routers[n].mechanism if n in lab.routers else "plain LoRA",
               "settings": ", ".join(f"{k}={v}" for k, v in ready_routers.RECIPES[n][1].items()
                                     if k in ("r", "k", "alpha")),
               "trainable parameters": budget[n]} for n in MODELS])

# %% [markdown]
# The budgets match by construction: SMoRA trains A, B and a router over 16 ranks; FlyLoRA trains
# only B over 64 ranks (its A is frozen and rebuilt from a seed); the plain LoRA has rank 26.
#
# ## 1. Scores against a plain LoRA of the same budget
#
# The full held-out scores (64 arithmetic, 64 topic, 96 language examples), computed by
# `python scripts/train_ready_routers.py` and shipped in `routers/scores.csv`:

# %%
shipped = pd.read_csv(ready_routers.root() / "scores.csv")
shipped = shipped[shipped.adapter.isin(["base", *MODELS]) & shipped.task.isin(TASKS)]
score_bars(shipped, title="Held-out scores (routers/scores.csv): same budget, same three tasks")

# %%
table = shipped.pivot(index="adapter", columns="task", values="value")
n = shipped.groupby("task")["n"].first()
for model in ("smora", "flylora"):
    diffs = ", ".join(f"{t} {table.loc[model, t] - table.loc['lora_r26', t]:+.3f} "
                      f"({round((table.loc[model, t] - table.loc['lora_r26', t]) * n[t]):+d} of {n[t]})"
                      for t in TASKS)
    print(f"{model} against the plain LoRA of the same budget: {diffs}")

# %% [markdown]
# The same evaluation, live, on the first examples of each held-out split (all of them when this
# notebook runs in full; a few under `make test`). With 64 examples, one example is 1.6 points: a
# difference of one or two examples is noise.

# %%
tasks = wb.tasks.load(TASKS)
live = lab.evaluate([None, *MODELS], tasks, limit=EVAL_LIMIT)
live.pivot(index="adapter", columns="task", values="value").round(3)

# %% [markdown]
# ## 2. Do the per-rank activation maps separate the tasks?
#
# `observe` runs a router over each group of prompts and records, at every routed module, which
# ranks each real token used. `RankActivations` draws the layer × rank frequency for the task you
# click, with the tasks' overlap of their most used ranks beside it. Each task's prompts are split
# in two halves, so that the overlap between *tasks* can be compared with the overlap between two
# halves of *the same* task.

# %%
prompts = task_prompts(lab, TASKS, n=N_PROMPTS)
halves = {f"{task}/{h}": texts[h::2] for task, texts in prompts.items() for h in (0, 1)}
task_of = {group: group.split("/")[0] for group in halves}
seen = {name: observe(lab, name, halves) for name in ("smora", "flylora")}
KEYS = ["layer", "module", "router", "group", "expert"]
whole = {name: s.frequency.assign(group=s.frequency.group.map(task_of))  # halves back into tasks
         .groupby(KEYS, as_index=False, sort=False)[["frequency", "mean_weight"]].mean()
         for name, s in seen.items()}
smora_map = RankActivations.from_frame(whole["smora"])
smora_map

# %% [markdown]
# The view is two-way: the task you click is `smora_map.choice` in Python (and the cell you click is
# `smora_map.selected`). Click a task above, then run the next cell.

# %%
smora_map.choice  # click a task button above, then run this cell

# %%
RankActivations.from_frame(whole["flylora"])

# %% [markdown]
# How much do the tasks share their most active ranks? The Jaccard overlap of the top-k sets
# (k = the router's own k) per module, averaged per layer: **within** = two halves of one task,
# **across** = two different tasks, and **chance** = two random k-subsets of the r ranks.

# %%
K = {"smora": (16, 4), "flylora": (64, 16)}  # (ranks r, active k)
separation = pd.concat([task_separation(active_overlap(s.frequency, top=K[n][1]), task_of)
                        for n, s in seen.items()])
summary = separation.groupby("router")[["within", "across", "separation"]].mean()
summary["chance"] = [chance_overlap(*K[r]) for r in summary.index]
summary.round(3)

# %%
fig = go.Figure()
for router, part in separation.groupby("router"):
    fig.add_scatter(x=part.layer, y=part.within, name=f"{router}: within a task", mode="lines")
    fig.add_scatter(x=part.layer, y=part.across, name=f"{router}: across tasks", mode="lines",
                    line=dict(dash="dash"))
fig.update_layout(title="Overlap of the top-k ranks, layer by layer (1 = the same ranks)",
                  xaxis_title="layer", yaxis_title="Jaccard overlap", template="plotly_white", height=380)
fig

# %%
best = separation.loc[separation.groupby("router")["separation"].idxmax()]
for r, row in summary.iterrows():
    at = best[best.router == r].iloc[0]
    print(f"{r}: tasks share {row.across:.2f} of their top-{K[r][1]} ranks, "
          f"halves of one task {row.within:.2f} "
          f"(chance {row.chance:.2f}); the clearest separation is at layer {int(at.layer)} "
          f"({at.within:.2f} within vs {at.across:.2f} across)")

# %% [markdown]
# How to read this: a separation (within − across) near zero means the router gives tasks no ranks
# of their own — arithmetic and topic share ranks as much as two halves of arithmetic do; a large
# positive separation means each task has its own set. Overlaps far above chance mean a few ranks
# serve every token of every task. (All tasks use the same system prompt, so the template tokens
# raise *both* overlaps alike; the difference comes from the task text.)
#
# FlyLoRA's routing is not learned at all: its A is a frozen random projection, so the ranks that
# fire are the directions of the input it happens to project onto most. If it separates the tasks,
# that is the tasks' inputs pointing in different directions, not training. SMoRA's router is
# trained; its bias update pushes toward using all ranks equally, which works against task-specific
# sets.
#
# ## 3. Load and a single prompt
#
# `ExpertLoad` shows how the token assignments spread over the ranks per layer (uniform is 1/r),
# with each layer's routing entropy H and coefficient of variation cv (0 = perfectly balanced).
# SMoRA balances with its score bias, which moves toward under-used ranks during training.

# %%
load = seen["smora"].load.groupby(["layer", "module", "router", "expert"], as_index=False)[
    ["load", "entropy", "cv"]].mean()  # the halves' loads, averaged
ExpertLoad.from_frame(load)

# %% [markdown]
# And one prompt, token by token: each token coloured by its dominant rank at the module chosen in
# the select (hover a token for its gate weights).

# %%
prompt = prompts["arithmetic"][0]
batch = lab.encode(prompt)
with lab.using("smora"):
    _, cache = lab.run(batch, record="*.routes.smora.hook_route")
tokens = lab.tokenizer.convert_ids_to_tokens(batch["input_ids"][0])
token_view = TokenRouting.from_cache(cache, tokens)
token_view

# %%
token_view.module  # the module chosen in the select above

# %% [markdown]
# ## 4. SMoRA's balancing bias and its gate values
#
# SMoRA keeps its ranks in use with a bias that is not trained: after every training forward each rank's
# bias moves by u = 1e-5 up if the rank was selected less than the mean, down if more. The bias is in
# the gate itself: top-k compares g + b, and the gates are those *biased* values renormalised to sum
# to k. `SMoRAGates` shows, per layer (select), the bias of every rank over steps with the load CV under
# it, and (button "gate values") the histogram of a selected rank's value at its three stages: the
# router's score g, the biased g + b and the applied gate G / k; beside it, how often each rank is
# selected. The trajectory here is a *replay*: the ready router's balancing updates run for a few
# training-mode forwards on the held-out prompts (no optimizer step, no gradient), then its bias is
# restored: the bias starts where the 100 training steps left it.

# %%
from workbench.analysis.bias_trace import bias_trajectory, gate_values, trace_routes
from widgets import SMoRAGates

REPLAY = 6 if QUICK else 24  # training-mode forwards of the replay
few = lab.encode([p for t in TASKS for p in prompts[t][:2]])
saved = {path: r.bias.clone() for path, r in lab.routers["smora"].modules.items()}
with torch.no_grad(), trace_routes(lab.model, "*.routes.smora.hook_route") as trace:
    with lab.session("smora", train=True):
        for _ in range(REPLAY):
            lab.model(**few)
for path, r in lab.routers["smora"].modules.items():
    r.bias.copy_(saved[path])  # the ready router as it was
with lab.using("smora"):
    _, gates_cache = lab.run(few, record="*.routes.smora.hook_route")
smora_gates = SMoRAGates.from_frames(gate_values(gates_cache, mask=few["attention_mask"]),
                                     bias_trajectory(trace))
smora_gates

# %%
smora_gates.choice, smora_gates.option  # the button and the layer chosen above

# %% [markdown]
# ## What to take away
#
# - At the same trainable budget and 100 steps, the printed differences against the plain LoRA (in
#   examples of the held-out split) say whether rank-wise routing pays here; the papers report an
#   advantage for SMoRA over a plain LoRA of the same budget, at far longer training.
# - The activation maps answer the routing question directly: the within/across table says whether
#   the tasks got ranks of their own. Retrain with `make routers` (other tasks, more steps, other k)
#   and rerun this notebook to see whether that changes.
