"""MoRA rank reuse across tasks: how much of a prompt's gate sits on each task's block of rank-1 experts.

MoRA (continual) adds a block of rank-1 experts per task and keeps the earlier blocks in the mixture,
frozen. Whether a new task *reuses* earlier ranks or *adds* its own shows in where its tokens' gate
weight lands:

    _, cache = lab.run(batch, record="*.routes.mora.hook_route")
    rank_block_mass(cache, blocks=[("language", 8), ("topic", 8)], groups=task_of_each_row,
                    mask=batch["attention_mask"])

Reference: Lu et al., "Little By Little: Continual Learning via Self-Activated Sparse Mixture-of-Rank
Adaptive Learning" (MoRA, arXiv 2506.21035): routing.md §7 (g), "fraction of activation mass on each
task's rank block (reuse vs new)".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import torch

from workbench.analysis.routing import KEYS, _row_mask, records
from workbench.errors import WorkbenchError


def block_slices(blocks: Sequence[tuple[str, int]]) -> dict[str, slice]:
    """block name -> its slice of the rank axis, blocks in order (a task's ranks follow the earlier ones)."""
    out, start = {}, 0
    for name, size in blocks:
        if size < 1 or name in out:
            raise WorkbenchError(f"rank blocks need distinct names and ≥ 1 rank each; got {list(blocks)}")
        out[name] = slice(start, start + size)
        start += size
    return out


def rank_block_mass(cache: Mapping, blocks: Sequence[tuple[str, int]], groups: Sequence[str] | None = None,
                    mask: torch.Tensor | None = None) -> pd.DataFrame:
    """Per module, group of rows and block: the share of the group's gate weight on the block's ranks.

    Args:
        cache: a run's records of MoRA's ``hook_route`` (weights (B, T, R) over all R ranks so far).
        blocks: (name, ranks) per task, in the order the tasks arrived; the sizes sum to R.
        groups: a label per batch row (e.g. each prompt's task); None puts every row in ``"all"``.
        mask: (B, T) real tokens (padding excluded).

    Returns:
        ``layer, module, router, group, block, mass`` (Σ over the group's real tokens of the weight on
        the block, over the total weight: the shares of one group and module sum to 1) and
        ``active`` (the share of the group's selected experts that lie in the block).
    """
    slices = block_slices(blocks)
    total = sum(s.stop - s.start for s in slices.values())
    rows = []
    for (layer, module, router), rec in records(cache).items():
        if rec.n_experts != total:
            raise WorkbenchError(f"{layer}.{module} routes over {rec.n_experts} ranks but the blocks "
                                 f"{list(blocks)} sum to {total}; give one (task, ranks) per task so far")
        real = _row_mask(rec, mask)
        labels = list(groups) if groups is not None else ["all"] * rec.shape[0]
        if len(labels) != rec.shape[0]:
            raise WorkbenchError(f"{len(labels)} group labels for a batch of {rec.shape[0]} rows")
        weights, active = rec.weights.detach().float().cpu(), rec.active.cpu().float()
        for group in dict.fromkeys(labels):
            sel = real & torch.tensor([g == group for g in labels])[:, None]
            w, a = weights[sel].sum(0), active[sel].sum(0)  # (R,)
            for name, s in slices.items():
                rows.append((layer, module, router, group, name, float(w[s].sum() / w.sum().clamp(min=1e-12)),
                             float(a[s].sum() / a.sum().clamp(min=1e-12))))
    return pd.DataFrame(rows, columns=[*KEYS, "group", "block", "mass", "active"])


def reuse_table(mass: pd.DataFrame) -> pd.DataFrame:
    """group × block matrix of the mean ``mass`` over modules: the "rank reuse across tasks" view's data."""
    order = list(dict.fromkeys(mass["block"]))
    table = mass.pivot_table(index="group", columns="block", values="mass", aggfunc="mean")
    return table.reindex(columns=order).reindex(index=[g for g in dict.fromkeys(mass["group"])])
