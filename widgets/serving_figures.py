"""The serving view: a static plotly figure of one serving run (the frame of ``lab.serve_run``).

    frame = lab.serve_run(requests, batch_size=16)
    serving_figure(frame)      # left: tokens/s against adapters per batch; right: rank mix per batch
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.analysis.serving import per_batch, rank_mix

LAYOUT = dict(template="plotly_white", margin=dict(t=60, b=40, l=50, r=20))


def serving_figure(frame: pd.DataFrame, title: str = "serving run: mixed-adapter batches") -> go.Figure:
    """Two panels from ``workbench.analysis.serving.serving_frame``: tokens per second of each batch
    against the adapters it held, and each batch's rows stacked by rank ("r8", "base", "router")."""
    batches, mix = per_batch(frame), rank_mix(frame)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("tokens/s against adapters in the batch",
                                                        "rank mix per batch (rows)"))
    fig.add_trace(go.Scatter(x=batches.n_adapters, y=batches.tokens_per_s, mode="markers",
                             customdata=batches[["batch", "batch_rows", "seconds"]].to_numpy(),
                             hovertemplate="batch %{customdata[0]}: %{x} adapters, %{customdata[1]} rows, "
                                           "%{y:.1f} tokens/s (%{customdata[2]:.3f} s)<extra></extra>",
                             name="batches", showlegend=False), row=1, col=1)
    for label in dict.fromkeys(mix.label):
        part = mix[mix.label == label]
        fig.add_trace(go.Bar(x=part.batch, y=part.rows, name=label,
                             hovertemplate=f"batch %{{x}}: %{{y}} rows {label}<extra></extra>"), row=1, col=2)
    fig.update_layout(title=title, barmode="stack", legend_title_text="rank", **LAYOUT)
    fig.update_xaxes(title_text="adapters and routers in the batch", row=1, col=1)
    fig.update_yaxes(title_text="generated tokens per second", row=1, col=1)
    fig.update_xaxes(title_text="batch", row=1, col=2)
    fig.update_yaxes(title_text="rows", row=1, col=2)
    return fig
