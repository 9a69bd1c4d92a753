"""Which groups to keep: the lowest-scoring share ``ratio`` of the groups goes, per layer or globally.

- ``scope="local"``: every chosen layer loses ``int(ratio · n)`` of its n groups of each kind.
- ``scope="global"``: the groups of one kind (heads, or neurons) of all chosen layers are ranked together
  and the lowest ``int(ratio · total)`` go, so layers lose different shares.
- Query heads stay balanced across KV groups (``repeat_kv`` gives each KV head the same number of query
  heads): each KV group loses the same number, its lowest-scoring heads; a global count for a layer is
  rounded down to a multiple of its KV heads. Every layer keeps at least one group of each kind
  (one query head per KV group).

Reference: Ma et al., "LLM-Pruner: On the Structural Pruning of Large Language Models", NeurIPS 2023
(horseee/LLM-Pruner @128a07d: local per layer unless ``--global_pruning``, ``iterative_steps 1``).
Deviations: global ranking is per kind (head scores and neuron scores are sums over different numbers
of weights, so one ranking of both would mostly compare sizes); the KV balance and the one-group floor
are this implementation's, needed for GQA models to keep running.
"""

from __future__ import annotations

import torch

from workbench.compression.groups import GroupSet
from workbench.errors import WorkbenchError

SCOPES = ("local", "global")


def _prune_counts(sets: list[GroupSet], scores: dict, ratio: float, scope: str) -> dict[tuple[int, str], int]:
    """How many groups each set loses."""
    if scope == "local":
        return {(s.layer, s.kind): int(ratio * s.n) for s in sets}
    out = {}
    for kind in {s.kind for s in sets}:
        mine = [s for s in sets if s.kind == kind]
        joined = torch.cat([scores[(s.layer, kind)] for s in mine])  # (total,)
        owner = torch.cat([torch.full((s.n,), i) for i, s in enumerate(mine)])
        gone = owner[torch.argsort(joined, stable=True)[:int(ratio * len(joined))]]
        for i, s in enumerate(mine):
            out[(s.layer, kind)] = int((gone == i).sum())
    return out


def keep(sets: list[GroupSet], scores: dict[tuple[int, str], torch.Tensor], ratio: float,
         scope: str = "local", kv_heads: dict[int, int] | None = None) -> dict[tuple[int, str], list[int]]:
    """Kept group indices (sorted) per (layer, kind).

    Args:
        sets: the group sets.
        scores: (n_groups,) score per set, higher = more important.
        ratio: share of groups to remove, in [0, 1).
        scope: "local" (per layer) or "global" (per kind across the chosen layers).
        kv_heads: KV heads per layer, for balancing query-head groups (default 1).
    """
    if not 0 <= ratio < 1:
        raise WorkbenchError(f"pruning ratio {ratio} is outside [0, 1); give the share of groups to remove")
    if scope not in SCOPES:
        raise WorkbenchError(f"scope={scope!r} is unknown; use one of {SCOPES}")
    counts = _prune_counts(sets, scores, ratio, scope)
    out = {}
    for s in sets:
        score, n = scores[(s.layer, s.kind)], s.n
        if s.kind == "query":
            n_kv = (kv_heads or {}).get(s.layer, 1)
            g = n // n_kv
            per = min(counts[(s.layer, s.kind)] // n_kv, g - 1)  # lost per KV group
            rows = score.view(n_kv, g)  # (n_kv, g): heads of KV group j are j·g .. (j+1)·g − 1
            top = torch.argsort(rows, dim=1, descending=True, stable=True)[:, :g - per]
            kept = (top + torch.arange(n_kv)[:, None] * g).flatten()
        else:
            lost = min(counts[(s.layer, s.kind)], n - 1)
            kept = torch.argsort(score, descending=True, stable=True)[:n - lost]
        out[(s.layer, s.kind)] = sorted(kept.tolist())
    return out
