"""Routing statistics from recorded RoutingRecords -> tidy frames (what the route-lab views draw).

    lab.use("smora")
    _, cache = lab.run(prompts, record="*.hook_route")
    freq = analysis.activation_frequency(cache, groups=task_of_each_prompt, mask=batch["attention_mask"])
    analysis.active_overlap(freq, top=8)       # do tasks use different ranks?
    analysis.expert_load(cache)                # load, entropy, balance per module

Only real tokens count when ``mask`` (B, T) is given (padding excluded).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from math import comb

import numpy as np
import pandas as pd
import torch

from workbench.errors import WorkbenchError
from workbench.hooks.cache import split_hook_key
from workbench.hooks.routing_record import RoutingRecord
from workbench.naming import split_module_name

KEYS = ["layer", "module", "router"]


def records(cache: Mapping) -> dict[tuple, RoutingRecord]:
    """(layer, module, router) -> RoutingRecord for every recorded ``hook_route`` in ``cache``."""
    out = {}
    for key, value in cache.items():
        if isinstance(value, RoutingRecord):
            path, _, router = split_hook_key(key)
            out[(*split_module_name(path), router)] = value
    if not out:
        raise WorkbenchError(
            "the cache holds no routing records; run with record='*.hook_route' while a router is used"
        )
    return out


def _row_mask(rec: RoutingRecord, mask: torch.Tensor | None) -> torch.Tensor:
    b, t, _ = rec.shape
    if mask is None:
        return torch.ones(b, t, dtype=torch.bool)
    if tuple(mask.shape) != (b, t):
        raise WorkbenchError(f"mask has shape {tuple(mask.shape)} but the records are (batch, token) = "
                             f"{(b, t)}; pass the attention mask of the batch that was run")
    return mask.bool().cpu()


def activation_frequency(cache: Mapping, groups: Sequence[str] | None = None,
                         mask: torch.Tensor | None = None) -> pd.DataFrame:
    """How often each expert (rank, adapter, branch) is active, per group of batch rows.

    Args:
        groups: a label per batch row (e.g. each prompt's task); None puts every row in ``"all"``.
        mask: (B, T) real tokens.

    Returns:
        ``layer, module, router, group, expert, frequency`` (fraction of the group's tokens that
        used the expert) and ``mean_weight`` (its mean gate weight over those tokens).
    """
    rows = []
    for (layer, module, router), rec in records(cache).items():
        real = _row_mask(rec, mask)
        labels = list(groups) if groups is not None else ["all"] * rec.shape[0]
        if len(labels) != rec.shape[0]:
            raise WorkbenchError(f"{len(labels)} group labels for a batch of {rec.shape[0]} rows")
        active, weights = rec.active.cpu(), rec.weights.detach().float().cpu()
        for group in dict.fromkeys(labels):
            sel = real & torch.tensor([g == group for g in labels])[:, None]
            n = int(sel.sum())
            freq = active[sel].float().sum(0) / max(n, 1)
            mean_w = weights[sel].sum(0) / max(n, 1)
            for e in range(rec.n_experts):
                rows.append((layer, module, router, group, e, float(freq[e]), float(mean_w[e])))
    return pd.DataFrame(rows, columns=[*KEYS, "group", "expert", "frequency", "mean_weight"])


def active_overlap(freq: pd.DataFrame, *, top: int = 8) -> pd.DataFrame:
    """Jaccard overlap of the groups' ``top`` most frequently active experts, per module.

    1 means two tasks use the same experts; 0 that they use disjoint ones (separated by routing).
    """
    rows = []
    for keys, part in freq.groupby(KEYS, dropna=False, sort=False):
        sets = {g: set(p.nlargest(top, "frequency")["expert"]) for g, p in part.groupby("group", sort=False)}
        for a, b in combinations(sets, 2):
            rows.append((*keys, a, b, len(sets[a] & sets[b]) / max(len(sets[a] | sets[b]), 1)))
    return pd.DataFrame(rows, columns=[*KEYS, "group_a", "group_b", "jaccard"])


def expert_load(cache: Mapping, mask: torch.Tensor | None = None) -> pd.DataFrame:
    """Per module and expert: ``load`` (share of all token-expert assignments), with the module's
    mean per-token routing ``entropy`` (nats, of the normalised gate weights) and ``cv`` of the load
    (0 = perfectly balanced)."""
    rows = []
    for (layer, module, router), rec in records(cache).items():
        real = _row_mask(rec, mask)
        counts = rec.counts(real).float().cpu()
        load = counts / counts.sum().clamp_min(1)
        w = rec.weights.detach().float().abs().cpu()[real]
        p = w / w.sum(-1, keepdim=True).clamp_min(1e-12)
        ent = float(-(p * (p + 1e-12).log()).sum(-1).mean()) if len(p) else float("nan")
        cv = float(load.std(unbiased=False) / load.mean()) if load.sum() > 0 else float("nan")
        rows += [(layer, module, router, e, float(load[e]), ent, cv) for e in range(rec.n_experts)]
    return pd.DataFrame(rows, columns=[*KEYS, "expert", "load", "entropy", "cv"])


def token_routing(cache: Mapping, *, row: int = 0, tokens: Sequence[str] | None = None) -> pd.DataFrame:
    """One batch row, token by token: the dominant expert and its weight at every routed module.

    Returns:
        ``position, token, layer, module, router, expert, weight`` (``token`` when given).
    """
    rows = []
    for (layer, module, router), rec in records(cache).items():
        w = rec.weights.detach().float().cpu()[row]  # (T, E)
        best = w.abs().argmax(-1)
        for t in range(w.shape[0]):
            rows.append((t, None if tokens is None else tokens[t], layer, module, router, int(best[t]),
                         float(w[t, best[t]])))
    frame = pd.DataFrame(rows, columns=["position", "token", *KEYS, "expert", "weight"])
    frame["expert"] = frame["expert"].astype(np.int64)
    return frame


def gate_accuracy(cache: Mapping, targets: Sequence[int], mask: torch.Tensor | None = None) -> pd.DataFrame:
    """Per module: the share of real tokens whose dominant expert is the row's target expert.

    For a router over a bank of task adapters (MeteoRA), ``targets`` is the bank index of each
    row's true task: how well each gate recognises the task, layer by layer.
    """
    rows = []
    for (layer, module, router), rec in records(cache).items():
        real = _row_mask(rec, mask)
        if len(targets) != rec.shape[0]:
            raise WorkbenchError(f"{len(targets)} targets for a batch of {rec.shape[0]} rows")
        want = torch.as_tensor(list(targets))[:, None].expand(real.shape)
        hit = rec.weights.detach().abs().cpu().argmax(-1) == want
        rows.append((layer, module, router, float(hit[real].float().mean()), int(real.sum())))
    return pd.DataFrame(rows, columns=[*KEYS, "accuracy", "tokens"])


def chance_overlap(n_experts: int, k: int) -> float:
    """Expected Jaccard overlap of two independent, uniformly random ``k``-subsets of ``n_experts``.

    The yardstick for ``active_overlap``: two tasks whose top-k sets overlap no more than this are
    routed as if at random with respect to each other; an overlap near a task's overlap with itself
    (two halves of its prompts) means routing does not tell the tasks apart.
    """
    if not 0 < k <= n_experts:
        raise WorkbenchError(f"chance_overlap needs 0 < k <= n_experts; got k={k}, n_experts={n_experts}")
    total = comb(n_experts, k)
    # |A ∩ B| = i is hypergeometric: C(k, i) C(n - k, k - i) / C(n, k); then J = i / (2k - i)
    return sum(comb(k, i) * comb(n_experts - k, k - i) / total * i / (2 * k - i) for i in range(k + 1))


def task_separation(overlap: pd.DataFrame, task_of: Mapping[str, str]) -> pd.DataFrame:
    """Within-task against cross-task overlap of active experts, per router and layer.

    Args:
        overlap: ``active_overlap``'s frame over groups that are parts of tasks (e.g. each task's
            prompts split in two halves, groups ``"arithmetic/0"``, ``"arithmetic/1"`` ...).
        task_of: group -> its task.

    Returns:
        ``router, layer, within, across, separation`` with ``separation = within - across``: 0 when
        routing does not tell tasks apart (two tasks share ranks as much as two halves of one task).
    """
    missing = sorted(set(overlap["group_a"]).union(overlap["group_b"]) - set(task_of))
    if missing:
        raise WorkbenchError(f"task_of has no task for the groups {missing}")
    same = [task_of[a] == task_of[b] for a, b in zip(overlap["group_a"], overlap["group_b"], strict=True)]
    kind = np.where(same, "within", "across")
    table = overlap.assign(kind=kind).pivot_table(index=["router", "layer"], columns="kind",
                                                  values="jaccard", aggfunc="mean")
    if not {"within", "across"} <= set(table.columns):
        raise WorkbenchError("task_separation needs at least two tasks with two groups each")
    table = table[["within", "across"]].reset_index()
    table.columns.name = None
    return table.assign(separation=table["within"] - table["across"])
