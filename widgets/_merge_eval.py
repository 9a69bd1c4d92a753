"""The MergeBuilder's quick evaluation: a merge and each task's own adapter on a held-out slice.

The scoring is ``Workbench.evaluate`` (one call per adapter and task, so that the view's progress bar
moves between calls); the merge is added to the lab under a private name for the duration and always
removed again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pandas as pd

from workbench.adapters.adapter import Adapter

COLUMNS = ["task", "metric", "higher_is_better", "merged", "solo_adapter", "solo", "normalized"]


def owner(lab, task: str, names: list[str]) -> str | None:
    """The adapter among ``names`` trained on ``task`` (by its lineage, else by its name), if any."""
    for n in names:
        if task in lab.adapters[n].lineage.get("tasks", []):
            return n
    return task if task in names else None


def normalized(merged: float, solo: float, higher_is_better: bool) -> float:
    """merged ÷ solo for a score, solo ÷ merged for a loss: 1 keeps the solo adapter's quality.

    NaN when the ratio is not defined (a zero or negative denominator, e.g. a solo exact match of 0).
    """
    num, den = (merged, solo) if higher_is_better else (solo, merged)
    return num / den if den > 0 else float("nan")


def quick_scores(lab, merged: Adapter, sources: list[str], tasks: Mapping, limit: int,
                 solo_cache: dict, progress: Callable[[int, int, str], None]) -> pd.DataFrame:
    """Score ``merged`` on every task owned by one of ``sources`` (or by none), and each owner alone.

    Args:
        lab: the Workbench holding ``sources``.
        merged: the merged adapter (not in the lab; added under a private name while scoring).
        sources: the adapters that went into the merge.
        tasks: ``{name: Task}``.
        limit: held-out examples per task.
        solo_cache: ``(adapter, task, limit) -> score``, filled here (solo scores do not change).
        progress: called as ``progress(done, total, label)`` before each call and at the end.

    Returns:
        DataFrame with ``COLUMNS``, one row per task scored.
    """
    everyone = list(lab.adapters)
    chosen = [(task, owner(lab, name, everyone)) for name, task in tasks.items()]
    chosen = [(task, o) for task, o in chosen if o is None or o in sources]
    temp = merged.copy(name=_free(lab, "_merge_preview"))
    jobs = [("merged", temp.name, task) for task, _ in chosen]
    jobs += [(o, o, task) for task, o in chosen if o is not None and (o, task.name, limit) not in solo_cache]
    values: dict = {}
    lab.add_adapter(temp)
    try:
        for i, (label, spec, task) in enumerate(jobs):
            progress(i, len(jobs), f"{label} on {task.name}")
            row = lab.evaluate({label: spec}, task, limit=limit, progress=False).iloc[0]
            values[label, task.name] = row
            if label != "merged":
                solo_cache[label, task.name, limit] = float(row["value"])
        progress(len(jobs), len(jobs), "done")
    finally:
        lab.remove_adapter(temp.name)
    rows = []
    for task, o in chosen:
        m = values["merged", task.name]
        solo = solo_cache.get((o, task.name, limit), float("nan"))
        higher = bool(m["higher_is_better"])
        rows.append({"task": task.name, "metric": m["metric"], "higher_is_better": higher,
                     "merged": float(m["value"]), "solo_adapter": o, "solo": solo,
                     "normalized": normalized(float(m["value"]), solo, higher)})
    return pd.DataFrame(rows, columns=COLUMNS)


def _free(lab, stem: str) -> str:
    return stem if stem not in lab.adapters else next(
        f"{stem}_{i}" for i in range(2, 10_000) if f"{stem}_{i}" not in lab.adapters)
