"""DMoERM's two levels: the outer router's bars and the inner capability weights (render only)."""

from __future__ import annotations

import pandas as pd

from workbench.errors import WorkbenchError


def router_bars_figure(bars: pd.DataFrame, *, title: str = "DMoERM outer router: category probability"):
    """Grouped bars from ``analysis.reward_mixture.router_bars``' frame (``group, category, prob``):
    per prompt group, the mean probability the router gives each category."""
    return _grouped(bars, "category", "prob", title, "mean routing probability")


def capability_weights_figure(weights: pd.DataFrame, *,
                              title: str = "DMoERM inner MLP: weight of each capability expert"):
    """Grouped bars from ``analysis.reward_mixture.capability_weights``' frame (``group, expert,
    weight``): per conversation group, each expert's share of the reward's gradient × input."""
    return _grouped(weights, "expert", "weight", title, "attribution share")


def _grouped(frame: pd.DataFrame, series: str, value: str, title: str, axis: str):
    import plotly.graph_objects as go

    need = {"group", series, value}
    if frame.empty or not need <= set(frame.columns):
        raise WorkbenchError(f"this figure takes a frame with columns {sorted(need)}; "
                             f"got {list(frame.columns)}")
    fig = go.Figure()
    for name, part in frame.groupby(series, sort=False):
        error = ({"error_y": {"type": "data", "symmetric": False, "array": part["high"] - part[value],
                              "arrayminus": part[value] - part["low"]}}
                 if {"low", "high"} <= set(part.columns) else {})
        fig.add_trace(go.Bar(name=str(name), x=part["group"], y=part[value], **error))
    fig.update_layout(title=title, barmode="group", yaxis_title=axis, yaxis_range=[0, 1],
                      template="plotly_white", height=340)
    return fig
