"""LLM-Pruner's per-layer group importance: one heatmap per group kind (layers × groups), the pruned
groups crossed out.

A static plotly figure: it only renders the frame of ``workbench.compression.frame.importance_frame``
(``layer, kind, group, score, kept``). Scores are shown per kind on their own scale (a head's score sums
far more weights than a neuron's).

Reference: Ma et al., "LLM-Pruner", NeurIPS 2023 (the spec's per-layer importance heatmap with the
kept-head mask); the layout is this workbench's.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.errors import WorkbenchError

NEED = {"layer", "kind", "group", "score", "kept"}
TITLES = {"query": "query heads", "kv": "KV groups", "neuron": "MLP neurons"}


def importance_map(frame: pd.DataFrame, *,
                   title: str = "Group importance per layer (× = pruned)") -> go.Figure:
    """One heatmap per kind (rows: layers, columns: groups), pruned groups marked with ×.

    Args:
        frame: ``layer, kind, group, score, kept`` (``workbench.compression.frame.importance_frame``).
    """
    if frame.empty or not NEED <= set(frame.columns):
        raise WorkbenchError(f"importance_map needs a frame with columns {sorted(NEED)}; got "
                             f"{sorted(frame.columns)} ({len(frame)} rows): pass "
                             "workbench.compression.frame.importance_frame(pruned)")
    kinds = list(dict.fromkeys(frame.kind))
    fig = make_subplots(rows=len(kinds), cols=1, subplot_titles=[TITLES.get(k, k) for k in kinds],
                        vertical_spacing=0.25 / max(len(kinds), 1))
    for i, kind in enumerate(kinds, start=1):
        part = frame[frame.kind == kind]
        z = part.pivot_table(index="layer", columns="group", values="score").sort_index()
        fig.add_heatmap(z=z.to_numpy(), x=[str(c) for c in z.columns], y=[str(r) for r in z.index],
                        colorscale="Viridis", colorbar=dict(len=1 / len(kinds), y=1 - (i - 0.5) / len(kinds)),
                        hovertemplate="layer %{y}, group %{x}: %{z:.4g}<extra></extra>", row=i, col=1)
        gone = part[~part.kept.astype(bool)]
        if len(gone):
            fig.add_scatter(x=gone.group.astype(str), y=gone.layer.astype(str), mode="markers",
                            marker=dict(symbol="x", color="red", size=8 if kind != "neuron" else 4),
                            name=f"pruned {TITLES.get(kind, kind)}", row=i, col=1)
        fig.update_yaxes(title_text="layer", row=i, col=1)
    fig.update_layout(title=title, template="plotly_white", height=220 * len(kinds) + 80,
                      margin=dict(t=80, b=40))
    return fig
