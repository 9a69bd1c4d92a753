"""The gradient-gap view: LoRA's and LoRA-Pro's distance to the full gradient over training steps.

A static plotly figure (it only renders): the frame of ``workbench.analysis.gradient_gap.gap_over_steps``,
one line per (arm, kind) with its 95% interval over seeds as a band.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from workbench.errors import WorkbenchError

COLORS = {"lora": "#1f77b4", "lorapro": "#d62728"}
LABEL = {"gap": "‖g̃ − G‖ / ‖G‖", "sine": "sin ∠(g̃, G)"}


def gradient_gap_figure(frame: pd.DataFrame, *, quantity: str = "gap",
                        title: str = "Equivalent gradient against the full gradient, per step") -> go.Figure:
    """Lines over steps of ``quantity`` (``gap`` or ``sine``) per arm and kind, with interval bands.

    Solid lines: the kind each arm steps with (its own trajectory); dotted: the other kind measured
    at the same points (LoRA-Pro's adjustment applied to the LoRA run, or LoRA's raw g̃ on the
    LoRA-Pro run).

    Args:
        frame: ``gap_over_steps(measures)`` (columns ``arm, kind, quantity, step, mean, low, high, n``).
    """
    need = {"arm", "kind", "quantity", "step", "mean", "low", "high"}
    if not need <= set(frame.columns):
        raise WorkbenchError("gradient_gap_figure takes gap_over_steps(...)'s frame "
                             f"(columns {sorted(need)})")
    if quantity not in LABEL:
        raise WorkbenchError(f"quantity={quantity!r}: choose 'gap' or 'sine'")
    part = frame[frame.quantity == quantity]
    fig = go.Figure()
    for (arm, kind), line in part.groupby(["arm", "kind"], sort=True):
        line = line.sort_values("step")
        color, own = COLORS.get(kind, "#555555"), arm == kind
        name = f"{kind} g̃ on the {arm} run"
        fig.add_scatter(x=pd.concat([line.step, line.step[::-1]]), y=pd.concat([line.high, line.low[::-1]]),
                        fill="toself", fillcolor=color, opacity=0.15 if own else 0.06, line=dict(width=0),
                        hoverinfo="skip", showlegend=False, legendgroup=name)
        fig.add_scatter(x=line.step, y=line["mean"], mode="lines+markers", name=name, legendgroup=name,
                        line=dict(color=color, dash="solid" if own else "dot", width=2.5 if own else 1.5))
    fig.update_layout(title=title, xaxis_title="optimizer step", yaxis_title=LABEL[quantity],
                      template="plotly_white", height=400, margin=dict(t=60, b=40),
                      legend_title="kind (band: 95% interval over seeds)")
    return fig
