"""search: evaluate candidates a searcher proposes, keep every one, stop at the budget or when stuck.

    objective = LabObjective(lab, names, tasks, limit=8)
    run = search(objective, SearchSpace(names), "nevergrad", budget=30, patience=10, seed=0)
    run.frame                    # every candidate × task: parameters, scores, objective, best so far
    run.best                     # the best Candidate; run.best_value its objective
    run = search(..., background=True)   # returns at once; run.wait(), run.stop(), run.subscribe(fn)

One evaluation = one candidate scored on every task of the objective; ``budget`` counts them (a candidate
proposed twice is read from memory but still counts, so a stuck optimizer cannot loop for ever).
``patience``: stop after that many evaluations in a row that do not raise the best objective by more than
``min_delta`` (mergekit-evolve and LoRAHub stop at the budget only; patience is ours).

In the background the loop runs on one daemon thread with torch at ``threads`` intra-op threads (as the
views' ``widgets._latest`` worker and the training monitor do), so a notebook keeps answering; leave the
lab alone while it runs. ``subscribe(fn)`` calls ``fn(run)`` after every evaluation (on that thread).

Reference: the evaluation-in-the-loop searches of LoRAHub (Huang et al., 2023), mergekit-evolve (Akiba et
al., "Evolutionary Optimization of Model Merging Recipes", 2024: CMA-ES over merge parameters, every
candidate's scores kept) and AdaMerging (Yang et al., ICLR 2024). Deviation from mergekit-evolve: one
process evaluates candidates one after another (no Ray workers).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from workbench.errors import WorkbenchError
from workbench.search.objective import Objective
from workbench.search.searcher import SEARCHERS, Searcher
from workbench.search.space import Candidate, SearchSpace


class SearchRun:
    """A search in progress or done: its candidates (``frame``), the best one, and control of the loop."""

    def __init__(self, objective: Objective, space: SearchSpace, searcher: Searcher, name: str, *,
                 budget: int, patience: int | None, min_delta: float, seed: int,
                 start: Candidate | None, progress: bool, workers=None) -> None:
        self.objective, self.space, self.searcher, self.name = objective, space, searcher, name
        self.budget, self.patience, self.min_delta, self.seed = budget, patience, min_delta, seed
        self.start, self.progress = start, progress
        self.workers = workers  # a workbench.search.workers.Workers, or None: score here, one at a time
        self.batch = 1 if workers is None else workers.size
        self._stale = 0
        self.candidates: list[Candidate] = []
        self.rows: list[dict] = []
        self.best: Candidate | None = None
        self.best_value = -np.inf
        self.stopped_by = ""  # "budget", "patience", "exhausted", "stopped", or the error
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[SearchRun], None]] = []

    # -- reading ---------------------------------------------------------------------------------
    @property
    def frame(self) -> pd.DataFrame:
        """One row per candidate × task: ``search, searcher, seed, candidate, method, density,
        weight.<adapter>..., note, task, metric, value, normalized, objective, best, seconds, cached``."""
        with self._lock:
            rows = list(self.rows)
        return pd.DataFrame(rows)

    @property
    def evaluations(self) -> int:
        return len(self.candidates)

    @property
    def done(self) -> bool:
        return bool(self.stopped_by)

    def subscribe(self, fn: Callable[[SearchRun], None]) -> None:
        """Call ``fn(run)`` after every evaluation and once when the search ends (on the search's thread
        when in the background)."""
        self._listeners.append(fn)

    # -- control -----------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop after the evaluation running now."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> SearchRun:
        """Block until a background search ends; raise what stopped it, if anything."""
        if self._thread is not None:
            self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        return self

    def _background(self, threads: int | None) -> None:
        def target():
            if threads is not None:
                import torch
                torch.set_num_threads(int(threads))
            try:
                self._loop()
            except BaseException:  # kept in self.error for wait() and shown by the view
                pass

        self._thread = threading.Thread(target=target, daemon=True, name=f"search-{self.name}")
        self._thread.start()

    # -- the loop ----------------------------------------------------------------------------------
    def _loop(self) -> None:
        """Run to the end; the listeners hear once more when it ends (``stopped_by`` set), also on error."""
        try:
            self._iterate()
        except BaseException as e:
            self.error = e
            self.stopped_by = f"error: {e}"
            raise
        finally:
            for fn in self._listeners:
                fn(self)

    def _iterate(self) -> None:
        rng = np.random.default_rng(self.seed)  # the pareto scalarization's directions
        self.searcher.setup(self.space, self.objective, budget=self.budget, seed=self.seed, start=self.start)
        seen: dict[tuple, dict] = {}
        self._stale = 0  # evaluations in a row without an improvement above min_delta
        bar = self._bar = tqdm(total=self.budget, desc=f"search {self.name}", disable=not self.progress)
        with bar:
            while len(self.candidates) < self.budget:
                if self._stop.is_set():
                    self.stopped_by = "stopped"
                    return
                batch = []  # one candidate, or as many as there are workers (scored together)
                while len(batch) < self.batch and len(self.candidates) + len(batch) < self.budget:
                    c = self.searcher.ask()
                    if c is None:
                        break
                    batch.append(c)
                if not batch:
                    self.stopped_by = "exhausted"
                    return
                t0 = time.perf_counter()
                fresh = list({c.key(): c for c in batch if c.key() not in seen}.values())
                if fresh:
                    got = (self.workers.map(self.objective, fresh) if self.workers is not None
                           else [self.objective.scores(c) for c in fresh])
                    seen |= {c.key(): s for c, s in zip(fresh, got, strict=True)}
                seconds = (time.perf_counter() - t0) / len(batch)
                scored = {c.key() for c in fresh}  # the first of each is not a cache hit
                for c in batch:
                    cached = c.key() not in scored
                    scored.discard(c.key())
                    if self._tell(c, seen[c.key()], cached, seconds, rng):
                        return
                if len(batch) < self.batch and len(self.candidates) < self.budget:
                    self.stopped_by = "exhausted"
                    return
        self.stopped_by = "budget"

    def _tell(self, c: Candidate, scores: dict, cached: bool, seconds: float, rng) -> bool:
        """Tell the searcher one scored candidate and keep it; True when patience stops the search."""
        norm = {t: scores[t]["normalized"] for t in self.objective.tasks}
        value = self.objective.combine(norm)
        self.searcher.tell(c, self.objective.scalar(norm, rng))
        improved = value > self.best_value + self.min_delta
        if value > self.best_value:
            self.best, self.best_value = c, value
        self._stale = 0 if improved else self._stale + 1
        self._record(c, scores, value, seconds, cached)
        self._bar.update()
        self._bar.set_postfix_str(f"best {self.best_value:.3f}")
        for fn in self._listeners:
            fn(self)
        if self.patience is not None and self._stale >= self.patience:
            self.stopped_by = "patience"
            return True
        return False

    def _record(self, c: Candidate, scores: dict, value: float, seconds: float, cached: bool) -> None:
        i = len(self.candidates)
        head = {"search": self.name, "searcher": type(self.searcher).__name__, "seed": self.seed,
                "candidate": i, **c.params(), "note": c.note}
        rows = [head | {"task": t, "metric": scores[t]["metric"], "value": scores[t]["value"],
                        "normalized": scores[t]["normalized"], "objective": value, "best": self.best_value,
                        "seconds": seconds, "cached": cached} for t in self.objective.tasks]
        with self._lock:
            self.candidates.append(c)
            self.rows.extend(rows)
        tracker = getattr(getattr(self.objective, "lab", None), "tracker", None)
        if tracker is not None:  # the lab's run store keeps every candidate (workbench.runs)
            tracker.record(f"{self.name} #{i}", "candidate", params=head, tags={"search": str(self.name)},
                           metrics={"objective": value, **{f"{t}/{scores[t]['metric']}": scores[t]["value"]
                                                           for t in self.objective.tasks}})


def search(objective: Objective, space: SearchSpace, searcher: str | Searcher = "random", *, budget: int = 20,
           patience: int | None = None, min_delta: float = 0.0, seed: int = 0, start: Candidate | None = None,
           name: str | None = None, progress: bool = True, background: bool = False, threads: int | None = 1,
           workers=None, **searcher_params) -> SearchRun:
    """Search ``space`` for the candidate that maximizes ``objective``.

    Args:
        objective: a ``LabObjective`` (the lab's tasks) or any ``Objective`` (``FunctionObjective``).
        space: the adapters, methods and boxes searched.
        searcher: a ``SEARCHERS`` name (``grid``, ``random``, ``nevergrad``, ``adamerging``) or an instance.
        budget: the most evaluations (candidates scored).
        patience: stop after this many evaluations without an improvement above ``min_delta`` (None: never).
        seed: seeds the searcher and the pareto directions: the same seed proposes the same candidates.
        start: the first candidate proposed (random and nevergrad; e.g. ``space.uniform()``).
        name: the search's label in the frame (default: the searcher's name).
        progress: a ``tqdm.auto`` bar counting evaluations.
        background: run on a daemon thread and return at once (``run.wait()`` joins it).
        threads: torch's intra-op threads on that thread (None: leave torch's setting).
        workers: a ``Workers`` pool (``workbench.search.workers``): as many candidates as it has workers
            are asked, scored together on them, then told in order (grid and random search give the same
            results as without workers). Needs a ``LabObjective``.
        **searcher_params: the searcher's own parameters (``SEARCHERS.info(name).params``).

    Returns:
        The ``SearchRun`` (done unless ``background``).
    """
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise WorkbenchError(f"budget={budget!r}: give the number of evaluations, a whole number ≥ 1")
    if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 1):
        raise WorkbenchError(f"patience={patience!r}: give a whole number ≥ 1, or None to use the whole "
                             "budget")
    if isinstance(searcher, str):
        label = name or searcher
        searcher = SEARCHERS.get(searcher)(**SEARCHERS.check(searcher, searcher_params))
    elif searcher_params:
        raise WorkbenchError("searcher parameters go with a searcher's name, not with an instance")
    else:
        label = name or type(searcher).__name__
    run = SearchRun(objective, space, searcher, label, budget=budget, patience=patience, min_delta=min_delta,
                    seed=seed, start=start, progress=progress, workers=workers)
    if background:
        run._background(threads)
    else:
        run._loop()
    return run
