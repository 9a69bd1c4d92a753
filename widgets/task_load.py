"""TaskLoad: MixLoRA's expert-by-task load: the share of each task's tokens each FFN expert takes."""

from __future__ import annotations

import pandas as pd

from widgets._chooser import Chooser
from widgets._heatmap import payload
from widgets._layers import in_layer, layer_options
from workbench.analysis.task_load import specialization
from workbench.errors import WorkbenchError

LOAD, GATE = "token load", "gate weight"


class TaskLoad(Chooser):
    """Task × expert heatmap of ``task_load`` for one layer (select; all layers: their mean): the
    buttons choose the share of the task's (token, slot) assignments (``load``) or of its gate
    weight (``gate``). Uniform is 1/E; a task with experts of its own has a dark cell its row alone
    has. Beside it: per layer, the mutual information between task and expert (``specialization``).

    Example::

        TaskLoad.from_frame(task_load(cache, groups=task_of_row, mask=batch["attention_mask"]))
    """

    load: pd.DataFrame | None = None  # task_load(...)'s frame

    @classmethod
    def from_frame(cls, load: pd.DataFrame, **traits) -> TaskLoad:
        """Args:
            load: ``analysis.task_load.task_load``' frame.
        """
        need = {"layer", "module", "group", "expert", "load", "gate", "tokens"}
        if load.empty or not need <= set(load.columns):
            raise WorkbenchError(f"TaskLoad takes task_load(...)'s frame (columns {sorted(need)})")
        spec = specialization(load).groupby("layer", dropna=False)[["mutual_information", "max"]].mean()
        side = spec[["mutual_information"]].rename(columns={"mutual_information": "MI"})
        side.index = [f"layer {int(i)}" if pd.notna(i) else "other" for i in side.index]
        aside = payload(side, f"per layer: mutual information I(task; expert), nats (max "
                        f"{spec['max'].max():.2f})", 0.0,
                        float(spec["max"].max()) or 1.0, "sequential")
        w = cls(choices=[LOAD, GATE], options=layer_options(load), aside=aside, cell=44)
        w.load = load
        w._apply({"option": w.options[0], "choice": LOAD, **traits})
        return w

    def table(self, choice):
        part = in_layer(self.load, self.option)
        value = "load" if choice == LOAD else "gate"
        table = part.pivot_table(index="group", columns="expert", values=value, aggfunc="mean")
        table = table.reindex(index=list(dict.fromkeys(self.load["group"])))
        table.columns = [str(c) for c in table.columns]
        uniform = 1.0 / table.shape[1]
        hi = max(2 * uniform, float(table.to_numpy().max()))
        return table, f"{self.option}: {choice} per expert of each task (uniform = {uniform:.3f})", 0.0, hi, \
            "sequential"

    def describe(self, row, col):
        table = self.table(self.choice)[0]
        return f"{self.option}: {row} → expert {col}: {table.loc[row, col]:.3f}"
