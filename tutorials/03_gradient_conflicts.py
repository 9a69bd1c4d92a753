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
# # 03 · Gradient conflicts: training one LoRA on three tasks at once
#
# When one adapter learns several tasks together, each step's update is a sum of per-task gradients.
# Where those gradients point in opposite directions (negative cosine), one task's progress is
# another's loss. Nothing in the usual tools shows *where* in the network this happens for LoRA
# training. Here, on SmolLM2-135M and three real tasks (topic of a quotation, language of a sentence,
# arithmetic), we:
#
# 1. train one adapter on all three while a **ConflictMonitor** shows, live, the losses per task,
#    the task × task gradient cosines, and a layer × step map of conflicts;
# 2. find where the conflicts concentrate (layers, module types);
# 3. train again with **PCGrad** (and, in the full run, **CAGrad**) and compare conflicts and scores;
# 4. run a small LoRAFactory-style sweep (learning rate × variant) and ask which matters more.
#
# The per-task gradients are reduced at once to small Gram matrices (no gradient is stored), so
# capturing every step costs one forward and backward per task, not memory.
#
# With `LORA_WORKBENCH_QUICK=1` (the test suite) every schedule is a few steps; opened by a person it
# runs the full schedule (about 20–30 minutes on 2 CPU cores).

# %%
import os
import tempfile
from pathlib import Path

import pandas as pd

import workbench as wb
from widgets import ConflictMonitor, TrainingMonitor, score_bars, sweep_heatmap
from workbench.training import MultiTaskTrainer
from workbench.training.sweep import spread, sweep

QUICK = os.environ.get("LORA_WORKBENCH_QUICK") == "1"
STEPS = 5 if QUICK else 60  # joint training steps per method
CAPTURE = 1 if QUICK else 2  # capture conflicts every N steps
LIMIT = 4 if QUICK else None  # eval examples per task (None: the whole eval split)
METHODS = ["sum", "pcgrad"] if QUICK else ["sum", "pcgrad", "cagrad"]

lab = wb.Workbench.from_zoo("smollm2-135m")
tasks = wb.tasks.load(["topic", "language", "arithmetic"])
pd.DataFrame([{"task": t.name, "metric": t.metric, "train": len(t.train), "eval": len(t.eval),
               "example": t.train[0].prompt[:60] + " → " + t.train[0].target} for t in tasks.values()])

# %% [markdown]
# ## 1. Joint training, watched live
#
# `MultiTaskTrainer` draws each batch from the three tasks (proportional sampling), gives every task
# present its own forward and backward pass on capture steps, and hands the per-task gradients to
# the capture and to the gradient method (`sum`: plain joint training). The monitor trains in a
# background thread, so the cell returns at once and the page stays responsive: the **pause**
# button reaches Python between two steps. **Click a cell of the layer × step map** to see that
# layer's cosine matrix at that step.

# %%
def trainer(method: str) -> MultiTaskTrainer:
    return MultiTaskTrainer(lab, f"joint_{method}", list(tasks.values()), r=8, steps=STEPS, lr=2e-3,
                            batch_size=6, method=method, capture_every=CAPTURE, seed=0, progress=False)


runs = {"sum": trainer("sum")}
monitor = ConflictMonitor.from_trainer(runs["sum"])
monitor

# %%
monitor.wait()  # blocks this cell (not the widget) until the run is done
print(monitor.status)

# %% [markdown]
# ## 2. Where do the tasks pull apart?
#
# The capture gives tidy frames: the cosine of every task pair per layer and module at each captured
# step. Averaged over the steps, per pair and in total:

# %%
cap = runs["sum"].conflicts
pairs = cap.cosines(by="total")
pairs = pairs[pairs.task < pairs.task_b]
pairs.groupby(["task", "task_b"]).value.agg(["mean", "min", "max"]).round(3)

# %%
by_module = cap.cosines(by="module")
by_module = by_module[by_module.task < by_module.task_b]
per_module = by_module.groupby("module").value.agg(mean="mean", conflicting=lambda v: (v < 0).mean())
per_layer = by_module.groupby("layer").value.mean()
thirds = by_module.groupby(pd.cut(by_module.layer.astype(int), 3, labels=["first", "middle", "last"]),
                           observed=True).value.agg(mean="mean", conflicting=lambda v: (v < 0).mean())
print("most conflicting layers (lowest mean pair cosine):",
      per_layer.sort_values().head(3).round(3).to_dict())
print("per third of the network:\n", thirds.round(3))
per_module.sort_values("mean").round(3)

# %% [markdown]
# Read the frames above rather than a sentence written in advance: the values depend on the run.
# What to look for: whether the mean pair cosine is negative anywhere (a real conflict) or only
# small (near-orthogonal gradients, which a sum handles well), and whether the lowest values sit in
# a band of layers or in one module type. The monitor's map shows the same over time; early steps
# (the adapter still at zero) usually differ from later ones.
#
# ## 3. PCGrad (and CAGrad): same data, same seed, another way to combine the gradients
#
# PCGrad removes from each task gradient its component along any gradient it conflicts with;
# CAGrad picks the update that best improves the worst task inside a ball around the mean gradient.
# The capture always records the *raw* task gradients, so the comparison below is about where
# training leads: are the conflicts along the way fewer, and are the final scores better?

# %%
for method in METHODS[1:]:
    runs[method] = trainer(method).run()
runs["sum"] = runs["sum"].result()

rows = []
for method, res in runs.items():
    c = res.conflicts.cosines(by="total")
    c = c[c.task < c.task_b]
    frac = res.conflicts.conflicts(by="module").value.mean()
    losses = res.history[res.history.task != "total"].groupby("task").loss.apply(lambda v: v.tail(3).mean())
    rows.append({"method": method, "mean pair cosine": c.value.mean(),
                 "conflicting pairs per module": frac, **{f"last loss {k}": v for k, v in losses.items()}})
pd.DataFrame(rows).round(3)

# %%
scores = lab.evaluate([None, *[f"joint_{m}" for m in runs]], tasks, limit=LIMIT, progress=False)
wide = scores.pivot(index="task", columns="adapter", values="value")
print(wide.round(3))
score_bars(scores, title="Scores after joint training: sum vs PCGrad" + (" vs CAGrad" if not QUICK else ""))

# %% [markdown]
# In QUICK mode (a handful of steps, 4 eval examples per task) the score differences are noise;
# only the full run says something. The table above is the evidence either way — we do not claim
# here that a method wins.
#
# ## 4. A LoRAFactory-style sweep: learning rate against variant
#
# LoRAFactory reports that LoRA variants are far more sensitive to the learning rate than to
# anything else, and that a well-tuned plain LoRA matches most variants. A small grid on one task
# (topic): each point trains a fresh adapter, scores it, and is cached on disk (json + safetensors),
# so re-running this cell trains nothing.

# %%
GRID = ({"lr": [5e-4, 5e-3], "variant": ["lora", "pissa"]} if QUICK else
        {"lr": [3e-4, 1e-3, 3e-3, 1e-2], "variant": ["lora", "rslora", "loraplus", "pissa"]})
cache = Path(tempfile.gettempdir()) / "lora-workbench-sweeps" / ("quick" if QUICK else "full")
grid = sweep(lab, tasks["topic"], GRID, cache_dir=cache, steps=2 if QUICK else 40,
             batch_size=4 if QUICK else 8, limit=LIMIT, progress=False)
sweep_heatmap(grid, title="topic accuracy by variant and learning rate")

# %%
shares = spread(grid).set_index("factor").value
by_lr = grid.groupby("lr").value.mean()
by_variant = grid.groupby("variant").value.mean()
print("share of score variance explained:", shares.round(3).to_dict())
print(f"range over learning rates (mean over variants): {by_lr.max() - by_lr.min():.3f}; "
      f"over variants (mean over learning rates): {by_variant.max() - by_variant.min():.3f}")
verdict = "the learning rate" if shares.get("lr", 0) > shares.get("variant", 0) else "the variant"
print(f"here, {verdict} matters more" + (" (QUICK mode: 2 steps and 4 examples, so weak evidence)"
                                        if QUICK else ""))

# %% [markdown]
# The printed shares are the honest answer for this run: LoRAFactory's finding holds here if the
# learning rate's share is clearly the larger. The cached points stay on disk; a wider grid reuses
# them.
#
# Everything shown is a tidy frame from `workbench`: `cap.cosines(by="layer")`,
# `cap.conflicts(by="module")`, `cap.norms()`, `runs["pcgrad"].history`, `grid`. The monitor's
# `selected` trait holds the map cell you clicked:

# %%
monitor.selected  # click a cell of the layer × step map above, then re-run this cell

# %% [markdown]
# ## 5. One run, watched: the TrainingMonitor
#
# For a single run, `TrainingMonitor` shows the loss curve per task and a start/pause button; the run
# trains in a background thread, so the notebook stays usable. This one waits for you: press
# **start** (pause and resume as you like), then re-run the cell below it. It trains plain LoRA on
# topic at the learning rate that scored best for it in the sweep.

# %%
lora_points = grid[grid.variant == "lora"]
best_lr = float(lora_points.groupby("lr").value.mean().idxmax())
single = MultiTaskTrainer(lab, "topic_single", [tasks["topic"]], r=8, steps=STEPS, lr=best_lr, batch_size=6,
                          seed=0, progress=False)
run_monitor = TrainingMonitor.from_trainer(single, start=False)
run_monitor

# %%
print(run_monitor.status)  # "ready" until you press start; "step …" while it runs; "done: …" at the end
