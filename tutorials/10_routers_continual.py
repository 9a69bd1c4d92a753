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
# # 10 · Routers on the real model: ALoRA, MoRA in continual learning, DMoERM
#
# Three more routed mechanisms, each tried on SmolLM2 with the real tasks against the plain-LoRA
# baseline its paper argues against, over three seeds (mean and 95% t interval):
#
# - **ALoRA** (Liu et al., 2024): a small multi-head attention over the LoRA code `z = A x`, so a
#   token's update can draw on the earlier tokens'. Claim: this helps over plain LoRA.
# - **MoRA** (Lu et al., 2025, "Little By Little"): continual learning with a growing pool of rank-1
#   experts that score themselves; each new task adds ranks and freezes the old ones. Claim: less
#   forgetting of earlier tasks than fine-tuning one adapter task after task.
# - **DMoERM** (Quan, 2024): a reward model in two levels, an outer router that sends a conversation
#   to its task category and, per category, capability LoRA experts whose states an MLP aggregates.
#   Claim: it agrees with preferences more often than one reward model trained on the same data.
#
# ALoRA and MoRA have no public code: the workbench's mechanisms are **reconstructions** from their
# papers' abstracts and summaries (`workbench/routing/mechanisms/alora.py`, `mora.py` say which
# details are guesses). DMoERM follows its authors' code at CPU scale.
#
# Every number below comes from `lora-workbench reproduce NAME --seeds 0 1 2 --threads 1`, which
# writes a per-seed table and a summary to `results/`. With `LORA_WORKBENCH_QUICK=1` (as `make test`
# sets) this notebook only reads those files; otherwise it also runs each experiment live in **quick
# mode** (one or two steps, one seed): enough to see the code work, far too little to say anything.

# %%
import os
import tempfile
from pathlib import Path


from widgets.rank_reuse import rank_reuse_figure
from widgets.reward_mixture import capability_weights_figure, router_bars_figure
from workbench.analysis.rank_reuse import reuse_table
from workbench.experiments import EXPERIMENTS
from workbench.experiments.dmoerm import level_frames
from workbench.experiments.mora_continual import reuse_frame
from widgets.results import interval_bars, show_full

QUICK = os.environ.get("LORA_WORKBENCH_QUICK") == "1"  # set by `make test`: no model, no training here
table = EXPERIMENTS.table()
table[table.name.isin(["alora", "mora_continual", "dmoerm"])][["name", "summary", "reference"]]

# %% [markdown]
# Two helpers: the full run's claims and measure table (or the command that makes them), and one
# bar per arm with its 95% interval.


# %%
lab = None
if not QUICK:  # the live quick runs need the model; `make test` skips them
    import workbench as wb
    from workbench.experiments import reproduce

    lab = wb.Workbench.from_zoo("smollm2-135m")
    scratch_dir = Path(tempfile.mkdtemp(prefix="lw10_"))  # the quick runs write here, not to results/


def live(name: str):
    """The experiment's quick run (not under QUICK), as a measure × arm table."""
    if lab is None:
        print("LORA_WORKBENCH_QUICK=1: no live run (the full results below are read from results/)")
        return None
    done = reproduce(name, quick=True, out=scratch_dir, lab=lab, log=lambda s: None)
    assert not lab.adapters and not lab.routers  # every arm removed what it added
    return done.table.pivot_table(index=["measure", "task"], columns="arm", values="value").round(3)


# %% [markdown]
# ## 1. ALoRA: attention over the LoRA states
#
# Plain LoRA adds `s·B A x` to a layer's output, token by token. ALoRA (as reconstructed here) lets
# the rank-r code `z = A x` of each token attend, causally, over the codes of the tokens before it:
# `ẑ = z + MHA(z)`, `Δ = s·B ẑ`, with two heads in the r-dimensional space. With the attention's
# output map `O = 0` it is exactly the plain LoRA.
#
# The experiment (`workbench/experiments/alora.py`) trains ALoRA (r = 16) on q/k/v/o and a plain
# LoRA on the same layers whose rank makes its trainable count the closest (r = 17: ALoRA's four r×r
# attention maps cost about one rank), on topic, language and trivia at once (first-token accuracy;
# arithmetic needs cached decoding, which ALoRA cannot do: it has no cache of earlier codes).
#
# - `multitask_score`: the mean of the three held-out scores. Claim 1: ALoRA − LoRA ≥ 0.
# - `multitask_score_no_attention`: the trained ALoRA scored again with `O = 0` (its own A and B
#   as a plain LoRA). Claim 2: the trained model relies on its attention (the score drops).
# - `prev_token_share`: how much attention each token's code puts on *earlier* tokens (descriptive).

# %%
live("alora")

# %% [markdown]
# ### The full run

# %%
alora_full = show_full("alora")
alora_full if alora_full is None else alora_full.round(3)

# %%
interval_bars(alora_full, "multitask_score", "ALoRA vs plain LoRA: multi-task score, 95% interval over seeds")

# %% [markdown]
# **Does the attention select, or only average?** A uniform causal attention (token t spreads 1/t over
# tokens 1..t) puts 1 − 1/t on earlier tokens; averaged over a prompt that is a number fixed by the
# prompt's length alone. If the trained ALoRA's `prev_token_share` equals it, its attention over z
# is a plain running mean of the earlier codes (near-zero logits), not a selection of some tokens.
# The yardstick needs only the tokenizer (no model):

# %%
from transformers import AutoTokenizer

from workbench import tasks
from workbench.experiments.alora import uniform_prev_share
from workbench.experiments.alora import TASKS as ALORA_TASKS
from workbench.zoo import cache_dir

yardstick = None
if alora_full is not None and (cache_dir() / "smollm2-135m").exists():
    tok = AutoTokenizer.from_pretrained(cache_dir() / "smollm2-135m")
    yard = {}
    for name, task in tasks.load(list(ALORA_TASKS)).items():
        n = EXPERIMENTS.get("alora").full.prompts  # the first held-out prompts of each task, as the run
        lengths = [len(tok(tasks.chat_prompt(tok, task, ex))["input_ids"]) for ex in task.eval[:n]]
        yard[name] = sum(uniform_prev_share(t) for t in lengths) / len(lengths)
    trained = alora_full[(alora_full.measure == "prev_token_share") & (alora_full.task != "")]
    yardstick = trained.assign(uniform=trained.task.map(yard))[["task", "mean", "low", "high", "uniform"]]
yardstick if yardstick is None else yardstick.round(4)

# %% [markdown]
# ## 2. MoRA in continual learning: forgetting and rank reuse
#
# Tasks arrive one after another: **language → topic → trivia**. MoRA starts with 8 rank-1 experts
# on every linear layer; each new task freezes the ranks so far and adds 8 new ones. There is no
# router: every rank scores itself by its normalised activation `s_i = h_i/‖h‖`, the top 4 are
# kept and weighted by a softmax. The baseline is the usual way to learn in sequence: one plain LoRA
# of rank 8 (the same trainable count per task) fine-tuned on each task in turn.
#
# After each task, every task seen so far is scored on held-out examples:
#
# - `forgetting_first`: task 1's score right after it was learned minus after the last task.
#   Claim: MoRA forgets less (LoRA's forgetting − MoRA's > 0). `mean_forgetting`: over tasks 1..T−1.
# - `last_score`: the last task's score. Not forgetting by not learning is no win: claim 3 asks
#   that MoRA learns the last task as well.
# - `reuse`: right after task t is learned, the share of its tokens' gate weight on the ranks of
#   earlier tasks; `reuse_vs_uniform` subtracts what a uniform choice over the ranks would give.

# %%
live("mora_continual")

# %% [markdown]
# ### The full run

# %%
mora_full = show_full("mora_continual")
mora_full if mora_full is None else mora_full.round(3)

# %%
interval_bars(mora_full, "forgetting_first", "Forgetting of task 1 (language), 95% interval over seeds")

# %% [markdown]
# **MoRA rank reuse across tasks.** After the last task, where does each task's gate weight land?
# Rows: the prompts' task; columns: the rank block each task added. Weight on its own block is a
# task keeping to the ranks it trained; weight on earlier blocks is reuse of frozen ranks.

# %%
if mora_full is not None and mora_full.measure.str.startswith("block_mass:").any():
    rank_reuse_figure(reuse_table(reuse_frame(mora_full))).show()

# %% [markdown]
# ## 3. DMoERM: a double-layer mixture-of-experts reward model
#
# The preference data is built from the real tasks (`workbench/tasks/preference.py`): per
# capability (one per task) a prompt with its correct answer (chosen) against a corrupted one
# (rejected: another of the choices, or the number off by 1 to 10). Two categories for the outer
# level: *labels* (topic, language) and *answers* (arithmetic, trivia).
#
# - Outer level: a linear router over the base model's last-token state of the prompt picks the
#   category (top-1).
# - Inner level, per category: each capability has its own LoRA (q/v) + value head trained with the
#   pairwise loss on its pairs; then, all frozen, an MLP over the concatenated last-token states of
#   the category's experts gives the reward.
# - Baseline: one LoRA + value head of the same trainable count, trained on all the pairs.
#
# Measures: `pref_accuracy` (held-out pairs with r(chosen) > r(rejected)), per capability and mean;
# `router_accuracy`; `expert_accuracy` (a capability's own expert alone); the router bars
# (`route_prob:<category>` per prompt task) and the capability weights (the MLP's gradient × input
# share of each expert's state).

# %%
live("dmoerm")

# %% [markdown]
# ### The full run

# %%
dmoerm_full = show_full("dmoerm")
dmoerm_full if dmoerm_full is None else dmoerm_full.round(3)

# %%
interval_bars(dmoerm_full, "pref_accuracy", "Pairwise preference accuracy per capability, 95% interval",
              by_task=True)

# %% [markdown]
# **The two levels.** Left: the outer router's mean probability per category, for the prompts of each
# capability. Right: in each category's MLP, the share of the reward that each capability expert's
# state carries, for the conversations of each capability.

# %%
if dmoerm_full is not None and dmoerm_full.measure.str.startswith("route_prob:").any():
    bars, weights = level_frames(dmoerm_full)
    router_bars_figure(bars).show()
    capability_weights_figure(weights).show()

# %% [markdown]
# ## What to take away
#
# - Each verdict above is decided by the 95% interval of the per-seed paired difference: *holds* when
#   it lies above 0, *refuted* when below, *not shown* when it straddles 0. They are reported as they
#   came out, for or against the papers.
# - The schedules are CPU-sized (see each summary's "Settings and deviations": a few steps per arm,
#   a handful of pairs per capability); the papers train 7B models for epochs. A "not shown" at this
#   scale says the effect, if any, is smaller than the seed-to-seed spread of a short run.
# - ALoRA and MoRA are reconstructions: a result about them is a result about the workbench's
#   reading of their papers, not about the authors' code.
