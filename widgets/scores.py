"""Plots of evaluation scores and training curves (static plotly figures: they only render)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go


def score_bars(scores: pd.DataFrame, *, title: str = "Scores on held-out data") -> go.Figure:
    """Grouped bars: one group per task, one bar per adapter (``base`` first).

    Args:
        scores: the frame of ``Workbench.evaluate`` (``adapter, task, metric, value, higher_is_better``).
    """
    adapters = list(dict.fromkeys(["base", *scores.adapter]))
    adapters = [a for a in adapters if a in set(scores.adapter)]
    labels = {t: f"{t}<br>({m}{'' if h else ', lower is better'})"
              for t, m, h in scores[["task", "metric", "higher_is_better"]].drop_duplicates().values}
    fig = go.Figure()
    for a in adapters:
        part = scores[scores.adapter == a]
        fig.add_bar(name=a, x=[labels[t] for t in part.task], y=part.value,
                    text=[f"{v:.2f}" for v in part.value], textposition="outside",
                    marker_color="#9aa0a6" if a == "base" else None)
    fig.update_layout(barmode="group", title=title, yaxis_title="score", legend_title="adapter",
                      template="plotly_white", height=420, margin=dict(t=60, b=40))
    return fig


def loss_curve(history: pd.DataFrame, *, title: str = "Training loss") -> go.Figure:
    """Loss per step (and its running mean) from ``TrainResult.history``."""
    fig = go.Figure()
    fig.add_scatter(x=history.step, y=history.loss, mode="lines", name="loss", opacity=0.4)
    fig.add_scatter(x=history.step, y=history.loss.rolling(10, min_periods=1).mean(),
                    mode="lines", name="running mean (10)")
    fig.update_layout(title=title, xaxis_title="step", yaxis_title="loss",
                      template="plotly_white", height=320, margin=dict(t=50, b=40))
    return fig
