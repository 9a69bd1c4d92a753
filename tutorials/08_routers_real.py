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
# # 08 · Routers on the real model: MixLoRA and LoRAMoE, their claims tried over seeds
#
# Two mixtures of LoRA experts put *inside the FFN* of SmolLM2, each against a plain LoRA with the
# **same number of trainable parameters**, trained on the same real tasks with the same steps,
# learning rate, batch and seeds:
#
# - **MixLoRA** (Li et al., 2024): E LoRA experts share each frozen FFN, a router sends every token
#   to its top-k; a plain LoRA sits on the attention. Its paper claims that (1) its multi-task score is
#   at least a plain LoRA's, (2) the experts specialize by task, and (3) its auxiliary loss balances
#   the load over the experts. MoE-PEFT's code also has two other routings, here as their own
#   mechanisms: `mixlora-dynamic` (top-p: as many experts as it takes to cover p of the routing mass)
#   and `mixlora-switch` (Switch Transformers: top-1, with a capacity per expert).
# - **LoRAMoE** (Dou et al., 2024): a dense softmax mixture of LoRA experts in every FFN linear, with
#   a *localized balancing constraint* that pushes samples of the "world knowledge" type onto one
#   group of experts and the other tasks onto the other group. Its paper claims that this keeps the
#   model's world knowledge while it learns the tasks, where plain fine-tuning forgets it.
#
# Every number in the "full run" sections below comes from `make reproduce` (or
# `lora-workbench reproduce NAME`), which writes a per-seed table and a summary (mean and 95% t
# interval over seeds) to `results/`. This notebook runs the same code live in **quick mode** (two
# training steps, one seed, two evaluation examples per task): enough to see every part work, far
# too little to say anything about the claims.

# %%
import os
import tempfile
from pathlib import Path

import torch
from IPython.display import display

import workbench as wb
from workbench.experiments import EXPERIMENTS, reproduce
from workbench.routing import ROUTERS
from widgets.results import interval_bars, show_full

QUICK = os.environ.get("LORA_WORKBENCH_QUICK") == "1"  # set by `make test`; the live runs are quick anyway
torch.manual_seed(0)
lab = wb.Workbench.from_zoo("smollm2-135m")
scratch_dir = Path(tempfile.mkdtemp(prefix="lw08_"))  # the quick runs write here, not to results/
EXPERIMENTS.table()[["name", "summary", "reference"]]

# %% [markdown]
# ## 1. MixLoRA and its routings
#
# The three routings differ only in how each token picks its experts (the FFN experts, the shared
# frozen FFN inside each, and the attention LoRA are the same):

# %%
routers = ROUTERS.table()
routers[routers.name.str.startswith("mixlora")][["name", "summary", "params"]]

# %% [markdown]
# The experiment (`workbench/experiments/mixlora.py`) trains E = 4 experts of rank 8 with top-2
# routing plus a rank-8 attention LoRA, and a plain LoRA on every linear layer whose rank makes its
# trainable count the closest to MixLoRA's, on three real tasks at once (arithmetic, topic, language).
# After training it scores each on held-out examples and records MixLoRA's routing on held-out
# prompts of each task:
#
# - `task_mi`: the mutual information (bits) between a token's task and the experts it uses, per
#   FFN block, averaged; `half_mi` is the same between the two halves of *one* task's prompts, which
#   is what finite samples give when routing does not depend on the group. Specialization is
#   `task_mi − half_mi` > 0.
# - `load_cv`: how unevenly the token-expert assignments spread over the experts (0 = even). The
#   balance claim compares it with the same model trained without the auxiliary loss
#   (`mixlora_noaux`).
#
# Live, in quick mode (two steps; the numbers mean nothing yet; under `make test` the MixLoRA arm
# alone, to keep the test suite short):

# %%
mix_quick = reproduce("mixlora", quick=True, arms=["mixlora"] if QUICK else ["lora", "mixlora"],
                      out=scratch_dir, lab=lab, log=lambda s: None)
mix_quick.table.pivot_table(index=["measure", "task"], columns="arm", values="value").round(3)

# %% [markdown]
# Every arm reports its trainable budget (the `trainable_params` rows: the plain LoRA's rank is chosen
# to match MixLoRA's), and the lab is left as it was: each arm removes what it added.

# %%
assert not lab.adapters and not lab.routers
print(Path(mix_quick.markdown).read_text().split("## Every measure")[0])

# %% [markdown]
# ### The view: expert-by-task load
#
# `TaskLoad` draws `analysis.task_load.task_load`: per layer (select; "all layers" is their mean), the
# share of each task's (token, slot) assignments that each FFN expert takes (uniform is 1/E), or of its
# gate weight (buttons); beside it, per layer, the mutual information between task and expert (0: every
# task spreads its tokens the same way). The router here is made for the view: under `make test` it is
# **untrained** (no training under `LORA_WORKBENCH_QUICK=1`, so the map is the initial routing);
# otherwise it first trains for 40 steps on the three tasks. It is removed after.

# %%
from workbench import tasks as wb_tasks
from workbench.analysis.observe import task_prompts
from workbench.analysis.task_load import task_load
from workbench.routing.mechanisms.mixlora import add_mixlora
from widgets import TaskLoad, TypeImportance

VIEW_STEPS = 0 if QUICK else 40  # training steps of the views' routers (none under make test)


def view_batch(names: list[str], n: int = 4 if QUICK else 12):
    """Held-out prompts of each task in one padded batch, and the task of each row."""
    prompts = task_prompts(lab, names, n=n)
    return lab.encode([p for t in names for p in prompts[t]]), [t for t in names for _ in prompts[t]]


mix_batch, mix_groups = view_batch(["arithmetic", "topic", "language"])
add_mixlora(lab, "mix_view", experts=4, k=2, r=8, seed=0)
if VIEW_STEPS:
    lab.train_router("mix_view", list(wb_tasks.load(["arithmetic", "topic", "language"]).values()),
                     steps=VIEW_STEPS, progress=False)
with lab.using("mix_view"):
    _, mix_cache = lab.run(mix_batch, record="*.routes.mix_view.hook_route")
lab.remove_router("mix_view")
lab.remove_adapter("mix_view_attn")
mix_view = TaskLoad.from_frame(task_load(mix_cache, mix_groups, mask=mix_batch["attention_mask"]))
mix_view

# %% [markdown]
# ### The full run
#
# The table below is read from `results/mixlora.md` / `results/mixlora.csv` when they exist (the
# command that wrote them is in the summary's first lines). Each claim's verdict is decided by the
# 95% interval of the per-seed paired difference: *holds* when it lies above 0, *refuted* when below,
# *not shown* when it straddles 0.

# %%
mix_full = show_full("mixlora")
mix_full if mix_full is None else mix_full.round(3)


# %%
interval_bars(mix_full, "multitask_score", "Multi-task score (mean of 3 tasks), 95% interval over seeds")

# %% [markdown]
# ## 2. LoRAMoE: does the localized balance keep the base model's knowledge?
#
# The experiment (`workbench/experiments/loramoe.py`) builds the paper's setting at CPU scale: E = 6
# experts of rank 4 on every FFN linear with the localized balancing constraint **on** (δ = β = 0.1,
# not the public script's 0). The training mix has two data types: the downstream tasks arithmetic and
# language (type 0) and the *training* questions of the trivia task (type 1, "world knowledge", as
# the paper's closed-book QA sets). Knowledge is scored on trivia's **held-out** questions (disjoint
# from its training questions: four options listed, the answer text as target, first-token
# accuracy, chance 25%), against the base model's own score (`base`) and a plain LoRA on the same
# FFN linears with the same trainable budget, trained on the same mix. `knowledge_gate_gap` is how
# much more gate the knowledge group carries on trivia prompts than on the task prompts.
#
# Live, in quick mode (all three arms; under `make test` this cell only names the command, and the
# slow suite runs the same quick reproduction):

# %%
if QUICK:
    print("skipped under make test: run `lora-workbench reproduce loramoe --quick` (tests/experiments)")
else:
    moe_quick = reproduce("loramoe", quick=True, out=scratch_dir, lab=lab, log=lambda s: None)
    display(moe_quick.table.pivot_table(index=["measure", "task"], columns="arm", values="value").round(3))

# %% [markdown]
# ### The full run

# %%
moe_full = show_full("loramoe")
moe_full if moe_full is None else moe_full.round(3)

# %%
interval_bars(moe_full, "knowledge_score", "Held-out trivia (knowledge) score, 95% interval over seeds")

# %% [markdown]
# ### The view: importance by data type
#
# `TypeImportance` draws `analysis.type_importance`: LoRAMoE's mean routing weight ω of each expert for
# each data type (button "per expert"; columns are expert·group), or the share of a type's weight on
# each expert group (the default), per layer (select). With the localized balance on, trivia (the
# knowledge type) should lean on the knowledge group (experts 0–2: type 1 gets the first half, as the
# code) and the tasks on the other. As above, the router is untrained under `make test` and trained for
# 40 steps on the mix (δ = β = 0.1) otherwise, then removed.

# %%
from workbench.analysis.type_importance import type_importance

moe_batch, moe_groups = view_batch(["arithmetic", "language", "trivia"])
lab.add_router("moe_view", "loramoe", experts=6, r=4, blc_alpha=0.1, blc_weight=0.1,
               type_of_task={0: 0, 1: 0, 2: 1}, seed=0)
if VIEW_STEPS:
    lab.train_router("moe_view", list(wb_tasks.load(["arithmetic", "language", "trivia"]).values()),
                     steps=VIEW_STEPS, progress=False)
with lab.using("moe_view"):
    _, moe_cache = lab.run(moe_batch, record="*.routes.moe_view.hook_route")
lab.remove_router("moe_view")
moe_types = ["knowledge" if g == "trivia" else "task" for g in moe_groups]
moe_importance = type_importance(moe_cache, moe_types, mask=moe_batch["attention_mask"],
                                 expert_groups={"knowledge": [0, 1, 2], "task": [3, 4, 5]})
moe_view = TypeImportance.from_frame(moe_importance)
moe_view

# %% [markdown]
# ## What to take away
#
# - Equal budget is measured, not assumed: every arm reports `trainable_params`.
# - A claim is only as strong as its interval. With three seeds the t quantile is 4.3, so a
#   difference must be large against its seed-to-seed spread to be decided either way; a "not shown"
#   is not a refutation, and the summaries report every verdict, for or against the paper.
# - The CPU schedules are short (see each summary's "Settings and deviations"): the papers train for
#   thousands of steps with E = 8 experts of rank 16. Run `lora-workbench reproduce NAME --seeds 0 1 2
#   3 4` with a longer schedule (edit the experiment's `full`) where more compute is at hand.
