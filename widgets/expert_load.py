"""ExpertLoad: how evenly a router spreads tokens over its experts, per layer (and per module)."""

from __future__ import annotations

import pandas as pd

from widgets._chooser import Chooser
from workbench.errors import WorkbenchError

ALL = "all modules"


class ExpertLoad(Chooser):
    """Layer × expert heatmap of load (share of token assignments) with entropy and balance per row.

    Takes the frame of ``analysis.routing.expert_load``. Buttons choose the module (or all modules,
    averaged); row labels carry each layer's mean routing entropy H and load coefficient of
    variation (cv = 0 is perfect balance). Uniform load is 1/E.

    Example::

        ExpertLoad(expert_load(cache, mask=batch["attention_mask"]))
    """

    def __init__(self, load: pd.DataFrame, **kwargs):
        need = {"layer", "module", "expert", "load", "entropy", "cv"}
        if load.empty or not need <= set(load.columns):
            raise WorkbenchError(f"ExpertLoad takes expert_load(...)'s frame (columns {sorted(need)})")
        self.load = load
        super().__init__(choices=[ALL, *dict.fromkeys(load["module"])], cell=14, **kwargs)
        self.choice = ALL

    def _part(self, choice: str) -> pd.DataFrame:
        return self.load if choice == ALL else self.load[self.load["module"] == choice]

    def table(self, choice):
        part = self._part(choice)
        table = part.pivot_table(index="layer", columns="expert", values="load", aggfunc="mean", dropna=False)
        stats = part.groupby("layer", dropna=False)[["entropy", "cv"]].mean()
        table.index = [f"layer {i}  H={stats.loc[i, 'entropy']:.2f} cv={stats.loc[i, 'cv']:.2f}"
                       for i in table.index]
        uniform = 1.0 / table.shape[1]
        return table, f"{choice}: load per expert (uniform = {uniform:.3f})", 0.0, 2 * uniform, "sequential"

    def describe(self, row, col):
        return f"{row.split('  ')[0]}, expert {col}: load {self.table(self.choice)[0].loc[row, int(col)]:.3f}"
