"""Search: merge weights found with evaluation in the loop, against TIES at its defaults and the uniform sum.

Claims (LoRAHub, Huang et al., 2023; AdaMerging, Yang et al., ICLR 2024; mergekit-evolve, Akiba et al.,
2024: searched merge coefficients beat hand-set ones):

1. task-arithmetic weights searched gradient-free with nevergrad's NGOpt (LoRAHub's search) score higher
   on held-out examples, in mean normalized score over the four tasks, than the uniform sum of the four
   ready adapters;
2. the same search beats TIES at its defaults (density 0.2, weights 1);
3. nevergrad beats random search at the same evaluation budget;
4. AdaMerging's task-wise coefficients, learned by entropy minimization on unlabeled inputs without any
   score, beat the uniform sum.

Setting: the four ready SmolLM2 task LoRAs (``workbench.ready``: arithmetic, topic, language, code; rank 8
on q/k/v/o, trained alone). Each search scores candidates on the first ``Schedule.prompts`` eval examples
of every task (the search split) and the arms are reported on the next ``eval_limit`` (held out from the
search). The normalized score of a task is the arm's score over the task's own ready adapter's on the same
examples (solo ÷ merged for the code task's loss). Seeds seed the searches; the uniform sum and TIES are
the same in every seed (evaluated once per process, repeated per seed for the paired intervals).

Reference: Huang et al., "LoraHub: Efficient Cross-Task Generalization via Dynamic LoRA Composition",
COLM 2024; Yang et al., "AdaMerging: Adaptive Model Merging for Multi-Task Learning", ICLR 2024; Akiba et
al., "Evolutionary Optimization of Model Merging Recipes", 2024; Yadav et al., TIES-Merging, NeurIPS 2023.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from workbench import ready
from workbench.experiments.banks import task_bank
from workbench.experiments.base import (
    EXPERIMENTS,
    Experiment,
    Schedule,
    Verdict,
    at_least,
    paired,
    rows,
    scratch,
)
from workbench.search import LINEAR, Candidate, LabObjective, SearchSpace, search, wide

UNIFORM, TIES, NEVERGRAD, RANDOM, ADAMERGING = "uniform", "ties", "nevergrad", "random", "adamerging"
WEIGHTS = (0.0, 1.5)
PATIENCE = 6
ADA_STEPS, ADA_LR = 3, 0.1


@EXPERIMENTS.register("search")
class SearchExperiment(Experiment):
    """Merge weights searched with evaluation in the loop against TIES' defaults and the uniform sum."""

    title = ("Search: merge weights found with evaluation in the loop against TIES at its defaults and the "
             "uniform sum")
    claims = ("merge weights searched gradient-free with nevergrad (LoRAHub's NGOpt) beat the uniform sum on "
              "held-out examples",
              "the nevergrad-searched weights beat TIES at its defaults",
              "nevergrad beats random search at the same evaluation budget",
              "AdaMerging's entropy-learned coefficients beat the uniform sum")
    arms = (UNIFORM, TIES, NEVERGRAD, RANDOM, ADAMERGING)
    tasks = tuple(ready.NAMES)
    # steps = the evaluation budget of each search; prompts = examples per task a search scores on;
    # eval_limit = held-out examples per task every arm is reported on.
    full = Schedule(steps=8, batch_size=16, eval_limit=8, prompts=3)
    quick = Schedule(steps=2, batch_size=8, eval_limit=2, prompts=1, seeds=(0,))
    notes = ("adapters: the four shipped ready task LoRAs (rank 8, α 16, q/k/v/o, each trained alone, "
             "seed 0), the same in every seed and arm; nothing is trained (steps is the search budget).",
             "search space (nevergrad, random): one task_arithmetic weight per adapter in [0, 1.5] "
             "(LoRAHub's setting; the library also searches density and method, left out here for the "
             "budget); "
             "objective: the mean over the four tasks of the normalized score (merged ÷ solo, solo ÷ merged "
             "for code's loss) on the search split, the first `prompts` eval examples of each task; every "
             "search starts from the uniform sum, so its first evaluation is the uniform arm's candidate.",
             "arms are reported on the next eval_limit eval examples of each task (held out from the "
             "search): uniform = task_arithmetic with weights 1; ties = TIES at density 0.2, weights 1; "
             f"nevergrad = NGOpt with `steps` evaluations, patience {PATIENCE}; random = uniform random "
             "candidates after the uniform start, same budget and patience; adamerging = task-wise "
             f"coefficients from 0.3, Adam lr {ADA_LR}, {ADA_STEPS} steps per proposal on the entropy of the "
             "first answer token of the search split's prompts (no labels), `steps` // 4 proposals, the last "
             "one reported (no score chooses it).",
             "deviations: LoRAHub searches in [-1.5, 1.5] from 0 with an L1 penalty (here [0, 1.5] from the "
             "uniform sum, no penalty) and scores a few-shot loss (here each task's own metric); AdaMerging "
             "runs 500 Adam steps at lr 1e-3 on vision classifiers (here a few steps at a larger rate on an "
             "LM's first answer token); mergekit-evolve evaluates candidates in parallel on Ray and "
             "searches hundreds of candidates (here one after another, 8).",
             "CPU scale (sized for ~15 min at 1 thread on a quiet core, 3 seeds; one evaluation of 4 tasks × "
             "3 examples ≈ 8 s there, code's loss being most of it): search budget 8 evaluations of 3 "
             "examples per task, reports on 8 held-out examples per task; the uniform and ties arms are "
             "evaluated once and repeated in every seed.",
             "seeds (note added after the first full run): NGOpt at a budget of 8 in 4 dimensions picks a "
             "deterministic optimizer, whose proposals do not depend on the seed, and AdaMerging draws "
             "nothing at random: their three seeds are the same search repeated, so their zero-width "
             "intervals say nothing about seed-to-seed variation; only the random arm's seeds differ. A "
             "seed-sensitive optimizer (nevergrad's CMA or OnePlusOne) would give a real interval.")

    bank_steps = 20  # training steps of each task LoRA where the lab has no ready adapters (tiny tests)

    def __init__(self) -> None:
        self._fixed: dict[str, pd.DataFrame] = {}  # the seed-independent arms, evaluated once
        self._refs: dict[tuple, dict[str, float]] = {}  # (offset, limit) -> the solo scores normalized by

    def _objective(self, lab, names, loaded, *, offset: int, limit: int, schedule: Schedule, seed: int = 0):
        """A LabObjective on eval[offset:offset + limit], its solo scores computed once per process."""
        obj = LabObjective(lab, names, loaded, limit=limit, offset=offset, batch_size=schedule.batch_size,
                           seed=seed, reference=self._refs.get((offset, limit)))
        self._refs[(offset, limit)] = obj.references()
        return obj

    def run_arm(self, lab, arm: str, seed: int, schedule: Schedule) -> pd.DataFrame:
        if arm in self._fixed:
            return self._fixed[arm]
        loaded = self.load_tasks()
        names = list(loaded)
        with scratch(lab):
            task_bank(lab, _features(lab, loaded), steps=self.bank_steps, lr=3e-3, batch_size=4, seed=0)
            t0 = time.perf_counter()
            report = self._objective(lab, names, loaded, offset=schedule.prompts, limit=schedule.eval_limit,
                                     schedule=schedule)
            extra: dict[str, float] = {}
            if arm == UNIFORM:
                chosen = Candidate({n: 1.0 for n in names}, LINEAR)
            elif arm == TIES:
                chosen = Candidate({n: 1.0 for n in names}, "ties", 0.2)
            else:
                chosen, extra = self._search(lab, arm, names, loaded, seed, schedule)
            scores = report.scores(chosen)
            norm = {t: s["normalized"] for t, s in scores.items()}
            out = rows(arm, {"mean_normalized": report.combine(norm), "seconds": time.perf_counter() - t0,
                             **extra, **{f"weight.{n}": w for n, w in chosen.weights.items()},
                             **({"density": chosen.density} if chosen.density is not None else {})})
            for t, s in scores.items():
                out += rows(arm, {"normalized": s["normalized"], "score": s["value"]}, task=t)
            frame = pd.DataFrame(out)
            frame = frame[np.isfinite(frame.value)]  # a normalized score with a zero solo score is undefined
            if arm in (UNIFORM, TIES):
                self._fixed[arm] = frame
            return frame

    def _search(self, lab, arm, names, loaded, seed, schedule) -> tuple[Candidate, dict]:
        objective = self._objective(lab, names, loaded, offset=0, limit=schedule.prompts, schedule=schedule,
                                    seed=seed)
        if arm == ADAMERGING:
            space = SearchSpace(names, methods=(LINEAR,), weights=WEIGHTS)
            run = search(objective, space, "adamerging", budget=max(1, schedule.steps // 4), seed=seed,
                         progress=False, granularity="task", steps=ADA_STEPS, lr=ADA_LR,
                         batch_size=schedule.batch_size)
            history = run.searcher.history
            extra = {"entropy_start": history.entropy.iloc[0], "entropy_end": history.entropy.iloc[-1]}
            last = run.candidates[-1]  # AdaMerging uses no labels: its last proposal, not the best scored
            return last, extra | {"search_objective": float(wide(run.frame).objective.iloc[-1]),
                                  "evaluations": run.evaluations}
        else:
            space = SearchSpace(names, methods=(LINEAR,), weights=WEIGHTS)
            params = {"optimizer": "NGOpt"} if arm == NEVERGRAD else {}
            run = search(objective, space, arm, budget=schedule.steps, patience=PATIENCE, seed=seed,
                         start=space.uniform(), progress=False, **params)
            extra = {}
        return run.best, extra | {"search_objective": run.best_value, "evaluations": run.evaluations}

    def verdicts(self, table: pd.DataFrame) -> list[Verdict]:
        out, arms = [], set(table.arm)
        m = "mean_normalized"
        for claim, arm, base in ((0, NEVERGRAD, UNIFORM), (1, NEVERGRAD, TIES), (2, NEVERGRAD, RANDOM),
                                 (3, ADAMERGING, UNIFORM)):
            if {arm, base} <= arms:
                d = paired(table, m, arm, base)
                out.append(Verdict(self.claims[claim], f"{m}: {arm} − {base}", d, at_least(d)))
        return out


def _features(lab, loaded) -> dict:
    """Training features per task (only used where the ready adapters are not this lab's: tiny tests)."""
    from workbench.tasks import encode_for_training

    if lab.name == ready.BASE:
        return {n: [] for n in loaded}
    return {n: [f | {"task": i} for f in encode_for_training(lab.tokenizer, t, t.train)]
            for i, (n, t) in enumerate(loaded.items())}
