"""Spectrum: how each module's ΔW spreads its energy over its singular directions (a static figure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench import analysis
from workbench.adapters.adapter import Adapter


def module_label(layer, module: str) -> str:
    """``(3, "self_attn.q_proj")`` -> ``"3.q"``: short x-axis labels for modules ordered by layer."""
    short = module.rsplit(".", 1)[-1].removesuffix("_proj")
    return short if pd.isna(layer) else f"{int(layer)}.{short}"


def Spectrum(source: Adapter | Mapping[str, Adapter] | Iterable[Adapter] | pd.DataFrame) -> go.Figure:
    """Energy σ²/Σσ² of each singular value of ΔW per module, with the effective rank on top.

    One heatmap per adapter: columns are the modules in layer order, rows the singular values
    (1 = largest); the black dots are each module's effective rank (``analysis.effective_rank``,
    between 1 and r) on the same axis, so a dot low down means the update is nearly rank one.

    Args:
        source: one Adapter, several (a mapping or a list), or ``analysis.spectrum`` frames
            concatenated (with their ``adapter`` column).

    Example::

        from widgets import Spectrum
        Spectrum(lab.adapters["topic"])
        Spectrum(lab.adapters)              # one row per adapter
    """
    if isinstance(source, pd.DataFrame):
        frame = source
    else:
        adapters = [source] if isinstance(source, Adapter) else list(
            source.values() if isinstance(source, Mapping) else source)
        frame = pd.concat([analysis.spectrum(a) for a in adapters], ignore_index=True)
    erank = analysis.effective_rank(frame)
    names = list(dict.fromkeys(frame["adapter"]))
    fig = make_subplots(rows=len(names), cols=1, shared_xaxes=True, vertical_spacing=0.04,
                        subplot_titles=names)
    for i, name in enumerate(names, start=1):
        part = frame[frame["adapter"] == name].sort_values(["layer", "module", "rank"])
        part = part.assign(x=[module_label(la, m) for la, m in zip(part.layer, part.module, strict=True)])
        grid = part.pivot(index="rank", columns="x", values="energy")[list(dict.fromkeys(part.x))]
        fig.add_heatmap(z=grid.to_numpy(), x=list(grid.columns), y=[r + 1 for r in grid.index],
                        coloraxis="coloraxis", row=i, col=1,
                        hovertemplate="module %{x}<br>singular value %{y}<br>energy %{z:.3f}<extra></extra>")
        er = erank[erank["adapter"] == name].sort_values(["layer", "module"])
        fig.add_scatter(x=[module_label(la, m) for la, m in zip(er.layer, er.module, strict=True)],
                        y=er.effective_rank, mode="markers", marker=dict(color="black", size=4),
                        name="effective rank", showlegend=i == 1, row=i, col=1,
                        hovertemplate="module %{x}<br>effective rank %{y:.2f}<extra></extra>")
        fig.update_yaxes(title_text="σ index", autorange="reversed", row=i, col=1)
    fig.update_layout(title="Energy per singular value of ΔW, per module (dots: effective rank)",
                      coloraxis=dict(colorscale="Viridis", cmin=0, cmax=1, colorbar_title="energy"),
                      template="plotly_white", height=140 + 170 * len(names), margin=dict(t=70, b=40),
                      legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"))
    fig.update_xaxes(nticks=31, tickangle=0)
    fig.update_xaxes(title_text="module (layer.projection)", row=len(names), col=1)
    return fig
