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
# # 13 · Which weights? Searching merge settings with evaluation in the loop
#
# The question users of merging tools ask most is not "which method" but "which weights and which
# density". `workbench.search` answers it the way LoRAHub, mergekit-evolve and AdaMerging do: propose a
# merge setting (a **candidate**: one weight per adapter, a density, a method), merge, score the merge on
# the lab's tasks, and let a searcher use the score to propose the next one.
#
# - **The space** (`SearchSpace`): the adapters, the methods to choose among, the weight box and the
#   density box. Searchers see it as the unit cube; `decode` turns a point into a `Candidate`.
# - **The objective** (`LabObjective`): each task's score of the merge over its own adapter's score on
#   the same examples (the *normalized* score, 1 = as good as the task's own adapter), combined as the
#   mean over tasks, a weighted mean, or a Pareto front over tasks (each proposal then scored along a
#   random direction of the front, ParEGO's Chebyshev scalarization). A search selects on one slice of
#   each task's eval split (`offset`, `limit`); report on another.
# - **The searchers** (`SEARCHERS`, one file each): `grid` and `random` (the baselines), `nevergrad`
#   (LoRAHub's gradient-free search: NGOpt by default, or OnePlusOne, CMA ...), and `adamerging`
#   (AdaMerging: Adam on the coefficients of the exact weighted sum, task-wise or layer-wise, to lower
#   the entropy of the merged model's predictions on the tasks' *unlabeled* prompts: no score guides it).
# - **The run** (`search(...)`): a budget in evaluations, early stopping (`patience`), a seed (the same
#   seed proposes the same candidates), every candidate's parameters and per-task scores in one tidy
#   frame, a `tqdm` bar, and `background=True` to keep the notebook answering while it searches.
#
# `widgets.SearchProgress` draws a search as it runs: the objective over evaluations, the best weights so
# far, the Pareto front across two tasks you pick, and a button that opens any candidate in the
# MergeBuilder.
#
# When `LORA_WORKBENCH_QUICK=1` is set (as `make test` does), this notebook runs a tiny search on a cheap
# synthetic objective (a few seconds) and reads the full run's results from `results/`; otherwise it also
# searches live on SmolLM2.

# %%
import os

import numpy as np

from widgets import SearchProgress
from widgets.results import interval_bars, show_full
from workbench.search import SEARCHERS, FunctionObjective, SearchSpace, pareto_front, search, wide

QUICK = os.environ.get("LORA_WORKBENCH_QUICK") == "1"  # set by `make test`: no model
SEARCHERS.table()[["name", "summary", "flags"]]

# %% [markdown]
# ## 1. A planted optimum: does the search use the scores?
#
# Four "adapters" and two "tasks" whose scores we know: task `x` is best at the planted weights, task `y`
# prefers all weights low. The mean of the two is maximized near the planted point. A searcher that
# ignores the scores (random proposals) stays far from it at the same budget; nevergrad's CMA-ES (the
# optimizer mergekit-evolve runs) walks to it. (LoRAHub's NGOpt, the default, picks its own optimizer for
# the budget: it is slower per proposal, which matters only for objectives as cheap as this one.)

# %%
NAMES = ["arithmetic", "topic", "language", "code"]
PLANT = np.array([1.2, 0.4, 0.9, 0.2])


def scores(c):
    w = np.array([c.weights[n] for n in NAMES])
    return {"x": float(np.exp(-((w - PLANT) ** 2).sum())), "y": float(np.exp(-0.2 * (w ** 2).sum()))}


space = SearchSpace(NAMES, weights=(0.0, 1.5))
toy = FunctionObjective(scores, ["x", "y"])
run = search(toy, space, "nevergrad", budget=40, seed=0, start=space.uniform(), background=True,
             optimizer="CMA")
view = SearchProgress.from_run(run)
view

# %%
run.wait()
baseline = search(toy, space, "random", budget=40, seed=0, start=space.uniform(), progress=False)
{"nevergrad best": round(run.best_value, 3), "random best": round(baseline.best_value, 3),
 "nevergrad weights": {n: round(w, 2) for n, w in run.best.weights.items()}}

# %% [markdown]
# Every candidate is in `run.frame` (one row per candidate × task); `wide` puts one candidate per row and
# `pareto_front` marks the candidates no other one beats on both tasks.

# %%
wide(run.frame).tail(5).round(3)

# %%
pareto_front(run.frame, "x", "y").query("front")[["candidate", "score.x", "score.y", "objective"]].round(3)

# %% [markdown]
# ## 2. Live on SmolLM2 (skipped under `LORA_WORKBENCH_QUICK=1`)
#
# The four ready adapters, their weights and TIES' density searched with nevergrad on 3 examples per
# task, in the background; the view fills in as candidates are scored. Pick a candidate and press "open
# in MergeBuilder" to look at that merge (its previews, its quick evaluation, commit, export).

# %%
live = None
if not QUICK:
    import workbench as wb
    from workbench import ready
    from workbench.search import LabObjective

    lab = wb.Workbench.from_zoo("smollm2-135m")
    ready.load_all(lab)
    tasks = wb.tasks.load(ready.NAMES)
    real_space = SearchSpace(ready.NAMES, methods=["task_arithmetic", "ties"], density=(0.1, 1.0))
    objective = LabObjective(lab, ready.NAMES, tasks, limit=3)
    live = search(objective, real_space, "nevergrad", budget=8, seed=0, start=real_space.uniform(),
                  background=True)
SearchProgress.from_run(live, lab=lab, tasks=tasks) if live is not None else "QUICK: no live run"

# %% [markdown]
# ## 3. The full run: searched weights against TIES at its defaults and the uniform sum
#
# `lora-workbench reproduce search --seeds 0 1 2 --threads 1` runs five arms on the four ready adapters
# (`workbench/experiments/search.py`): the uniform sum (task arithmetic, weights 1), TIES at its defaults
# (density 0.2, weights 1), nevergrad (NGOpt) and random search over the four weights, each with a budget
# of 8 evaluations on 3 examples per task and starting from the uniform sum, and AdaMerging's task-wise
# coefficients (entropy only). Every arm is reported on 8 further examples per task that no search saw.
# The claims, with a 95% t interval over the three seeds of the search:

# %%
full = show_full("search")
full if full is None else full[full.measure.isin(["mean_normalized", "normalized"])].round(3)

# %%
interval_bars(full, "mean_normalized", "mean normalized score over the four tasks (held out), 95% CI",
              arms=["uniform", "ties", "nevergrad", "random", "adamerging"])

# %%
interval_bars(full, "normalized", "normalized score per task (held out), 95% CI", by_task=True)

# %% [markdown]
# **What the full run found** (`results/search.md`, 3 seeds, 8 held-out examples per task): the uniform sum
# of the four adapters keeps 0.451 of the solo adapters' quality on average (it overshoots: four updates
# at weight 1; the code task's loss triples); the searched weights keep 0.590 (+0.139 over the uniform
# sum, shown), TIES at its defaults 0.650: with 8 evaluations on 3 examples per task the search does not
# reach TIES (−0.060, refuted). Random search with the same budget keeps 0.548 [0.442, 0.655], and
# nevergrad − random = +0.042 [−0.064, +0.148] is not shown. AdaMerging, with no labels at all, keeps
# 0.575 (+0.124 over the uniform sum): it lowers every weight (code's to 0.18) because the entropy of the
# answers falls as the merge moves toward the base model. No merge answers a held-out arithmetic
# question exactly (normalized 0 in every arm). A caveat on the intervals: NGOpt at this budget picks a
# deterministic optimizer and AdaMerging draws nothing at random, so their three seeds repeat one search;
# only random search's seeds differ.

# %% [markdown]
# ## 4. Remember everything: the run store
#
# A lab records what it makes and measures in **MLflow** (`workbench.runs`), from a background thread so a
# cell never waits on it: every adapter trained, loaded, merged, extracted or generated (its lineage as
# parameters, its PEFT files once per content, a model card and, for a merge, the `recipe.json` that
# re-creates it), every `evaluate` (one metric per adapter and task) and every search candidate (its
# weights, method, density, scores and objective). A new lab records to MLflow's default local store,
# `sqlite:///mlflow.db` in the working folder, when MLflow is installed (`make lab` installs it);
# `lab.track(URI)` picks another store (any MLflow tracking URI), `lab.track(False)` or
# `LORA_WORKBENCH_TRACKING=0` records nothing. `lora-workbench runs` lists a store from the command line,
# and `lora-workbench merge recipe.json --store URI --out DIR` re-creates a recorded merge bit for bit
# (the sources are found in the store by content fingerprint; a changed source is refused by name).
#
# Searches scale out the same way: `search(..., workers=Workers(4))` scores four candidates at a time on a
# local Dask cluster bound to 127.0.0.1 (or `Workers(address="tcp://…")` for an existing one, or local
# processes without Dask); each worker builds the base once and gets the adapters as tensors, and every
# candidate still lands in this lab's run store.
#
# Below, a store in a temporary folder: two adapters merged by TIES on a tiny random model under
# `LORA_WORKBENCH_QUICK=1`, the ready adapters on SmolLM2 otherwise, then the recorded runs.

# %%
import tempfile
from pathlib import Path

import workbench as wb
from widgets.runs_view import runs_view
from workbench.runs import read_recipe

store = Path(tempfile.mkdtemp(prefix="lora-workbench-runs-"))
if QUICK:
    rec_lab = wb.Workbench.from_zoo("tiny-llama")
    rec_lab.new_adapter("a", r=2, init="random", seed=0)
    rec_lab.new_adapter("b", r=2, init="random", seed=1)
    rec_lab.track(f"sqlite:///{store / 'runs.db'}")
    rec_lab.merge(["a", "b"], method="ties", weights=[1.0, 0.5], density=0.5, name="a_and_b")
else:
    live.wait()  # the live search above uses the same lab
    rec_lab = lab
    rec_lab.track(f"sqlite:///{store / 'runs.db'}")
    rec_lab.merge(list(ready.NAMES), method="ties", name="ties_all")
    rec_lab.evaluate([None, "ties_all"], [tasks[n] for n in ready.NAMES], limit=4)
runs = rec_lab.runs()  # waits for the writer thread, then reads the store
runs_view(runs)

# %%
merged_run = runs[runs.event == "merged"].iloc[0]
recipe = read_recipe(Path(merged_run.artifact_uri.removeprefix("file://")) / "recipe.json")
{k: recipe[k] for k in ("method", "weights", "params", "sources", "result")}
