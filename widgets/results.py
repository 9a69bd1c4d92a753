"""Views of the full runs (``results/``): a run's claims as text and a measure as bars with intervals.

They only render: the numbers come from ``workbench.experiments.summary.full_results`` (the summary's
claims and the measure table: mean, 95% interval and n over seeds for every arm, measure and task).
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from workbench.experiments.summary import full_results


def show_full(name: str) -> pd.DataFrame | None:
    """Print the claims of ``results/<name>.md`` and return its measure table, or name the command."""
    full = full_results(name)
    if full is None:
        print(f"no full results yet: run `lora-workbench reproduce {name} --seeds 0 1 2 --threads 1`")
        return None
    print(full[0])
    return full[1]


def interval_bars(summary: pd.DataFrame | None, measure: str, title: str, *, task: str = "",
                  by_task: bool = False, arms=None, height: int = 380) -> go.Figure | None:
    """Bars of ``measure``'s mean over seeds with its 95% interval and n.

    Args:
        summary: a measure table (``show_full``); None gives None (no run yet).
        task: the task of the rows to show ("" = the whole-model rows), unless ``by_task``.
        by_task: one group of bars per task (the per-task rows), a bar per arm in each.
        arms: only these arms (default: all, in the table's order).
    """
    if summary is None:
        return None
    part = summary[summary.measure == measure]
    part = part[part.task != ""] if by_task else part[part.task == task]
    if arms is not None:
        part = part[part.arm.isin(list(arms))]
    fig = go.Figure()
    for arm, rows in part.groupby("arm", sort=False):
        fig.add_bar(name=arm, x=list(rows.task) if by_task else [arm], y=rows["mean"],
                    error_y=dict(type="data", symmetric=False, array=rows.high - rows["mean"],
                                 arrayminus=rows["mean"] - rows.low),
                    text=[f"n={n}" for n in rows.n], textposition="outside")
    fig.update_layout(title=title, yaxis_title=measure, template="plotly_white", height=height,
                      barmode="group", showlegend=by_task)
    return fig
