"""HeadMaps: ALoRA's causal attention over the LoRA codes of earlier tokens, one head of one module."""

from __future__ import annotations

import pandas as pd

from widgets._chooser import Chooser
from workbench.errors import WorkbenchError

MEAN = "mean of heads"


class HeadMaps(Chooser):
    """Query token × key token heatmap of ``head_attention``'s weights: the select picks the module
    (``layer i · module``), the buttons a head or their mean. Rows sum to 1 over the earlier tokens;
    the upper triangle is empty (causal).

    Example::

        _, cache = lab.run(batch, record="*.routes.alora.hook_attn")
        HeadMaps.from_frame(head_attention(cache, row=0, tokens=tokens, mask=batch["attention_mask"]))
    """

    maps: pd.DataFrame | None = None  # head_attention(...)'s frame

    @classmethod
    def from_frame(cls, maps: pd.DataFrame, **traits) -> HeadMaps:
        """Args:
            maps: ``analysis.head_attention.head_attention``' frame (one batch row).
        """
        need = {"layer", "module", "head", "query", "key", "weight"}
        if maps.empty or not need <= set(maps.columns):
            raise WorkbenchError(f"HeadMaps takes head_attention(...)'s frame (columns {sorted(need)})")
        where = maps[["layer", "module"]].drop_duplicates()
        options = [_label(layer, module) for layer, module in where.itertuples(index=False)]
        heads = [f"head {h}" for h in sorted(maps["head"].unique())]
        w = cls(choices=[*heads, MEAN], options=options, cell=26)
        where = [_label(la, m) for la, m in zip(maps["layer"], maps["module"], strict=True)]
        w.maps = maps.assign(where=where)
        w._apply({"option": options[0], "choice": heads[0], **traits})
        return w

    def table(self, choice):
        part = self.maps[self.maps["where"] == self.option]
        if choice != MEAN:
            part = part[part["head"] == int(choice.removeprefix("head "))]
        table = part.pivot_table(index="query", columns="key", values="weight", aggfunc="mean")
        if "query_token" in part:
            token = dict(zip(part["query"], part["query_token"], strict=True))
            table.index = [f"{q} {token[q]}" for q in table.index]
            table.columns = [f"{k} {token[k]}" for k in table.columns]
        else:
            table.index, table.columns = [str(q) for q in table.index], [str(k) for k in table.columns]
        title = f"{self.option}, {choice}: attention of each token (row) over the earlier ones"
        return table, title, 0.0, 1.0, "sequential"

    def describe(self, row, col):
        table = self.table(self.choice)[0]
        return f"{self.option}, {self.choice}: {row} → {col}: {table.loc[row, col]:.3f}"


def _label(layer, module) -> str:
    return module if pd.isna(layer) else f"layer {int(layer)} · {module}"
