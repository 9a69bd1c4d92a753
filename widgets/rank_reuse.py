"""MoRA rank reuse across tasks: a prompt-task × rank-block heatmap of gate mass (render only)."""

from __future__ import annotations

import pandas as pd

from workbench.errors import WorkbenchError


def rank_reuse_figure(table: pd.DataFrame, *, title: str = "MoRA: where each task's gate weight lands"):
    """Heatmap of ``analysis.rank_reuse.reuse_table``'s matrix: rows the prompts' task, columns the task
    whose rank block gets the weight (in arrival order); each row sums to 1. A diagonal means every task
    keeps to its own ranks; mass left of the diagonal is reuse of earlier tasks' ranks."""
    import plotly.graph_objects as go

    if table.empty:
        raise WorkbenchError("rank_reuse_figure takes reuse_table(...)'s group × block matrix; it is empty")
    z = table.to_numpy()
    fig = go.Figure(go.Heatmap(z=z, x=[f"{b} ranks" for b in table.columns], y=list(table.index),
                               zmin=0, zmax=1, colorscale="Blues", colorbar={"title": "gate mass"},
                               text=[[f"{v:.2f}" for v in row] for row in z], texttemplate="%{text}"))
    fig.update_layout(title=title, xaxis_title="rank block (task that added it)", yaxis_title="prompts of",
                      yaxis_autorange="reversed", template="plotly_white", height=320)
    return fig
