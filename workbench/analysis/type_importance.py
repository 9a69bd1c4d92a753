"""LoRAMoE's importance by data type: how much routing weight each data type gives each expert group.

LoRAMoE splits its experts into groups, one per data type (world-knowledge data vs downstream-task
data), and its localized balancing constraint pushes each type's samples towards its own group. The
view's question: does the knowledge data's routing weight sit on the knowledge group?

    _, cache = lab.run(batch, record="*.routes.moe.hook_route")
    imp = type_importance(cache, types=type_of_each_row, mask=batch["attention_mask"],
                          expert_groups={"knowledge": [0, 1], "task": [2, 3]})
    group_share(imp)                # layer, module, router, type, expert_group, share

``importance`` is the mean softmax weight ω_e over a type's real tokens (LoRAMoE routes densely: every
expert gets a weight on every token, so the weights of a token sum to 1); LoRAMoE's own importance
I = Σ_t ω sums the same weights over positions (padding included) per sample.

Reference: Dou et al., LoRAMoE (arXiv 2312.09979, ACL'24), code github Ablustrund/LoRAMoE @1177288
peft/tuners/lora.py; routing.md §4 (g).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import torch

from workbench.analysis.routing import KEYS, _row_mask, records
from workbench.errors import WorkbenchError


def type_importance(cache: Mapping, types: Sequence[str], mask: torch.Tensor | None = None,
                    expert_groups: Mapping[str, Sequence[int]] | None = None) -> pd.DataFrame:
    """Per module, data type and expert: the mean routing weight of the type's real tokens.

    Args:
        cache: a run's records of a dense router's ``hook_route`` (weights (B, T, E)).
        types: a data-type label per batch row (e.g. ``"knowledge"`` / ``"task"``).
        mask: (B, T) real tokens (padding excluded).
        expert_groups: group name -> its experts (LoRAMoE's ``groups``, named); None: one group
            ``"all"``.

    Returns:
        ``layer, module, router, type, expert, expert_group, importance``.
    """
    rows = []
    for (layer, module, router), rec in records(cache).items():
        real = _row_mask(rec, mask)
        if len(types) != rec.shape[0]:
            raise WorkbenchError(f"{len(types)} type labels for a batch of {rec.shape[0]} rows")
        group_of = _group_of(expert_groups, rec.n_experts)
        w = rec.weights.detach().float().cpu()
        for kind in dict.fromkeys(types):
            sel = real & torch.tensor([t == kind for t in types])[:, None]
            mean = w[sel].sum(0) / max(int(sel.sum()), 1)  # (E,)
            rows += [(layer, module, router, kind, e, group_of[e], float(mean[e]))
                     for e in range(rec.n_experts)]
    return pd.DataFrame(rows, columns=[*KEYS, "type", "expert", "expert_group", "importance"])


def group_share(importance: pd.DataFrame) -> pd.DataFrame:
    """``layer, module, router, type, expert_group, share``: the type's weight on each expert group,
    over its weight on all experts (the shares of a type and module sum to 1)."""
    keys = [*KEYS, "type"]
    total = importance.groupby(keys, dropna=False, sort=False)["importance"].transform("sum")
    out = importance.assign(share=importance["importance"] / total.where(total > 0))
    out = out.groupby([*keys, "expert_group"], dropna=False, sort=False)["share"].sum().reset_index()
    return out


def _group_of(groups: Mapping[str, Sequence[int]] | None, n: int) -> list[str]:
    if groups is None:
        return ["all"] * n
    out: list[str | None] = [None] * n
    for name, experts in groups.items():
        for e in experts:
            if not 0 <= int(e) < n or out[int(e)] is not None:
                raise WorkbenchError(f"expert_groups {dict(groups)}: expert {e} is outside 0..{n - 1} or in "
                                     "two groups; give each expert one group")
            out[int(e)] = name
    missing = [e for e, g in enumerate(out) if g is None]
    if missing:
        raise WorkbenchError(f"expert_groups {dict(groups)} leave experts {missing} without a group")
    return out
