"""MixLoRA's expert-by-task load: which share of each task's tokens each FFN expert takes, per layer.

    _, cache = lab.run(batch, record="*.routes.mix.hook_route")
    load = task_load(cache, groups=task_of_each_row, mask=batch["attention_mask"])
    specialization(load)   # layer, module, router, mutual_information (nats), max (= log min(tasks, E))

``load`` counts (token, slot) assignments, as MixLoRA's balance loss counts f_e: each real token of a
task is sent to its k selected experts, and ``load`` is the share of the task's assignments that go to
expert e (a task's loads sum to 1 over the experts; uniform is 1/E). ``gate`` is the share of the task's
gate weight instead (the renormalised top-k weights). ``specialization`` is the mutual information
between the task and the expert of an assignment (tasks weighted by their assignments): 0 when every
task spreads its tokens the same way, log(tasks) when each task has experts of its own.

Reference: Li et al., MixLoRA (arXiv 2404.15159), code github TUDB-Labs/MoE-PEFT @40f8cb7; routing.md §3
(g): "expert load per layer (fraction of tokens), per-task expert histogram".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from workbench.analysis.routing import KEYS, _row_mask, records
from workbench.errors import WorkbenchError


def task_load(cache: Mapping, groups: Sequence[str], mask: torch.Tensor | None = None) -> pd.DataFrame:
    """Per module, task and expert: the share of the task's assignments and gate weight on the expert.

    Returns:
        ``layer, module, router, group, expert, load, gate, tokens`` (``tokens``: the task's real tokens).
    """
    rows = []
    for (layer, module, router), rec in records(cache).items():
        real = _row_mask(rec, mask)
        if len(groups) != rec.shape[0]:
            raise WorkbenchError(f"{len(groups)} task labels for a batch of {rec.shape[0]} rows")
        active, weights = rec.active.cpu().float(), rec.weights.detach().float().abs().cpu()
        for group in dict.fromkeys(groups):
            sel = real & torch.tensor([g == group for g in groups])[:, None]
            a, w = active[sel].sum(0), weights[sel].sum(0)  # (E,)
            a, w = a / a.sum().clamp(min=1e-12), w / w.sum().clamp(min=1e-12)
            n = int(sel.sum())
            rows += [(layer, module, router, group, e, float(a[e]), float(w[e]), n)
                     for e in range(rec.n_experts)]
    return pd.DataFrame(rows, columns=[*KEYS, "group", "expert", "load", "gate", "tokens"])


def specialization(load: pd.DataFrame) -> pd.DataFrame:
    """``layer, module, router, mutual_information, max``: I(task; expert) of the assignments, in nats,
    and its ceiling log(min(tasks, experts))."""
    rows = []
    for keys, part in load.groupby(KEYS, dropna=False, sort=False):
        table = part.pivot_table(index="group", columns="expert", values="load", aggfunc="first")
        tokens = part.groupby("group", sort=False)["tokens"].first().reindex(table.index).to_numpy(float)
        joint = table.to_numpy(float) * tokens[:, None]  # (tasks, E), ∝ P(task, expert)
        joint = joint / max(joint.sum(), 1e-12)
        pt, pe = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            mi = float(np.nansum(np.where(joint > 0, joint * np.log(joint / (pt * pe)), 0.0)))
        rows.append((*keys, mi, float(np.log(min(table.shape)))))
    return pd.DataFrame(rows, columns=[*KEYS, "mutual_information", "max"])
