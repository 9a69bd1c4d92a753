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
# # 12 · Which layers train, and when: Flexora, LayRA and ScaleZero on the real model
#
# Three methods that decide *where* (which layers) or *when* (which stage) a LoRA trains, each tried
# on SmolLM2 against a plain LoRA with the **same number of trainable parameters**, the same steps,
# learning rate, batch and seeds:
#
# - **Flexora** (Wei et al., ACL 2025) puts a gate α_ℓ on every layer's LoRA output, trains the LoRA
#   on the training split and moves the gates *down* the validation loss gradient (a one-step,
#   first-order unroll of the bilevel problem), then keeps the layers with the largest gates and
#   retrains a LoRA on them only.
# - **LayRA** (Owodunni & Kumar, 2025) adds a new language with LoRA on the *first and last* layers
#   only (the model encodes the language early and translates back late), which should forget the
#   old languages less; *model arithmetic* then adds instruction following without instruction data
#   in the new language: θ = θ_LayRA + λ′·(θ_instruct − θ_base).
# - **ScaleZero** (opendilab/LightZero) grows capacity in stages: each stage adds a new LoRA per
#   layer and freezes what earlier stages trained, with bounded learnable scales
#   α = 1 + 0.2·tanh(θ) on the base weight and on the earlier adapters; a controller switches stages
#   when tasks are solved or a stage runs out of steps.
#
# Every number in the "full run" sections comes from `lora-workbench reproduce NAME` (or
# `make reproduce NAME=...`), which writes a per-seed table and a summary (mean and 95% t interval
# over seeds) to `results/`. Outside the test suite (`LORA_WORKBENCH_QUICK` unset) each section also
# runs the experiment live in quick mode (two steps, one seed): enough to see every part work, far
# too little to say anything about the claims.

# %%
import os
import tempfile
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from workbench.experiments import EXPERIMENTS, reproduce
from workbench.experiments.flexora import gate_frame
from workbench.experiments.layra import layer_map
from workbench.experiments import results_root
from widgets.results import interval_bars, show_full

QUICK = os.environ.get("LORA_WORKBENCH_QUICK") == "1"  # set by `make test`: no model, no training
lab = None
if not QUICK:
    import workbench as wb

    lab = wb.Workbench.from_zoo("smollm2-135m")
scratch_dir = Path(tempfile.mkdtemp(prefix="lw12_"))  # the live quick runs write here, not to results/
table = EXPERIMENTS.table()
table[table.name.isin(["flexora", "layra", "scalezero"])][["name", "summary", "reference"]]


# %%
def per_seed(name: str) -> pd.DataFrame | None:
    """The per-seed table ``results/<name>.csv`` (None before the full run)."""
    path = results_root() / f"{name}.csv"
    return pd.read_csv(path, keep_default_na=False) if path.exists() else None


def live(name: str):
    """The quick run of ``name`` on the lab (only outside the test suite), its table by arm."""
    if QUICK:
        print("LORA_WORKBENCH_QUICK=1: the live quick run is skipped (no model is loaded)")
        return None
    quick = reproduce(name, quick=True, out=scratch_dir, lab=lab, log=lambda s: None)
    assert not lab.adapters  # every arm removed what it added
    return quick.table.pivot_table(index=["measure", "task"], columns="arm", values="value").round(3)


# %% [markdown]
# ## 1. Flexora: does the gate search find the layers that matter?
#
# **Mechanism.** A LoRA on q/k/v/o of every layer, its output multiplied by one gate per layer
# (`h = W0 x + α_ℓ s B A x`, α_ℓ = 1 at the start). Each search step trains the LoRA on a training
# batch (AdamW), then moves every gate one step **down** the gradient of the *validation* loss:
# `α_ℓ ← α_ℓ − η ∂L_val/∂α_ℓ`, with `∂L/∂α_ℓ = Σ_m ⟨∂L/∂B_m, B_m⟩ / α_ℓ` over the layer's modules
# (`workbench.training.layers.flexora_search`; the unit test `tests/training/test_flexora_direction.py`
# checks the sign and size against autograd through real gate leaves).
#
# **Claims and measures.** (1) On a *planted* case, targets written by the model with a teacher LoRA
# on ONE attention layer (drawn per seed), the top gate should be the teacher's layer more often than
# chance (`hit`, chance = 1/30); (2) the teacher's layer should rank in the upper half (`percentile`,
# the share of the other layers whose gate is below it; `teacher_rank`; `top_layer`); (3) on the
# language task, a LoRA on the 6 searched layers (rank 10) scores at least as well as a LoRA on all 30
# layers (rank 2), the same trainable count.

# %%
live("flexora")

# %% [markdown]
# ### The full run

# %%
fx_full = show_full("flexora")
fx_summary = None if fx_full is None else fx_full[fx_full.measure != "gate"]
fx_summary if fx_summary is None else fx_summary.round(3)

# %%
interval_bars(fx_full, "percentile",
              "Planted case: percentile of the teacher layer's gate (chance 0.5), 95% interval")

# %% [markdown]
# **The gates over the search steps.** One line per layer (planted case, one seed each); the
# teacher's layer is drawn thick. If the same layers lead whatever the teacher's layer is, the gates
# follow the layers' gradient scale rather than the teacher.

# %%
def gate_figure(frame: pd.DataFrame | None, teacher: dict[int, int]):
    if frame is None:
        return None
    fig = go.Figure()
    for seed, part in frame[frame.arm == "planted"].groupby("seed"):
        for layer, line in part.groupby("layer"):
            mine = teacher.get(seed) == layer
            fig.add_trace(go.Scatter(x=line.step, y=line.value, mode="lines", legendgroup=f"seed {seed}",
                                     name=f"seed {seed}, layer {layer}" + (" (teacher)" if mine else ""),
                                     line=dict(width=4 if mine else 1), showlegend=mine,
                                     xaxis=f"x{seed + 1}", yaxis=f"y{seed + 1}"))
    n = frame.seed.nunique()
    fig.update_layout(template="plotly_white", height=320, title="Flexora gates per layer over the search",
                      grid=dict(rows=1, columns=n, pattern="independent"))
    return fig


fx_seeds = per_seed("flexora")
teachers = {} if fx_seeds is None else {
    int(r.seed): int(r.value) for r in fx_seeds[fx_seeds.measure == "teacher_layer"].itertuples()}
gate_figure(None if fx_seeds is None else gate_frame(fx_seeds), teachers)

# %% [markdown]
# ## 2. LayRA: a new language on the first and last layers, then model arithmetic
#
# **Mechanism.** LoRA on q/k/v/o of the first 2 and last 2 layers only
# (`workbench.training.layers.layra_targets`), trained on text of the new language: Indonesian turns of
# chatterbot-corpus as continuations (half a turn's words as the prompt, the rest as the target). The
# all-layer LoRA it is compared with has rank 2 on every layer (LayRA: rank 15 on 4 layers, the same
# trainable count). A separate LoRA trained on *English* dialog pairs gives the instruction task
# vector τ_instruct = its ΔW; model arithmetic is the lab's weighted composition
# `{layra: 1, instruct: λ′}`, i.e. θ_base + ΔW_LayRA + λ′·τ_instruct.
#
# **Claims and measures** (mean loss per target token on held-out examples, lower is better):
# (1) LayRA forgets English less (`old_nll`, English continuations); (2) it learns Indonesian about as
# well (`new_nll`); (3) θ_LayRA + 1·τ_instruct answers Indonesian dialog better than θ_LayRA alone
# (`dialog_nll@1` against `dialog_nll@0`). `delta_norm` per layer is the layer map: ‖ΔW‖_F of each
# layer's q/k/v/o.

# %%
live("layra")

# %% [markdown]
# ### The full run

# %%
ly_full = show_full("layra")
ly_summary = None if ly_full is None else ly_full[ly_full.measure != "delta_norm"]
ly_summary if ly_summary is None else ly_summary.round(3)

# %%
interval_bars(ly_full, "old_nll", "English (old language) loss after learning Indonesian, 95% interval",
              arms=["lora_all", "layra"])

# %%
def layer_map_figure(frame: pd.DataFrame | None):
    """The layer map: mean ‖ΔW‖_F per layer and arm over seeds (LayRA touches 4 layers)."""
    if frame is None:
        return None
    mean = frame.groupby(["arm", "layer"], as_index=False)["delta_norm"].mean()
    grid = mean.pivot(index="arm", columns="layer", values="delta_norm")
    fig = go.Figure(go.Heatmap(z=grid.to_numpy(), x=list(grid.columns), y=list(grid.index),
                               colorscale="Viridis", colorbar=dict(title="‖ΔW‖_F")))
    fig.update_layout(template="plotly_white", height=260, xaxis_title="layer",
                      title="Where each arm changed the model (mean over seeds)")
    return fig


ly_seeds = per_seed("layra")
layer_map_figure(None if ly_seeds is None else layer_map(ly_seeds))

# %% [markdown]
# ## 3. ScaleZero: staged adapters over a task sequence
#
# **Mechanism** (`workbench.training.staged.train_staged`, through the one training loop): the tasks
# arrive one per stage (language, then trivia). Stage s adds a rank-4 lab adapter `scalezero_s` on
# q/k/v/o; at stage s only that adapter, the base-weight scale α_0 and the earlier adapters' scales
# train (per module, bounded in (0.8, 1.2) through forward hooks), earlier adapters stay frozen. The
# authors' controller switches stages when the task is solved (here: its training loss) or after
# `steps` per stage. The baseline `lora_seq` is one plain LoRA of rank 8 (the same total count)
# trained through the same stages.
#
# **Claims and measures.** (1) Staged adapters forget the earlier task less: `forgetting` = its
# score at the end of its own stage − its final score; (2) the final mean score (`final_mean`) is at
# least the sequential LoRA's. `stage_score` (task@sN) is each task's score when stage N ends: the
# stage timeline.

# %%
live("scalezero")

# %% [markdown]
# ### The full run

# %%
sz_full = show_full("scalezero")
sz_full if sz_full is None else sz_full.round(3)

# %%
interval_bars(sz_full, "forgetting", "Forgetting of the first task (lower is better), 95% interval")


# %%
def timeline(summary: pd.DataFrame | None):
    """Each task's score at the end of each stage, per arm (mean over seeds, 95% interval)."""
    if summary is None:
        return None
    part = summary[summary.measure == "stage_score"].copy()
    part[["name", "stage"]] = part.task.str.split("@s", expand=True)
    fig = go.Figure()
    for (arm, name), line in part.groupby(["arm", "name"]):
        fig.add_trace(go.Scatter(x=line.stage.astype(int), y=line["mean"], mode="lines+markers",
                                 name=f"{arm}: {name}",
                                 line=dict(dash="solid" if arm == "scalezero" else "dot"),
                                 error_y=dict(type="data", symmetric=False, array=line.high - line["mean"],
                                              arrayminus=line["mean"] - line.low)))
    fig.update_layout(template="plotly_white", height=340, xaxis_title="end of stage", yaxis_title="score",
                      title="Stage timeline: each task's score as the stages go", xaxis=dict(dtick=1))
    return fig


timeline(sz_full)
