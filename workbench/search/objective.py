"""Objectives: per-task normalized scores of a Candidate, and the one number a searcher maximizes.

    objective = LabObjective(lab, ["arithmetic", "topic"], tasks, limit=8)   # the lab's tasks, scored
    objective = FunctionObjective(lambda c: {"a": ..., "b": ...}, ["a", "b"])  # a cheap synthetic one
    scores = objective.scores(candidate)       # task -> {"value", "normalized", "metric"}
    objective.combine({t: s["normalized"] for t, s in scores.items()})

``kind`` says how the per-task normalized scores become the number maximized: ``"mean"`` (their mean),
``"weighted"`` (a weighted mean, ``task_weights``) or ``"pareto"`` (a front over tasks: each proposal is
scored by a Chebyshev scalarization with weights drawn from the simplex, ParEGO's way of turning a
multi-objective search into a sequence of scalar ones; the reported ``objective`` is then the mean).

A task's normalized score is the candidate's score over its solo adapter's on the same examples
(``workbench.evaluation.normalized``: merged ÷ solo for a score, solo ÷ merged for a loss; 1 keeps the
solo adapter's quality). A task no adapter owns is normalized by the base model's score instead.

Reference: ParEGO's Chebyshev scalarization (Knowles, IEEE TEC 2006) for ``"pareto"``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from workbench.errors import WorkbenchError
from workbench.search.space import Candidate

KINDS = ("mean", "weighted", "pareto")


class Objective:
    """Per-task scores of a candidate (``scores``) and their combination (``combine``).

    Args:
        tasks: the task names scored, in order.
        kind: ``"mean"``, ``"weighted"`` or ``"pareto"`` (see the module docstring).
        task_weights: task -> weight for ``"weighted"`` (normalized to sum 1).
    """

    def __init__(self, tasks: Sequence[str], *, kind: str = "mean",
                 task_weights: Mapping[str, float] | None = None) -> None:
        if kind not in KINDS:
            raise WorkbenchError(f"objective kind {kind!r} is not one of {KINDS}")
        self.tasks = list(tasks)
        if not self.tasks:
            raise WorkbenchError("an objective needs at least one task")
        self.kind = kind
        if kind == "weighted":
            if not task_weights or set(task_weights) != set(self.tasks):
                raise WorkbenchError(f"kind='weighted' needs task_weights for exactly {self.tasks}; "
                                     f"got {dict(task_weights or {})}")
            total = float(sum(task_weights.values()))
            if not total > 0 or any(w < 0 for w in task_weights.values()):
                raise WorkbenchError(f"task_weights must be ≥ 0 with a positive sum; got "
                                     f"{dict(task_weights)}")
            self.task_weights = {t: float(task_weights[t]) / total for t in self.tasks}
        else:
            self.task_weights = {t: 1.0 / len(self.tasks) for t in self.tasks}

    def scores(self, candidate: Candidate) -> dict[str, dict]:
        """task -> ``{"value": raw score, "normalized": float, "metric": name}``."""
        raise NotImplementedError

    def combine(self, normalized: Mapping[str, float]) -> float:
        """The reported objective: the (weighted) mean of the normalized scores (NaN counts as 0)."""
        return float(sum(self.task_weights[t] * _finite(normalized[t]) for t in self.tasks))

    def scalar(self, normalized: Mapping[str, float], rng: np.random.Generator) -> float:
        """The number the searcher maximizes: ``combine``, or for ``"pareto"`` a Chebyshev scalarization
        min_t λ_t·s_t with λ drawn from the simplex (a different direction of the front per proposal)."""
        if self.kind != "pareto":
            return self.combine(normalized)
        lam = rng.dirichlet(np.ones(len(self.tasks)))
        s = np.array([_finite(normalized[t]) for t in self.tasks])
        return float(np.min(lam * s) + 0.05 * np.dot(lam, s))  # ParEGO's augmented form (ρ = 0.05)

    def describe(self) -> str:
        return f"{self.kind} of normalized scores on {', '.join(self.tasks)}"


class FunctionObjective(Objective):
    """An objective given as a function ``candidate -> {task: normalized score}`` (synthetic or custom)."""

    def __init__(self, fn: Callable[[Candidate], Mapping[str, float]], tasks: Sequence[str],
                 **kwargs) -> None:
        super().__init__(tasks, **kwargs)
        self.fn = fn

    def scores(self, candidate: Candidate) -> dict[str, dict]:
        out = self.fn(candidate)
        missing = set(self.tasks) - set(out)
        if missing:
            raise WorkbenchError(f"the objective function gave no score for tasks {sorted(missing)}")
        return {t: {"value": float(out[t]), "normalized": float(out[t]), "metric": "value"}
                for t in self.tasks}


class LabObjective(Objective):
    """The lab's tasks scored with ``lab.evaluate`` on the merge a candidate describes.

    Args:
        lab: the ``Workbench`` holding ``adapters``.
        adapters: the source adapters (the search space's ``adapters``).
        tasks: ``{name: Task}`` (``workbench.tasks.load``).
        limit: examples per task (None: all) taken from ``offset`` on in each task's eval split; keep the
            examples a search selects on apart from those it is reported on (``offset``).
        offset: the first eval example used.
        seed: the seed of random merge methods (DARE, DELLA).
        batch_size: examples per forward pass.
        cache_dir: a folder where each candidate's scores are kept as ``<key>.json`` (keyed by the base,
            the sources' fingerprints, the candidate, the tasks' examples and the seed), as ``sweep`` keeps
            its points: a rerun reads them and evaluates nothing.
        reference: task -> the score normalized against, when already known (``objective.references()``
            of another objective on the same examples); default: computed on the first ``scores``.
    """

    def __init__(self, lab, adapters: Sequence[str], tasks: Mapping, *, limit: int | None = 8,
                 offset: int = 0,
                 seed: int = 0, batch_size: int = 16, cache_dir: str | os.PathLike | None = None,
                 reference: Mapping[str, float] | None = None, **kwargs) -> None:
        super().__init__(list(tasks), **kwargs)
        from workbench.evaluation import owner
        from workbench.tasks import Task

        for n in adapters:
            lab._get(n)  # an unknown adapter fails here
        self.lab, self.adapters, self.seed, self.batch_size = lab, list(adapters), seed, batch_size
        end = None if limit is None else offset + limit
        self.task_objs: dict[str, Task] = {}
        for name, task in tasks.items():
            part = task.eval[offset:end]
            if not part:
                raise WorkbenchError(f"task {name!r} has {len(task.eval)} eval examples: none from offset "
                                     f"{offset}; lower offset")
            self.task_objs[name] = replace(task, eval=list(part))
        self.owners = {t: owner(t, lab.adapters, self.adapters) for t in self.tasks}
        self.reference: dict[str, float] | None = None if reference is None else dict(reference)
        self.cache = Path(cache_dir) if cache_dir is not None else None
        if self.cache is not None:
            self.cache.mkdir(parents=True, exist_ok=True)

    def references(self) -> dict[str, float]:
        """Each task's solo adapter's score (or the base model's where no adapter owns it), once."""
        if self.reference is None:
            ref = {}
            for t, task in self.task_objs.items():
                spec = {"ref": self.owners[t]} if self.owners[t] is not None else None
                frame = self.lab.evaluate(spec, task, progress=False, batch_size=self.batch_size)
                ref[t] = float(frame.value.iloc[0])
            self.reference = ref
        return self.reference

    def build(self, candidate: Candidate, name: str = "candidate"):
        """The merged Adapter a candidate describes (not added to the lab)."""
        from workbench.search.merged import build

        return build(self.lab, self.adapters, candidate, name=name, seed=self.seed)

    def _key(self, candidate: Candidate) -> str:
        from workbench.adapters.update_cache import adapter_fingerprint

        config = {"base": self.lab.fingerprint, "seed": self.seed, "candidate": candidate.key(),
                  "sources": [adapter_fingerprint(self.lab.adapters[n]) for n in self.adapters],
                  "tasks": [(t.name, [(e.prompt, e.target) for e in t.eval])
                            for t in self.task_objs.values()]}
        return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def scores(self, candidate: Candidate) -> dict[str, dict]:
        key = self._key(candidate) if self.cache is not None else None
        if key is not None and (self.cache / f"{key}.json").exists():
            return json.loads((self.cache / f"{key}.json").read_text())
        from workbench.evaluation import normalized

        ref = self.references()
        merged = self.build(candidate)
        frame = self.lab.evaluate(merged, list(self.task_objs.values()), progress=False,
                                  batch_size=self.batch_size)
        out = {}
        for row in frame.itertuples():
            out[row.task] = {"value": float(row.value), "metric": row.metric,
                             "normalized": normalized(float(row.value), ref[row.task],
                                                      bool(row.higher_is_better))}
        if key is not None:
            _write_json(self.cache, key, out)
        return out


def _finite(x: float) -> float:
    return float(x) if np.isfinite(x) else 0.0


def _write_json(folder: Path, key: str, value: dict) -> None:
    """``<key>.json`` by temp file + rename (a reader never sees half a file)."""
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".json.tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(value, f)
    os.replace(tmp, folder / f"{key}.json")
