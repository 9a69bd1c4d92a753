"""RecLoRA's user × LoRA map: each user's mixture weight on each meta-LoRA of the bank.

``user_mixture_map`` is a static plotly figure and ``UserMixtureMap`` the live view (a layer select
and a button per module); both only render the frame of ``workbench.analysis.user_mixtures.user_mixture``
(``layer, module, user, lora, weight``), averaged over the modules, or one layer when ``layer`` is
given. Rows are users, columns the bank's LoRAs; a row sums to 1 for a softmax mixture.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from widgets._chooser import Chooser
from widgets._layers import in_layer, layer_options
from workbench.errors import WorkbenchError

NEED = {"user", "lora", "weight"}
ALL_MODULES = "all modules"


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


class UserMixtureMap(Chooser):
    """The same map, live: the select picks a layer (or all), the buttons a module (or all modules).

    Example::

        UserMixtureMap.from_frame(user_mixture(weights, users))
    """

    frame: pd.DataFrame | None = None  # user_mixture(...)'s frame

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, **traits) -> UserMixtureMap:
        """Args:
            frame: ``analysis.user_mixtures.user_mixture``' frame.
        """
        if frame.empty or not NEED | {"layer", "module"} <= set(frame.columns):
            raise WorkbenchError(f"UserMixtureMap takes user_mixture(...)'s frame; got "
                                 f"{sorted(frame.columns)}")
        w = cls(choices=[ALL_MODULES, *dict.fromkeys(frame.module)], options=layer_options(frame), cell=40)
        w.frame = frame
        w._apply({"option": w.options[0], "choice": ALL_MODULES, **traits})
        return w

    def table(self, choice):
        part = in_layer(self.frame, self.option)
        if choice != ALL_MODULES:
            part = part[part.module == choice]
        users = list(dict.fromkeys(self.frame.user))
        table = part.pivot_table(index="user", columns="lora", values="weight", aggfunc="mean").reindex(users)
        table.columns = [f"LoRA {c}" for c in table.columns]
        title = f"{self.option}, {choice}: each user's mixture weight on each meta-LoRA"
        return table, title, 0.0, 1.0, "sequential"

    def describe(self, row, col):
        table = self.table(self.choice)[0]
        return f"{self.option}, {self.choice}: {row} on {col}: {table.loc[row, col]:.3f}"
