"""The ΔW of a recovered LoRAM adapter, one heatmap per module: the pruned rows/columns show as zero
bands (white), the kept ones carry the update trained on the pruned model.

A static plotly figure: it only renders the dense updates it is given (``adapter.delta(module)``).

Reference: Zhang et al., "Train Small, Infer Large" (LoRAM), ICLR 2025 (the spec's ΔW-mask view);
the layout is this workbench's.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.errors import WorkbenchError


def loram_masks(deltas: Mapping[str, object], *, title: str = "Recovered LoRAM ΔW: |ΔW| "
                "(white bands: pruned rows/columns, exactly zero)") -> go.Figure:
    """One |ΔW| heatmap per module, zeros white.

    Args:
        deltas: module path -> (out, in) dense update (a tensor or array), e.g.
            ``{m: recovered.delta(m) for m in ["model.layers.0.self_attn.q_proj", ...]}``.
    """
    if not deltas:
        raise WorkbenchError("loram_masks needs at least one module's ΔW: pass "
                             "{module: adapter.delta(module)}")
    names = list(deltas)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=[n.split(".", 2)[-1] for n in names],
                        horizontal_spacing=0.04)
    for i, name in enumerate(names, start=1):
        z = np.abs(np.asarray(deltas[name].detach() if hasattr(deltas[name], "detach") else deltas[name],
                              dtype=np.float32))
        if z.ndim != 2:
            raise WorkbenchError(f"ΔW of {name!r} has shape {z.shape}; give the (out, in) matrix")
        fig.add_heatmap(z=z, colorscale=[[0, "white"], [1e-9, "#fde0c5"], [1, "#b30000"]],
                        zmin=0, zmax=float(z.max()) or 1.0, showscale=i == len(names),
                        hovertemplate="row %{y}, col %{x}: |ΔW| %{z:.3g}<extra></extra>", row=1, col=i)
        fig.update_yaxes(autorange="reversed", title_text="output row" if i == 1 else None, row=1, col=i)
        fig.update_xaxes(title_text="input column", row=1, col=i)
    fig.update_layout(title=title, template="plotly_white", height=360, margin=dict(t=80, b=40))
    return fig
