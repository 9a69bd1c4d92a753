"""Static plotly figures of the generation lab; each draws one frame of ``workbench.generation.frames``.

proximity_bars(proximity_frame(sg, text))       # one bar per expert: its weight (cosine on hover)
expert_map_figure(expert_map(sg, text))         # experts as points, the query as a star
histogram_figure(tensor_histograms(a, b), tensor="model.layers.0.self_attn.q_proj.A")
fusion_pca_figure(fusion_pca(fusion))           # two panels: task vectors, fused latent
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

LAYOUT = dict(template="plotly_white", margin=dict(t=50, b=40, l=50, r=20))


def proximity_bars(frame: pd.DataFrame, title: str = "proximity weights") -> go.Figure:
    """Bars ``weight`` per ``expert`` (frame of ``proximity_frame``), nearest first."""
    part = frame.sort_values("cosine", ascending=False)
    fig = go.Figure(
        go.Bar(
            x=part.weight,
            y=part.expert,
            orientation="h",
            customdata=part.cosine,
            hovertemplate="%{y}: weight %{x:.3f}, cosine %{customdata:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title,
        xaxis_title="weight softmax(cos/τ) over the top-k",
        height=60 + 28 * len(part),
        yaxis=dict(autorange="reversed"),
        **LAYOUT,
    )
    return fig


def expert_map_figure(
    frame: pd.DataFrame, title: str = "experts and the new task (PCA of embeddings)"
) -> go.Figure:
    """Experts as points sized by weight, the query as a star (frame of ``expert_map``)."""
    experts, query = frame[frame.kind == "expert"], frame[frame.kind == "query"]
    fig = go.Figure(
        go.Scatter(
            x=experts.x,
            y=experts.y,
            mode="markers+text",
            text=experts.name,
            textposition="top center",
            name="experts",
            marker=dict(size=8 + 30 * experts.weight, color="#1b9e77"),
        )
    )
    if len(query):
        fig.add_trace(
            go.Scatter(
                x=query.x,
                y=query.y,
                mode="markers",
                name="new task",
                marker=dict(symbol="star", size=16, color="#d95f02"),
            )
        )
    fig.update_layout(title=title, xaxis_title="PC 1", yaxis_title="PC 2", height=380, **LAYOUT)
    return fig


def histogram_figure(frame: pd.DataFrame, tensor: str | None = None) -> go.Figure:
    """Original and generated value histograms of one tensor (frame of ``tensor_histograms``)."""
    tensor = tensor or str(frame.tensor.iloc[0])
    part = frame[frame.tensor == tensor]
    fig = go.Figure()
    for which, colour in (("original", "#1b9e77"), ("generated", "#d95f02")):
        rows = part[part.which == which]
        fig.add_trace(
            go.Bar(
                x=(rows.left + rows.right) / 2,
                y=rows["count"],
                width=rows.right - rows.left,
                name=which,
                opacity=0.6,
                marker_color=colour,
            )
        )
    fig.update_layout(
        title=f"values of {tensor}",
        barmode="overlay",
        xaxis_title="value",
        yaxis_title="count",
        height=320,
        **LAYOUT,
    )
    return fig


def fusion_pca_figure(frame: pd.DataFrame) -> go.Figure:
    """Task vectors and the fused one, before (standardized v_t) and after the projection P (frame of
    ``fusion_pca``); arrows from each task to the fused point."""
    spaces = list(dict.fromkeys(frame.space))
    fig = make_subplots(rows=1, cols=len(spaces), subplot_titles=spaces)
    for col, space in enumerate(spaces, start=1):
        part = frame[frame.space == space]
        tasks, fused = part[part.kind == "task"], part[part.kind == "fused"]
        fig.add_trace(
            go.Scatter(
                x=tasks.x,
                y=tasks.y,
                mode="markers+text",
                text=tasks.name,
                textposition="top center",
                marker=dict(size=8 + 30 * tasks.weight),
                name="tasks",
                showlegend=col == 1,
                marker_color="#1b9e77",
            ),
            row=1,
            col=col,
        )
        fig.add_trace(
            go.Scatter(
                x=fused.x,
                y=fused.y,
                mode="markers",
                name="fused",
                showlegend=col == 1,
                marker=dict(symbol="star", size=16, color="#d95f02"),
            ),
            row=1,
            col=col,
        )
        for r in tasks.itertuples():
            fig.add_annotation(
                x=float(fused.x.iloc[0]),
                y=float(fused.y.iloc[0]),
                ax=r.x,
                ay=r.y,
                xref=f"x{col}",
                yref=f"y{col}",
                axref=f"x{col}",
                ayref=f"y{col}",
                showarrow=True,
                arrowhead=2,
                arrowcolor="#bbbbbb",
                text="",
            )
    fig.update_layout(title="task vectors before and after fusion (2-D PCA each)", height=380, **LAYOUT)
    return fig
