"""ExpertLoad: how evenly a router spreads tokens over its experts, per layer (and per module)."""

from __future__ import annotations

from collections.abc import Sequence

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

        ExpertLoad.from_frame(expert_load(cache, mask=batch["attention_mask"]))
    """

    load: pd.DataFrame | None = None  # expert_load(...)'s frame
    experts: list[str] | None = None  # a label per expert, or None: the indices

    @classmethod
    def from_frame(cls, load: pd.DataFrame, history: pd.DataFrame | None = None, *,
                   experts: Sequence[str] | None = None, **traits) -> ExpertLoad:
        """Args:
            load: ``analysis.routing.expert_load``'s frame.
            history: optional training history (``TrainResult.history``: ``step`` and the auxiliary
                loss columns ``aux/<router>/<loss>``); its balance losses are drawn over the steps.
            experts: a label per expert (a bank router's adapter names); default: the indices.
        """
        need = {"layer", "module", "expert", "load", "entropy", "cv"}
        if load.empty or not need <= set(load.columns):
            raise WorkbenchError(f"ExpertLoad takes expert_load(...)'s frame (columns {sorted(need)})")
        n = int(load["expert"].max()) + 1
        if experts is not None and len(experts) != n:
            raise WorkbenchError(f"ExpertLoad: {len(experts)} expert labels for {n} experts")
        w = cls(choices=[ALL, *dict.fromkeys(load["module"])], cell=14)
        w.load, w.experts = load, [str(e) for e in experts] if experts is not None else None
        curve = {"curve": balance_curve(history)} if history is not None else {}
        w._apply({"choice": ALL, **curve, **traits})
        return w

    def _part(self, choice: str) -> pd.DataFrame:
        return self.load if choice == ALL else self.load[self.load["module"] == choice]

    def table(self, choice):
        part = self._part(choice)
        table = part.pivot_table(index="layer", columns="expert", values="load", aggfunc="mean", dropna=False)
        stats = part.groupby("layer", dropna=False)[["entropy", "cv"]].mean()
        table.index = [f"layer {i}  H={stats.loc[i, 'entropy']:.2f} cv={stats.loc[i, 'cv']:.2f}"
                       for i in table.index]
        uniform = 1.0 / table.shape[1]
        if self.experts:
            table.columns = [self.experts[e] for e in table.columns]
        return table, f"{choice}: load per expert (uniform = {uniform:.3f})", 0.0, 2 * uniform, "sequential"

    def describe(self, row, col):
        table = self.table(self.choice)[0]
        key = col if self.experts else int(col)
        return f"{row.split('  ')[0]}, expert {col}: load {table.loc[row, key]:.3f}"


def balance_curve(history: pd.DataFrame) -> dict:
    """The ``curve`` payload of a training history's auxiliary (balance, gate) losses per step."""
    aux = [c for c in history.columns if c.startswith("aux/")]
    if "step" not in history.columns or not aux:
        raise WorkbenchError(
            "ExpertLoad(history=...) takes a training history with a 'step' column and auxiliary loss "
            f"columns 'aux/<router>/<loss>'; got columns {list(history.columns)}")
    return {"title": "auxiliary losses over training steps", "x": history["step"].astype(float).tolist(),
            "series": {c.removeprefix("aux/"): history[c].astype(float).tolist() for c in aux}}
