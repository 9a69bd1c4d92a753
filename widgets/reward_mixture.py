"""DMoERM's two levels: the outer router's bars and the inner capability weights (render only).

``router_bars_figure`` and ``capability_weights_figure`` are static plotly figures; ``RewardMixture``
the live view of both frames (a button per level).
"""

from __future__ import annotations

import pandas as pd

from widgets._chooser import Chooser
from workbench.errors import WorkbenchError

ROUTER, CAPABILITIES = "outer router", "capability experts"


def router_bars_figure(bars: pd.DataFrame, *, title: str = "DMoERM outer router: category probability"):
    """Grouped bars from ``analysis.reward_mixture.router_bars``' frame (``group, category, prob``):
    per prompt group, the mean probability the router gives each category."""
    return _grouped(bars, "category", "prob", title, "mean routing probability")


def capability_weights_figure(weights: pd.DataFrame, *,
                              title: str = "DMoERM inner MLP: weight of each capability expert"):
    """Grouped bars from ``analysis.reward_mixture.capability_weights``' frame (``group, expert,
    weight``): per conversation group, each expert's share of the reward's gradient × input."""
    return _grouped(weights, "expert", "weight", title, "attribution share")


def _grouped(frame: pd.DataFrame, series: str, value: str, title: str, axis: str):
    import plotly.graph_objects as go

    need = {"group", series, value}
    if frame.empty or not need <= set(frame.columns):
        raise WorkbenchError(f"this figure takes a frame with columns {sorted(need)}; "
                             f"got {list(frame.columns)}")
    fig = go.Figure()
    for name, part in frame.groupby(series, sort=False):
        error = ({"error_y": {"type": "data", "symmetric": False, "array": part["high"] - part[value],
                              "arrayminus": part[value] - part["low"]}}
                 if {"low", "high"} <= set(part.columns) else {})
        fig.add_trace(go.Bar(name=str(name), x=part["group"], y=part[value], **error))
    fig.update_layout(title=title, barmode="group", yaxis_title=axis, yaxis_range=[0, 1],
                      template="plotly_white", height=340)
    return fig


class RewardMixture(Chooser):
    """Both levels, live: a button for the outer router (group × category probability) and one for the
    inner capability weights (group × expert attribution share).

    Example::

        RewardMixture.from_frames(router_bars(probs, groups, categories),
                                  capability_weights(inner, features, experts, groups))
    """

    bars: pd.DataFrame | None = None  # router_bars(...)'s frame
    weights: pd.DataFrame | None = None  # capability_weights(...)'s frame

    @classmethod
    def from_frames(cls, bars: pd.DataFrame, weights: pd.DataFrame, **traits) -> RewardMixture:
        """Args:
            bars: ``analysis.reward_mixture.router_bars``' frame.
            weights: ``analysis.reward_mixture.capability_weights``' frame.
        """
        for frame, need, name in ((bars, {"group", "category", "prob"}, "router_bars"),
                                  (weights, {"group", "expert", "weight"}, "capability_weights")):
            if frame.empty or not need <= set(frame.columns):
                raise WorkbenchError(f"RewardMixture takes {name}(...)'s frame (columns {sorted(need)}); got "
                                     f"{sorted(frame.columns)}")
        w = cls(choices=[ROUTER, CAPABILITIES], cell=56)
        w.bars, w.weights = bars, weights
        w._apply({"choice": ROUTER, **traits})
        return w

    def table(self, choice):
        frame, column, value = ((self.bars, "category", "prob") if choice == ROUTER
                                else (self.weights, "expert", "weight"))
        table = frame.pivot_table(index="group", columns=column, values=value, aggfunc="mean")
        table = table.reindex(index=list(dict.fromkeys(frame["group"])),
                              columns=list(dict.fromkeys(frame[column])))
        title = ("outer router: mean probability of each category" if choice == ROUTER
                 else "inner MLP: each capability expert's share of the reward's attribution")
        return table, title, 0.0, 1.0, "sequential"

    def describe(self, row, col):
        table = self.table(self.choice)[0]
        return f"{self.choice}: {row} → {col}: {table.loc[row, col]:.3f}"
