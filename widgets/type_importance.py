"""TypeImportance: LoRAMoE's routing weight by data type, per expert or per expert group, per layer."""

from __future__ import annotations

import pandas as pd

from widgets._chooser import Chooser
from widgets._layers import in_layer, layer_options
from workbench.analysis.type_importance import group_share
from workbench.errors import WorkbenchError

EXPERTS, GROUPS = "per expert", "per expert group"


class TypeImportance(Chooser):
    """Data type × expert heatmap of LoRAMoE's mean routing weight (``type_importance``), or data type
    × expert group of the share of the type's weight on each group (``group_share``), for one layer
    (select; modules averaged) or all. With the localized balancing constraint on, each type's row
    should lean on its own group (world-knowledge data on the knowledge group).

    Example::

        imp = type_importance(cache, types, mask, expert_groups={"knowledge": [0, 1], "task": [2, 3]})
        TypeImportance.from_frame(imp)
    """

    importance: pd.DataFrame | None = None  # type_importance(...)'s frame
    shares: pd.DataFrame | None = None  # group_share(importance)

    @classmethod
    def from_frame(cls, importance: pd.DataFrame, **traits) -> TypeImportance:
        """Args:
            importance: ``analysis.type_importance.type_importance``' frame.
        """
        need = {"layer", "module", "type", "expert", "expert_group", "importance"}
        if importance.empty or not need <= set(importance.columns):
            raise WorkbenchError(f"TypeImportance takes type_importance(...)'s frame (columns "
                                 f"{sorted(need)})")
        w = cls(choices=[GROUPS, EXPERTS], options=layer_options(importance), cell=80)
        w.importance, w.shares = importance, group_share(importance)
        w._apply({"option": w.options[0], "choice": GROUPS, **traits})
        return w

    def table(self, choice):
        types = list(dict.fromkeys(self.importance["type"]))
        if choice == GROUPS:
            part = in_layer(self.shares, self.option)
            table = part.pivot_table(index="type", columns="expert_group", values="share", aggfunc="mean")
            table = table.reindex(index=types, columns=list(dict.fromkeys(self.shares["expert_group"])))
            return table, f"{self.option}: share of each data type's routing weight per expert group", \
                0.0, 1.0, "sequential"
        part = in_layer(self.importance, self.option)
        table = part.pivot_table(index="type", columns="expert", values="importance", aggfunc="mean")
        group = part.drop_duplicates("expert").set_index("expert")["expert_group"]
        table = table.reindex(index=types)
        table.columns = [f"{e}·{group[e]}" for e in table.columns]
        hi = float(table.to_numpy().max()) or 1.0
        title = f"{self.option}: mean routing weight ω of each expert (column: expert·group)"
        return table, title, 0.0, hi, "sequential"

    def describe(self, row, col):
        table = self.table(self.choice)[0]
        return f"{self.option}: {row} data → {col}: {table.loc[row, col]:.3f}"
