"""RankActivations: which ranks (experts) fire, per layer, for each task; and how much tasks share them."""

from __future__ import annotations

import pandas as pd

from widgets._chooser import Chooser
from widgets._heatmap import payload
from workbench.analysis.routing import active_overlap
from workbench.errors import WorkbenchError


class RankActivations(Chooser):
    """Layer × rank heatmap of activation frequency for the chosen task, and the task × task overlap.

    Takes the frame of ``analysis.routing.activation_frequency`` (groups = tasks). Buttons choose
    the task (``choice``); ranks are averaged over the modules of a layer (``by="layer"``) or kept
    per module (``by="module"``). The side matrix is the mean Jaccard overlap of the tasks' ``top``
    most active ranks (default: the typical number of active ranks per token, i.e. k).

    Example::

        freq = activation_frequency(cache, groups=task_of_row, mask=batch["attention_mask"])
        view = RankActivations.from_frame(freq)   # click a task (view.choice follows), a cell for numbers
    """

    freq: pd.DataFrame | None = None  # activation_frequency(...)'s frame
    by = "layer"  # "layer": ranks averaged over a layer's modules; "module": kept per module

    @classmethod
    def from_frame(cls, freq: pd.DataFrame, *, by: str = "layer", top: int | None = None,
                   **traits) -> RankActivations:
        """Args:
            freq: ``analysis.routing.activation_frequency``'s frame (groups = tasks).
            by: ``"layer"`` (ranks averaged over a layer's modules) or ``"module"``.
            top: the number of most active ranks compared between tasks (default: the typical number
                of active ranks per token, i.e. k).
        """
        need = {"layer", "module", "group", "expert", "frequency"}
        if freq.empty or not need <= set(freq.columns):
            raise WorkbenchError(f"RankActivations takes activation_frequency(...)'s frame ({sorted(need)})")
        if by not in ("layer", "module"):
            raise WorkbenchError(f"RankActivations(by={by!r}): choose 'layer' or 'module'")
        groups = list(dict.fromkeys(freq["group"]))
        per_token = freq.groupby(["layer", "module", "group"], dropna=False)["frequency"].sum()
        k = top or max(1, round(float(per_token.median())))
        ov = active_overlap(freq, top=k).groupby(["group_a", "group_b"])["jaccard"].mean()
        table = pd.DataFrame(1.0, index=groups, columns=groups)
        for (a, b), v in ov.items():
            table.loc[a, b] = table.loc[b, a] = v
        aside = payload(table, f"tasks sharing their {k} most active ranks (Jaccard, mean over modules)",
                        0.0, 1.0, "sequential")
        w = cls(choices=groups, aside=aside)
        w.freq, w.by = freq, by
        w._apply({"choice": groups[0], **traits})
        return w

    def _rows(self, part: pd.DataFrame) -> pd.DataFrame:
        keys = ["layer"] if self.by == "layer" else ["layer", "module"]
        table = part.pivot_table(index=keys, columns="expert", values="frequency", aggfunc="mean",
                                 dropna=False)
        table.index = [" · ".join(map(str, i)) if isinstance(i, tuple) else f"layer {i}" for i in table.index]
        return table

    def table(self, choice):
        part = self.freq[self.freq["group"] == choice]
        return self._rows(part), f"{choice}: how often each rank is active", 0.0, 1.0, "sequential"

    def describe(self, row, col):
        values = {g: self._rows(self.freq[self.freq["group"] == g]).loc[row, int(col)] for g in self.choices}
        return f"{row}, rank {col}: " + ", ".join(f"{g} {v:.2f}" for g, v in values.items())
