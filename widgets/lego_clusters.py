"""LoRA-LEGO's clusters of rank-1 units in one module: a 2-D PCA scatter (render only).

``lego_cluster_figure`` draws ``workbench.analysis.unit_clusters.cluster_frame``'s rows of one module:
a point per unit at its (x, y), coloured by cluster, shaped by the LoRA it came from, so clusters that
join units of several LoRAs show as one colour over several shapes.

    clusters = lego_clusters(bank, rank=8, seed=0, paths=[path])
    lego_cluster_figure(cluster_frame(clusters), path=path)
"""

from __future__ import annotations

import pandas as pd

from workbench.errors import WorkbenchError

NEED = {"path", "unit", "source", "index", "cluster", "norm", "x", "y"}
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "x", "star", "hexagon", "triangle-down",
           "pentagon")


def lego_cluster_figure(frame: pd.DataFrame, *, path: str | None = None, title: str | None = None):
    """Scatter of one module's units (``path``; default the frame's first) on their first two principal
    axes: colour = k-means cluster, marker = source LoRA, hover = source, rank index, cluster, norm."""
    import plotly.graph_objects as go

    if frame.empty or not NEED <= set(frame.columns):
        raise WorkbenchError(f"lego_cluster_figure takes cluster_frame(...)'s rows (columns {sorted(NEED)}); "
                             f"got {sorted(frame.columns)}")
    path = path if path is not None else frame["path"].iloc[0]
    part = frame[frame["path"] == path]
    if part.empty:
        raise WorkbenchError(f"no units of module {path!r} in the frame; its modules: "
                             f"{list(dict.fromkeys(frame['path']))[:4]}...")
    sources = list(dict.fromkeys(part["source"]))
    fig = go.Figure()
    for i, src in enumerate(sources):
        p = part[part["source"] == src]
        fig.add_scatter(x=p["x"], y=p["y"], mode="markers", name=src,
                        marker=dict(symbol=SYMBOLS[i % len(SYMBOLS)], size=11, color=p["cluster"],
                                    colorscale="Turbo", cmin=0, cmax=max(1, int(part["cluster"].max())),
                                    line=dict(width=1, color="#333")),
                        customdata=p[["index", "cluster", "norm"]].to_numpy(),
                        hovertemplate=(f"{src}, rank %{{customdata[0]}}<br>cluster %{{customdata[1]}}"
                                       "<br>‖b‖‖a‖ %{customdata[2]:.3g}<extra></extra>"))
    k = part["cluster"].nunique()
    fig.update_layout(title=title or f"LoRA-LEGO units of {path}: {len(part)} units in {k} clusters",
                      xaxis_title="PC 1 of the unit vectors", yaxis_title="PC 2",
                      legend_title="source LoRA (marker)", template="plotly_white", height=460)
    return fig
