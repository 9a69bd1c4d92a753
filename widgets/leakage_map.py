"""TARA's leakage map: source adapter × target adapter's tokens, one heatmap per composition.

``leakage_map`` is a static plotly figure and ``LeakageMap`` the live view (a button per condition);
both only render the frame of ``workbench.analysis.leakage.leakage`` (or the same columns read back
from an experiment's results). The diagonal is each adapter's effect on its
own tokens; off the diagonal, how much of one adapter's effect lands on the other's tokens.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from widgets._chooser import Chooser
from workbench.errors import WorkbenchError

NEED = {"condition", "source", "target", "leakage"}


def leakage_map(frame: pd.DataFrame, *, title: str = "Leakage: KL at the target's answer tokens when "
                "the source adapter is taken out (nats)") -> go.Figure:
    """One heatmap per ``condition`` (source rows × target columns), on one shared colour scale.

    Args:
        frame: ``condition, source, target, leakage`` (e.g. ``analysis.leakage.leakage``'s frames
            concatenated over conditions).
    """
    if frame.empty or not NEED <= set(frame.columns):
        raise WorkbenchError(f"leakage_map needs a frame with columns {sorted(NEED)}; got "
                             f"{sorted(frame.columns)} ({len(frame)} rows): pass "
                             "analysis.leakage.leakage(...)")
    conditions = list(dict.fromkeys(frame.condition))
    names = list(dict.fromkeys([*frame.source, *frame.target]))
    hi = float(frame.leakage.max()) or 1.0
    fig = make_subplots(rows=1, cols=len(conditions), subplot_titles=conditions, horizontal_spacing=0.08)
    for i, condition in enumerate(conditions, start=1):
        part = frame[frame.condition == condition]
        table = part.pivot_table(index="source", columns="target", values="leakage").reindex(
            index=names, columns=names)
        fig.add_heatmap(z=table.to_numpy(), x=[f"{n}'s tokens" for n in names], y=names, zmin=0, zmax=hi,
                        colorscale="Reds", showscale=i == len(conditions),
                        text=[[f"{v:.3g}" for v in row] for row in table.to_numpy()], texttemplate="%{text}",
                        hovertemplate="source %{y} → %{x}: %{z:.4f} nats<extra></extra>", row=1, col=i)
        fig.update_yaxes(title_text="source adapter" if i == 1 else None, autorange="reversed", row=1, col=i)
    fig.update_layout(title=title, template="plotly_white", height=340, margin=dict(t=80, b=40))
    return fig


class LeakageMap(Chooser):
    """The same map, live: one button per condition (``choice``); source rows × target columns.

    Example::

        LeakageMap.from_frame(pd.concat([leakage(..., condition="plain sum"),
                                         leakage(..., condition="tara")]))
    """

    frame: pd.DataFrame | None = None  # leakage(...)'s frames concatenated over conditions

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, **traits) -> LeakageMap:
        """Args:
            frame: ``condition, source, target, leakage`` (``analysis.leakage.leakage`` per condition).
        """
        if frame.empty or not NEED <= set(frame.columns):
            raise WorkbenchError(f"LeakageMap takes a frame with columns {sorted(NEED)}; got "
                                 f"{sorted(frame.columns)}: pass analysis.leakage.leakage(...)")
        conditions = [str(c) for c in dict.fromkeys(frame.condition)]
        w = cls(choices=conditions, cell=96)
        w.frame = frame.assign(condition=frame.condition.astype(str))
        w._apply({"choice": conditions[0], **traits})
        return w

    def table(self, choice):
        names = list(dict.fromkeys([*self.frame.source, *self.frame.target]))
        part = self.frame[self.frame.condition == choice]
        table = part.pivot_table(index="source", columns="target", values="leakage").reindex(
            index=names, columns=names)
        table.columns = [f"{n}'s tokens" for n in table.columns]
        hi = float(self.frame.leakage.max()) or 1.0  # one scale for every condition
        title = f"{choice}: KL at the target's tokens when the source adapter is taken out (nats)"
        return table, title, 0.0, hi, "sequential"

    def describe(self, row, col):
        table = self.table(self.choice)[0]
        return f"{self.choice}: {row} → {col}: {table.loc[row, col]:.4f} nats"
