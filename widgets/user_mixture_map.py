"""RecLoRA's user × LoRA map: each user's mixture weight on each meta-LoRA of the bank.

A static plotly figure: it only renders the frame of ``workbench.analysis.user_mixtures.user_mixture``
(``layer, module, user, lora, weight``), averaged over the modules, or one layer when ``layer`` is
given. Rows are users, columns the bank's LoRAs; a row sums to 1 for a softmax mixture.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from workbench.errors import WorkbenchError

NEED = {"user", "lora", "weight"}


def user_mixture_map(frame: pd.DataFrame, *, layer: int | None = None,
                     title: str = "Mixture weight of each user on each meta-LoRA") -> go.Figure:
    """A users × LoRAs heatmap of the mean weight (over modules, or over one ``layer``'s modules)."""
    if frame.empty or not NEED <= set(frame.columns):
        raise WorkbenchError(f"user_mixture_map needs columns {sorted(NEED)}; got {sorted(frame.columns)} "
                             f"({len(frame)} rows): pass analysis.user_mixtures.user_mixture(...)")
    if layer is not None:
        if "layer" not in frame or not (frame.layer == layer).any():
            layers = sorted(frame.layer.dropna().unique().tolist()) if "layer" in frame else []
            raise WorkbenchError(f"no layer {layer} in the frame; its layers: {layers}")
        frame = frame[frame.layer == layer]
    users = list(dict.fromkeys(frame.user))
    table = frame.pivot_table(index="user", columns="lora", values="weight", aggfunc="mean").reindex(users)
    where = "mean over modules" if layer is None else f"layer {layer}, mean over its modules"
    fig = go.Figure(go.Heatmap(z=table.to_numpy(), x=[f"LoRA {c}" for c in table.columns], y=users, zmin=0,
                               colorscale="Blues", text=[[f"{v:.2f}" for v in r] for r in table.to_numpy()],
                               texttemplate="%{text}",
                               hovertemplate="%{y} on %{x}: %{z:.3f}<extra></extra>"))
    fig.update_layout(title=f"{title} ({where})", template="plotly_white", height=320,
                      yaxis=dict(autorange="reversed"), margin=dict(t=60, b=40))
    return fig
