"""SubspaceView: how much two adapters' ΔW share input and output directions, per module (static)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from widgets.spectrum import module_label
from workbench import analysis
from workbench.adapters.adapter import Adapter

SIDES = {"column": "column space (outputs, from B)", "row": "row space (inputs, from A)"}


def SubspaceView(source: Mapping[str, Adapter] | Iterable[Adapter] | pd.DataFrame) -> go.Figure:
    """Subspace overlap (mean squared cosine of the principal angles) per adapter pair and module.

    Two heatmaps, column space above and row space below: one row per unordered pair, one
    column per module in layer order; 0 is orthogonal, 1 is one subspace inside the other.

    Args:
        source: adapters (a mapping name -> Adapter or a list), or the frame of ``analysis.subspaces``.

    Example::

        from widgets import SubspaceView
        SubspaceView(lab.adapters)
    """
    frame = source if isinstance(source, pd.DataFrame) else analysis.subspaces(source)
    names = list(dict.fromkeys(frame["adapter_a"]))
    rank = {n: i for i, n in enumerate(names)}
    pairs = frame[[rank[a] < rank[b] for a, b in zip(frame.adapter_a, frame.adapter_b, strict=True)]]
    pairs = pairs.sort_values(["layer", "module"]).assign(
        pair=lambda f: f.adapter_a + " · " + f.adapter_b,
        x=lambda f: [module_label(la, m) for la, m in zip(f.layer, f.module, strict=True)])
    order = list(dict.fromkeys(pairs.pair))
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.12,
                        subplot_titles=list(SIDES.values()))
    for i, side in enumerate(SIDES, start=1):
        part = pairs[pairs.side == side]
        grid = part.pivot(index="pair", columns="x", values="overlap").loc[order, list(dict.fromkeys(part.x))]
        fig.add_heatmap(z=grid.to_numpy(), x=list(grid.columns), y=order, coloraxis="coloraxis", row=i, col=1,
                        hovertemplate="%{y}<br>module %{x}<br>overlap %{z:.3f}<extra></extra>")
    fig.update_layout(title="Subspace overlap of ΔW per pair and module",
                      coloraxis=dict(colorscale="Magma_r", cmin=0, colorbar_title="overlap"),
                      template="plotly_white", height=220 + 2 * 24 * len(order), margin=dict(t=70, b=40))
    fig.update_xaxes(nticks=31, tickangle=0)
    fig.update_xaxes(title_text="module (layer.projection)", row=2, col=1)
    fig.update_yaxes(autorange="reversed")  # pairs top-down, in the adapters' order
    return fig
