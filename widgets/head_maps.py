"""HeadMaps: ALoRA's causal attention over the LoRA codes of earlier tokens, one head of one module."""

from __future__ import annotations

import pandas as pd

from widgets._chooser import Chooser
from widgets._heatmap import payload
from workbench.analysis.head_attention import span_attention
from workbench.errors import WorkbenchError

MEAN = "mean of heads"


class HeadMaps(Chooser):
    """Query token × key token heatmap of ``head_attention``'s weights: the select picks the module
    (``layer i · module``), the buttons a head or their mean. Rows sum to 1 over the earlier tokens;
    the upper triangle is empty (causal). Given ``spans`` (a label per token, e.g. general / domain),
    the map beside it is each head's mean attention mass on each span (``span_attention``).

    Example::

        _, cache = lab.run(batch, record="*.routes.alora.hook_attn")
        HeadMaps.from_frame(head_attention(cache, row=0, tokens=tokens, mask=batch["attention_mask"]))
    """

    maps: pd.DataFrame | None = None  # head_attention(...)'s frame
    spans: pd.DataFrame | None = None  # span_attention(maps, spans), or None

    @classmethod
    def from_frame(cls, maps: pd.DataFrame, *, spans=None, **traits) -> HeadMaps:
        """Args:
            maps: ``analysis.head_attention.head_attention``' frame (one batch row).
            spans: a label per token position (e.g. "general" / "domain"), or None: no span map.
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
        if spans is not None:
            mass = span_attention(maps, spans)
            w.spans = mass.assign(where=[_label(la, m) for la, m in zip(mass["layer"], mass["module"],
                                                                        strict=True)])
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

    def redrawn(self) -> None:
        if self.spans is None:
            return
        part = self.spans[self.spans["where"] == self.option]
        table = part.pivot_table(index="head", columns="span", values="weight", aggfunc="first")
        table = table.reindex(columns=list(dict.fromkeys(self.spans["span"])))
        table.index = [f"head {h}" for h in table.index]
        self.aside = payload(table, f"{self.option}: each head's attention mass on each span", 0.0, 1.0,
                             "sequential")

    def describe(self, row, col):
        table = self.table(self.choice)[0]
        return f"{self.option}, {self.choice}: {row} → {col}: {table.loc[row, col]:.3f}"


def _label(layer, module) -> str:
    return module if pd.isna(layer) else f"layer {int(layer)} · {module}"
