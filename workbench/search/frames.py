"""Frames of a search: one row per candidate, the best candidates, the Pareto front across two tasks.

    wide(run.frame)                         # candidate, parameters, objective, score.<task>...
    pareto_front(run.frame, "arithmetic", "topic")   # the candidates no other beats on both tasks
    best(run.frame)                         # the best candidate's row
"""

from __future__ import annotations

import pandas as pd

from workbench.errors import WorkbenchError

KEYS = ["search", "seed", "candidate"]


def wide(frame: pd.DataFrame, column: str = "normalized") -> pd.DataFrame:
    """One row per candidate: its parameters, objective and ``score.<task>`` (``column`` of each task)."""
    if frame.empty:
        return pd.DataFrame(columns=[*KEYS, "objective"])
    scored = ("task", "metric", "value", "normalized", "seconds", "cached")
    params = [c for c in frame.columns if c not in scored]
    head = frame.drop_duplicates(KEYS)[params].set_index(KEYS)
    scores = frame.pivot_table(index=KEYS, columns="task", values=column, aggfunc="first", sort=False,
                            dropna=False)
    scores.columns = [f"score.{t}" for t in scores.columns]
    return head.join(scores).reset_index()


def best(frame: pd.DataFrame) -> pd.Series:
    """The row of ``wide(frame)`` with the highest objective (the first of ties)."""
    table = wide(frame)
    if table.empty:
        raise WorkbenchError("the search has no candidates yet")
    return table.loc[table.objective.idxmax()]


def pareto_front(frame: pd.DataFrame, x: str, y: str, column: str = "normalized") -> pd.DataFrame:
    """The candidates of ``wide(frame)`` not dominated on tasks ``x`` and ``y`` (higher is better on both),
    sorted by ``x``; with a column ``front`` = True, and the dominated ones after it with False."""
    table = wide(frame, column)
    for t in (x, y):
        if f"score.{t}" not in table:
            raise WorkbenchError(f"the search scored no task {t!r}; its tasks: "
                                 f"{sorted(c[6:] for c in table.columns if c.startswith('score.'))}")
    xs, ys = table[f"score.{x}"].to_numpy(), table[f"score.{y}"].to_numpy()
    front = [not ((xs >= xi) & (ys >= yi) & ((xs > xi) | (ys > yi))).any()
             for xi, yi in zip(xs, ys, strict=True)]
    table = table.assign(front=front)
    return table.sort_values(["front", f"score.{x}"], ascending=[False, True]).reset_index(drop=True)
