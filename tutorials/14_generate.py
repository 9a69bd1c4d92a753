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
# # 14 · Generating LoRAs: ICM-LoRA, SG-LoRA and ICM-Fusion on SmolLM2
#
# Merging combines adapters that exist. The generation lab (`workbench/generation/`) makes new ones:
# a **generator** learns the distribution of LoRA weights from the checkpoints the training lab keeps,
# and draws an adapter for a task from a condition, with no training for that task.
#
# - **ICM-LoRA** (Shao et al., IJCAI 2025): a 1-D convolutional conditional VAE over the flattened,
#   per-tensor z-scored LoRA weights; the condition is a *task vector* (the last decoder layer's hidden
#   state at the last position, averaged over a few examples of the task). `ICMLoRA.generate(examples)`.
# - **SG-LoRA** (Li et al., 2025): a new task given only in words. Its description and the experts'
#   descriptions are embedded by a text encoder (here the zoo's MiniLM); the proximity weights are
#   `w_i = softmax(cos(e*, e_i)/τ)` over the top-k experts, the condition is `c* = Σ w_i e_i`, and the
#   CVAE draws `dec(z, c*)` with `z ~ N(0, I)`: several different LoRAs, not one merge.
#   `SGLoRA.generate("classify a quote as being about computers or sports")`.
# - **ICM-Fusion** (Shao et al., AAAI 2026; no public code, a labelled reconstruction): task vectors
#   projected by a learned `P` into a small latent, fused by learned weights `p_f = Σ w_t P(v_t)`
#   (meta-learned first-order on few-shot support sets), decoded into one multi-task LoRA.
#
# Every generated adapter is an ordinary `Adapter` with lineage (generator, condition, seed, sample):
# evaluate it, merge it, export it to PEFT. Generators save as safetensors + JSON (`gen.save(path)`).
#
# Under `LORA_WORKBENCH_QUICK=1` (as `make test` sets) this notebook runs the generator panel on the
# four ready LoRAs (a few seconds) and reads the full experiment's results from `results/`; without it,
# it also runs the experiment live in quick mode.

# %%
import os
import tempfile
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

import workbench as wb
from widgets import GeneratorPanel, expert_map_figure, histogram_figure, proximity_bars
from widgets.results import show_full
from workbench import ready
from workbench.adapters import Adapter
from workbench.experiments import EXPERIMENTS, reproduce
from workbench.generation import SGLoRA
from workbench.generation.frames import expert_map, proximity_frame, tensor_histograms
from workbench.tasks.pairs import pair_task

QUICK = os.environ.get("LORA_WORKBENCH_QUICK") == "1"  # set by `make test`: no training
table = EXPERIMENTS.table()
table[table.name == "generate"][["name", "summary", "reference"]]

# %% [markdown]
# ## 1. SG-LoRA in the panel: a task described in words
#
# The experts here are the four ready LoRAs (`adapters/`: arithmetic, topic, language, code; rank 8 on
# attention), each with a sentence saying what it does. To fit a generator in seconds the demonstration
# keeps their q and v updates in the last three layers (46,080 values per expert: a CVAE step over all
# 921,600 takes seconds on a CPU), their final weights only, and fits 10 CVAE steps. That is far too
# little for the CVAE to learn the experts' weights: its samples come out close to each tensor's mean
# (de-normalized), i.e. near-zero updates, and score like the base. The panel shows the mechanics; the
# full experiment below trains six expert LoRAs with a checkpoint every step and measures how much of
# the trained LoRAs' gain generated ones recover.
#
# Type a description (or pick an expert's), see which experts it is near (the bars: `softmax(cos/τ)`
# over the top-k, grey outside it) and where it falls on a 2-D PCA of the experts' embeddings, then
# **generate N** samples and **evaluate** them on a held-out task beside the nearest expert and the
# uniform average of the experts. The work runs on a background thread: the kernel stays free.

# %%
lab = wb.Workbench.from_zoo("smollm2-135m")
ready.load_all(lab)
DESCRIPTIONS = {
    "arithmetic": "add or subtract two numbers and answer with the result",
    "topic": "classify a quote as being about computers, food, sports or science",
    "language": "identify the language a sentence is written in",
    "code": "write a short python function",
}
KEEP = sorted(m for m in lab.adapters["topic"].modules
              if int(m.split(".")[2]) >= 27 and m.endswith(("q_proj", "v_proj")))
checkpoints, experts = {}, {}
for name in ready.NAMES:
    full_lora = lab.adapters[name].copy()
    part = Adapter(f"{name}_top", {m: full_lora.modules[m] for m in KEEP}, scaling=full_lora.scaling,
                   base_fingerprint=full_lora.base_fingerprint,
                   lineage={"checkpoint_of": name, "step": 1, "tasks": [name]})
    experts[name] = lab.add_adapter(part).name  # the expert as the panel scores it
    checkpoints[name] = [part.copy()]
sg = SGLoRA(lab, k=2, tau=0.05, latent=8)  # channels: the authors' / 4
sg.fit(checkpoints, DESCRIPTIONS, late=1.0, steps=10, lr=2e-3, batch_size=2, seed=0, progress=False)
held_out = pair_task(wb.tasks.load("topic")["topic"], "Computers", "Sports")
TEXT = "classify a quote as being about computers or sports"
panel = GeneratorPanel.from_generator(sg, task=held_out, experts=experts, description=TEXT, eval_limit=4, n=2)
panel

# %% [markdown]
# The same numbers as frames and static figures (`workbench.generation.frames`,
# `widgets.generation_figures`): the proximity of the description to each expert, and the map.

# %%
proximity_bars(proximity_frame(sg, TEXT))

# %%
expert_map_figure(expert_map(sg, TEXT))

# %% [markdown]
# A generated adapter is an `Adapter` with lineage. Its values, tensor by tensor, against the expert it
# is nearest to (per-tensor histograms, original vs generated):

# %%
made = sg.generate(TEXT, seed=0, name="sg_demo")
print({k: made.lineage[k] for k in ("method", "seed", "sample")}, made.lineage["condition"]["weights"])
hist = tensor_histograms(lab.adapters["topic_top"], made, bins=30)
histogram_figure(hist, tensor=hist.tensor.iloc[0])

# %% [markdown]
# ICM-Fusion's view: the task vectors of two experts (the base model's last-layer state on a few of
# their examples), the fused one, and the same after the learned projection P (a 2-D PCA each). Run
# live only without `LORA_WORKBENCH_QUICK` (it fits the F-VAE and meta-learns one step on SmolLM2).

# %%
if not QUICK:
    from widgets import fusion_pca_figure
    from workbench.generation import ICMFusion
    from workbench.generation.frames import fusion_pca
    from workbench.tasks import encode_for_training

    two = wb.tasks.load(["topic", "language"])
    fusion = ICMFusion(lab, proj_dim=8, latent=8)
    fusion.fit({n: checkpoints[n] for n in two}, {n: t.train[:4] for n, t in two.items()}, late=1.0,
               steps=10, lr=2e-3, batch_size=2, progress=False)
    fusion.meta_fit({n: encode_for_training(lab.tokenizer, t, t.train[:4]) for n, t in two.items()},
                    steps=1, shots=2, progress=False)
    print(fusion.weights)
    fusion_pca_figure(fusion_pca(fusion)).show()

# %% [markdown]
# ## 2. The full experiment: claims tried over three seeds
#
# `lora-workbench reproduce generate --seeds 0 1 2 --threads 1` (`workbench/experiments/generate.py`)
# trains six **expert** LoRAs per seed on binary sub-tasks of the real data (`workbench/tasks/pairs.py`:
# five topic pairs and German/Dutch; rank 1 on q/v, a checkpoint every step), holds out
# *Computers or Sports*, and tries:
#
# 1. ICM-LoRA: generated LoRAs recover ≥ 90% of the trained LoRA's gain over the base (on the loss);
# 2. ICM-LoRA: swapping the condition switches the behaviour (the LoRA generated for another expert is
#    worse on this expert's task);
# 3. and 4. SG-LoRA on the held-out task described in words only, against the nearest expert and the
#    uniform average of the six;
# 5. ICM-Fusion against task arithmetic (Σ ΔW) of the same three LoRAs on the mean multi-task loss;
# 6. storage: generator parameters against the LoRAs it replaces.
#
# The schedule is CPU-sized (4 LoRA steps, 100 CVAE steps, 6 evaluation examples); the summary lists
# every setting and deviation. Verdicts come from 95% t intervals over seeds: "not shown" is not
# "refuted".

# %%
if not QUICK:
    scratch_dir = Path(tempfile.mkdtemp(prefix="lw14_"))
    quick_run = reproduce("generate", quick=True, out=scratch_dir, lab=lab, log=lambda s: None)
    print(quick_run.table.pivot_table(index=["measure", "task"], columns="arm", values="value").round(3))
else:
    print("LORA_WORKBENCH_QUICK=1: no live run (the full results below are read from results/)")

# %%
full = show_full("generate")
full if full is None else full.round(3)


# %%
def rows_figure(summary: pd.DataFrame | None, picks: list[tuple[str, str, str, str]], title: str):
    """Bars of chosen (arm, measure, task) rows with their 95% intervals; label per bar."""
    if summary is None:
        return None
    fig = go.Figure()
    for arm, measure, task, label in picks:
        r = summary[(summary.arm == arm) & (summary.measure == measure) & (summary.task == task)]
        if len(r):
            r = r.iloc[0]
            fig.add_bar(x=[label], y=[r["mean"]], name=label, text=[f"n={r.n}"], textposition="outside",
                        error_y=dict(type="data", symmetric=False, array=[r.high - r["mean"]],
                                     arrayminus=[r["mean"] - r.low]))
    fig.update_layout(title=title, template="plotly_white", height=380, showlegend=False)
    return fig


HELD = "topic_computers_sports"
rows_figure(full, [("sg_lora", "loss_sg", HELD, "SG-LoRA"),
                   ("sg_lora", "loss_nearest", HELD, "nearest expert"),
                   ("sg_lora", "loss_uniform", HELD, "uniform average"),
                   ("sg_lora", "loss_base", HELD, "base")],
            "held-out task described in words: answer loss (lower is better), 95% CI")

# %%
rows_figure(full, [("icm_fusion", f"multitask_loss_{k}", "", k) for k in
                   ("fused_meta", "fused_uniform", "ta", "average", "base")],
            "ICM-Fusion against task arithmetic: mean multi-task loss, 95% CI")

# %% [markdown]
# ## What to take away
#
# - A generator is a model of adapter weights: its samples are adapters like any other (lineage,
#   evaluation, merging, PEFT export), and its claims are tried like any other method's.
# - At CPU scale, with a handful of checkpoints per expert, the CVAE sees few examples of each condition;
#   the full run's verdicts (for or against the papers) are in `results/generate.md`.
# - SG-LoRA and ICM-Fusion have no public code: their implementations here are labelled reconstructions
#   (see the `Reference:` and deviation notes in `workbench/generation/sg_lora.py` and `icm_fusion.py`).
