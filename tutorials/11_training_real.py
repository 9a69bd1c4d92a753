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
# # 11 · Training methods on the real model: LoRA-Pro, NOLA and Menta, their claims tried over seeds
#
# Three training-side methods of the workbench, each tried on SmolLM2 against a plain LoRA trained on
# the same real tasks with the same steps, batch and seeds:
#
# - **LoRA-Pro** (Wang et al., ICLR 2025) changes only the *optimizer*: it adjusts the LoRA factor
#   gradients so that the low-rank step is the one closest to a full fine-tuning step. Its paper
#   claims that this brings LoRA closer to full fine-tuning and scores better at equal steps.
# - **NOLA** (Koohpayegani et al., ICLR 2024) changes the *parameterization*: A and B are mixtures of
#   fixed random bases regenerated from seeds, and only the mixing coefficients train. Its paper
#   claims LoRA-level quality with far fewer trained numbers, and a tiny stored form.
# - **Menta** (Zhang et al., 2025) changes the *loss*: a balanced-accuracy-oriented, class-balanced
#   cross-entropy for imbalanced classification tasks. Its claim: a higher balanced accuracy than
#   plain cross-entropy.
#
# Every number in the "full run" sections comes from `lora-workbench reproduce NAME --seeds 0 1 2`
# (or `make reproduce NAME=...`), which writes a per-seed table and a summary (mean and 95% t
# interval over seeds, a verdict per claim) to `results/`. When `LORA_WORKBENCH_QUICK=1` is set (as
# `make test` does) this notebook only reads those results and draws them; otherwise it also runs
# each experiment live in **quick mode** (two steps, one seed): enough to see every part work, far too
# little to say anything about the claims.

# %%
import os
import tempfile
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from widgets import gradient_gap_figure
from workbench.analysis.gradient_gap import gap_over_steps
from workbench.experiments import EXPERIMENTS, reproduce
from widgets.results import interval_bars, show_full

QUICK = os.environ.get("LORA_WORKBENCH_QUICK") == "1"  # set by `make test`: no model, no training
lab = None
if not QUICK:
    import workbench as wb

    lab = wb.Workbench.from_zoo("smollm2-135m")
scratch_dir = Path(tempfile.mkdtemp(prefix="lw11_"))  # the live quick runs write here, not to results/
table = EXPERIMENTS.table()
table[table.name.isin(["lora_pro", "nola", "menta"])][["name", "summary", "reference"]]


# %%
def live(name: str, arms=None):
    """The experiment's quick mode, live (skipped under LORA_WORKBENCH_QUICK=1)."""
    if QUICK:
        print("LORA_WORKBENCH_QUICK=1: no live run (the full results below are read from results/)")
        return None
    run = reproduce(name, quick=True, arms=arms, out=scratch_dir, lab=lab, log=lambda s: None)
    assert not lab.adapters and not lab.routers  # each arm removes what it added
    return run.table.pivot_table(index=["measure", "task"], columns="arm", values="value").round(3)


# %% [markdown]
# ## 1. LoRA-Pro: closer to full fine-tuning?
#
# With `G = ∂L/∂W` the gradient of an adapted weight, LoRA's factor gradients are `G_A = s·BᵀG` and
# `G_B = s·G·Aᵀ`; a step `(g_A, g_B)` of the factors moves `W = W0 + s·B·A` like the **equivalent
# gradient** `g̃ = s·(B·g_A + g_B·A)`. Plain LoRA takes `g_A = G_A, g_B = G_B`, whose `g̃ =
# s²(B·Bᵀ·G + G·Aᵀ·A)` can be far from `G`. LoRA-Pro picks the `(g_A, g_B)` whose `g̃` is the closest
# to `G` that a low-rank step can be, `P_B·G + (I − P_B)·G·P_A` (projections on B's columns and A's
# rows), among those the one closest to the vanilla gradients (an `r×r` matrix `X` from a Sylvester
# equation), keeps a full-size Adam state on `g̃`, and steps A and B by plain SGD
# (`workbench/training/lorapro.py`, after the authors' code).
#
# **Claims tried.** (1) along training, LoRA-Pro's `g̃` is closer to `G` than LoRA's: the relative gap
# `‖g̃ − G‖_F / ‖G‖_F`, (2) also up to scale (`sin∠(g̃, G)`, what a learning rate cannot fix), and (3) a
# better score at equal steps.
#
# **Measures.** The probe `workbench.training.gradient_gap.GradientGap` builds `G` of every adapted
# weight at every step from the layer's input and the gradient of its output (hooks), and reads the
# factor gradients just before the optimizer steps. Both arms (a rank-8 LoRA on q/k/v/o, AdamW; the
# same adapter under the `lorapro` optimizer) record both kinds of `g̃` at their own points; the claims
# compare each arm's *own* kind on its own trajectory, paired by seed.

# %%
live("lora_pro")

# %% [markdown]
# ### The full run

# %%
pro_full = show_full("lora_pro")
pro_full if pro_full is None else pro_full[~pro_full.task.str.startswith("step ")].round(3)

# %% [markdown]
# The gradient-gap view: the per-step gap of each arm (solid: the `g̃` the arm steps with; dotted: the
# other kind at the same points), its band the 95% interval over seeds
# (`workbench.analysis.gradient_gap.gap_over_steps` → `widgets.gradient_gap_figure`).

# %%
gradient_gap_figure(gap_over_steps(pro_full)) if pro_full is not None else None

# %%
interval_bars(pro_full, "multitask_score", "LoRA-Pro against LoRA: mean accuracy (topic, language), 95% CI")

# %% [markdown]
# ## 2. NOLA: parameters against score as the basis grows
#
# NOLA writes each factor as a mix of random matrices: `A = A0 + Σ_{i≤k} α_i·Â_i`, `B = Σ_{j≤l} β_j·B̂_j`
# with `Â_i, B̂_j ~ U(−1, 1)/√k` regenerated from a seed (never stored) and `α = β = 0` at the start.
# Only the `k + l` coefficients per module train (`workbench/training/nola.py`: the optimizer reads the
# plain factor gradients, `∂L/∂α_i = ⟨∂L/∂A, Â_i⟩_F`, and writes A and B back, so the trained adapter is
# an ordinary LoRA). The stored adapter is just the coefficients, the seeds and the recipe of A0:
# `save_compact` / `load_compact`.
#
# **Claims tried.** (1) NOLA matches a rank-1 LoRA with far fewer trained numbers, (2) the score grows
# with k, (3) the compact form reloads the trained adapter bit for bit (checked on every run).
#
# **Measures.** Arms `nola_k16`, `nola_k64`, `nola_k256` (rank 8 on q and v, k = l) and `lora_r1` (a
# plain rank-1 LoRA on the same modules): `trainable_params`, `multitask_score`, the compact file's
# size against fp32 factors, `reload_exact`.

# %%
live("nola", arms=["lora_r1", "nola_k16"])

# %% [markdown]
# ### The full run

# %%
nola_full = show_full("nola")
nola_full if nola_full is None else nola_full.round(3)


# %%
def params_figure(summary: pd.DataFrame | None):
    """Trainable parameters (log x) against the mean score, with its 95% interval, per arm."""
    if summary is None:
        return None
    wide = summary[summary.task == ""].pivot_table(index="arm", columns="measure", values="mean")
    score = summary[(summary.measure == "multitask_score") & (summary.task == "")].set_index("arm")
    fig = go.Figure()
    for arm, s in score.iterrows():
        fig.add_scatter(x=[wide.loc[arm, "trainable_params"]], y=[s["mean"]], mode="markers+text", name=arm,
                        text=[arm], textposition="top center", marker=dict(size=11),
                        error_y=dict(type="data", symmetric=False, array=[s.high - s["mean"]],
                                     arrayminus=[s["mean"] - s.low]))
    fig.update_layout(title="NOLA: trainable parameters against score (95% interval over seeds)",
                      xaxis=dict(type="log", title="trainable parameters"), yaxis_title="multitask_score",
                      template="plotly_white", height=400, showlegend=False)
    return fig


params_figure(nola_full)

# %% [markdown]
# ## 3. Menta: the balanced loss on imbalanced tasks
#
# Menta trains one model jointly on several imbalanced classification tasks with a loss aimed at
# balanced accuracy. The workbench's reconstruction (`LOSS_WEIGHTINGS["balanced"]`; the paper's exact
# form is unverified) weighs an example of class c by `w_c ∝ 1/n_c` inside its task (normalized to mean
# 1 over the task's training set) and every task present in a batch equally.
#
# The real tasks are class-balanced by construction, so the experiment first **skews** them:
# `workbench.tasks.skew.skewed` keeps 72 training examples of one class and 8 of every other (9 : 1) for
# `topic` (4 classes) and `language` (6 classes), and leaves their held-out splits balanced. The new
# task metric `balanced_accuracy` (the mean per-class recall) scores them.
#
# **Claims tried.** (1) the balanced loss gives a higher balanced accuracy than plain cross-entropy,
# (2) through a better recall of the minority classes.
#
# **Measures.** `balanced_accuracy` (per task and mean), `accuracy`, `minority_recall` and
# `majority_share` (how often the majority class is predicted), arms `ce` and `balanced` (the same
# rank-8 LoRA, steps and seeds; only the weighting differs).

# %%
live("menta")

# %% [markdown]
# ### The full run

# %%
menta_full = show_full("menta")
menta_full if menta_full is None else menta_full.round(3)

# %%
interval_bars(menta_full, "balanced_accuracy", "Balanced accuracy per task, 95% interval over seeds",
              by_task=True)

# %% [markdown]
# ## What to take away
#
# - Each method changes one part of the one training loop (`workbench/training/loop.py`): LoRA-Pro
#   the optimizer, NOLA the parameterization (as an optimizer over the coefficients), Menta the loss
#   weighting. The baselines share everything else.
# - A claim is only as strong as its interval: with three seeds the t quantile is 4.3, so "not shown"
#   is not a refutation. The summaries report every verdict, for or against the papers.
# - The CPU schedules are short (see each summary's "Settings and deviations"); the papers train for
#   thousands of steps on 7B models.
