"""Scores relative to the solo adapters: how much of each task's own adapter a merge keeps.

The normalized score of a merge on a task is merged ÷ solo for a score (accuracy, exact match) and
solo ÷ merged for a loss (lower is better), where "solo" is the task's owner (``ownership.owner``)
scored alone on the same examples: 1 keeps the solo adapter's quality, 0.5 is half of it (or twice
its loss). A solo score of 0 (or a non-positive denominator) leaves the ratio undefined: NaN.

    frame = against_solo(lab, merged, ["arith", "topic"], tasks, limit=8)      # merged not in the lab
    normalize(lab.evaluate([*names, *merges], tasks), owners={t: t for t in names})
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, MutableMapping
from contextlib import nullcontext

import pandas as pd

from workbench.adapters import Adapter
from workbench.evaluation.ownership import owner
from workbench.evaluation.private import installed
from workbench.evaluation.scores import evaluate

COLUMNS = ["task", "metric", "higher_is_better", "merged", "solo_adapter", "solo", "normalized"]
MERGED = "merged"  # the label of the candidate in progress messages


def normalized(merged: float, solo: float, higher_is_better: bool) -> float:
    """merged ÷ solo for a score, solo ÷ merged for a loss; NaN when the denominator is not positive."""
    num, den = (merged, solo) if higher_is_better else (solo, merged)
    return num / den if den > 0 else float("nan")


def normalize(scores: pd.DataFrame, owners: Mapping[str, str | None]) -> pd.DataFrame:
    """The rows of ``scores`` (``Workbench.evaluate``'s frame) that are not solo rows, normalized.

    Args:
        scores: ``adapter, task, metric, value, higher_is_better`` rows, holding each owner's own row.
        owners: task -> the adapter label whose score on that task is "solo" (None: no solo).

    Returns:
        The other rows with ``solo_adapter``, ``solo`` and ``normalized`` added (the base model's and the
        owners' rows are left out).
    """
    value = scores.set_index(["adapter", "task"])["value"]
    solo_rows = {(o, t) for t, o in owners.items() if o is not None}
    out = scores[[(a, t) not in solo_rows and a != "base" for a, t in zip(scores.adapter, scores.task,
                                                                           strict=True)]].copy()
    out["solo_adapter"] = [owners.get(t) for t in out.task]
    out["solo"] = [float(value.get((o, t), float("nan"))) if o is not None else float("nan")
                   for o, t in zip(out.solo_adapter, out.task, strict=True)]
    out["normalized"] = [normalized(v, s, bool(h)) for v, s, h in
                         zip(out.value, out.solo, out.higher_is_better, strict=True)]
    return out.reset_index(drop=True)


def against_solo(lab, candidate: Adapter, sources: Iterable[str], tasks: Mapping, *, limit: int | None,
                 cache: MutableMapping | None = None,
                 progress: Callable[[int, int, str], None] | None = None) -> pd.DataFrame:
    """Score ``candidate`` (in the lab or not) and each task's solo adapter, one call per pair.

    The tasks scored are those owned by one of ``sources`` or by no adapter of the lab; a task owned
    by an adapter left out of ``sources`` is skipped (the candidate is not meant to keep it). The
    candidate is installed privately for the duration (``installed``) unless it is in the lab: the
    user's lab is the same afterwards.

    Args:
        lab: the ``Workbench`` holding ``sources``.
        candidate: the adapter to judge (a merge preview).
        sources: the adapters that went into it.
        tasks: ``{name: Task}``.
        limit: held-out examples per task (None: all).
        cache: ``(adapter, task, limit) -> score`` of solo runs, read and filled here (solo scores do
            not change while the adapters do not).
        progress: called as ``progress(done, total, label)`` before each call and once at the end.

    Returns:
        DataFrame with ``COLUMNS``, one row per task scored, in the order of ``tasks``.
    """
    cache = {} if cache is None else cache
    report = progress or (lambda *_: None)
    sources = list(sources)
    chosen = [(task, owner(name, lab.adapters)) for name, task in tasks.items()]
    chosen = [(task, o) for task, o in chosen if o is None or o in sources]
    jobs = [(MERGED, task) for task, _ in chosen]
    jobs += [(o, task) for task, o in chosen if o is not None and (o, task.name, limit) not in cache]
    merged: dict[str, pd.Series] = {}
    in_lab = lab.adapters.get(candidate.name) is candidate
    with nullcontext(candidate.name) if in_lab else installed(lab, candidate) as name:
        for i, (label, task) in enumerate(jobs):
            report(i, len(jobs), f"{label} on {task.name}")
            spec = name if label == MERGED else label
            row = evaluate(lab, {label: spec}, task, limit=limit, progress=False).iloc[0]
            if label == MERGED:
                merged[task.name] = row
            else:
                cache[label, task.name, limit] = float(row["value"])
        report(len(jobs), len(jobs), "done")
    rows = []
    for task, o in chosen:
        m = merged[task.name]
        solo = cache.get((o, task.name, limit), float("nan"))
        higher = bool(m["higher_is_better"])
        rows.append({"task": task.name, "metric": m["metric"], "higher_is_better": higher,
                     "merged": float(m["value"]), "solo_adapter": o, "solo": solo,
                     "normalized": normalized(float(m["value"]), solo, higher)})
    return pd.DataFrame(rows, columns=COLUMNS)

