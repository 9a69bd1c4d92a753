"""MoRA rank reuse across tasks: a prompt-task × rank-block heatmap of gate mass (render only).

``rank_reuse_figure`` is a static plotly figure of ``reuse_table``; ``RankReuseMap`` the live view of
``rank_block_mass``' frame (a layer select, a button for gate mass or selected share).
"""

from __future__ import annotations

import pandas as pd

from widgets._chooser import Chooser
from widgets._layers import in_layer, layer_options
from workbench.errors import WorkbenchError

MASS, ACTIVE = "gate mass", "selected share"


def rank_reuse_figure(table: pd.DataFrame, *, title: str = "MoRA: where each task's gate weight lands"):
    """Heatmap of ``analysis.rank_reuse.reuse_table``'s matrix: rows the prompts' task, columns the task
    whose rank block gets the weight (in arrival order); each row sums to 1. A diagonal means every task
    keeps to its own ranks; mass left of the diagonal is reuse of earlier tasks' ranks."""
    import plotly.graph_objects as go

    if table.empty:
        raise WorkbenchError("rank_reuse_figure takes reuse_table(...)'s group × block matrix; it is empty")
    z = table.to_numpy()
    fig = go.Figure(go.Heatmap(z=z, x=[f"{b} ranks" for b in table.columns], y=list(table.index),
                               zmin=0, zmax=1, colorscale="Blues", colorbar={"title": "gate mass"},
                               text=[[f"{v:.2f}" for v in row] for row in z], texttemplate="%{text}"))
    fig.update_layout(title=title, xaxis_title="rank block (task that added it)", yaxis_title="prompts of",
                      yaxis_autorange="reversed", template="plotly_white", height=320)
    return fig


class RankReuseMap(Chooser):
    """The same matrix, live, from ``rank_block_mass``' frame: the select picks a layer (or all, the
    mean over modules as ``reuse_table``), the buttons the gate weight's share (``mass``) or the share
    of selected ranks (``active``) in each task's block.

    Example::

        RankReuseMap.from_frame(rank_block_mass(cache, blocks, groups=task_of_row, mask=mask))
    """

    mass: pd.DataFrame | None = None  # rank_block_mass(...)'s frame

    @classmethod
    def from_frame(cls, mass: pd.DataFrame, **traits) -> RankReuseMap:
        """Args:
            mass: ``analysis.rank_reuse.rank_block_mass``' frame.
        """
        need = {"layer", "module", "group", "block", "mass", "active"}
        if mass.empty or not need <= set(mass.columns):
            raise WorkbenchError(f"RankReuseMap takes rank_block_mass(...)'s frame (columns "
                                 f"{sorted(need)})")
        w = cls(choices=[MASS, ACTIVE], options=layer_options(mass), cell=104)
        w.mass = mass
        w._apply({"option": w.options[0], "choice": MASS, **traits})
        return w

    def table(self, choice):
        part = in_layer(self.mass, self.option)
        value = "mass" if choice == MASS else "active"
        table = part.pivot_table(index="group", columns="block", values=value, aggfunc="mean")
        table = table.reindex(index=list(dict.fromkeys(self.mass["group"])),
                              columns=list(dict.fromkeys(self.mass["block"])))
        table.columns = [f"{b} ranks" for b in table.columns]
        title = f"{self.option}: {choice} of each task's prompts (rows) per rank block"
        return table, title, 0.0, 1.0, "sequential"

    def describe(self, row, col):
        table = self.table(self.choice)[0]
        return f"{self.option}: {row} prompts on {col}: {table.loc[row, col]:.3f}"
