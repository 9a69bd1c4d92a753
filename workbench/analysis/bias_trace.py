"""A bias-balanced router's state as tidy frames: its balancing bias over training, its gate values.

SMoRA (and FlyLoRA) balance their experts with a bias that is not trained: after every training
forward, b_i ← b_i + u·sign(mean(c) − c_i). The bias enters SMoRA's gate (the top-k values are the
biased ones, renormalised to sum to k), so the views show the three stages of a gate value side by side:

    with trace_routes(lab.model) as trace:         # listens on the routers' hook_route points
        lab.train_router("smora", tasks, steps=100)
    bias_trajectory(trace)                         # step, layer, module, router, expert, bias, count
    load_cv(bias_trajectory(trace))                # step, layer, module, router, cv
    _, cache = lab.run(batch, record="*.routes.smora.hook_route")
    values = gate_values(cache, mask=batch["attention_mask"])   # one row per selected (token, rank)
    gate_histogram(values, bins=10)                # layer, module, router, kind, bin, lo, hi, share

``trace_routes`` records through the same ``hook_route`` HookPoints as ``record`` (no patching), but
keeps only what a trajectory needs per forward (the bias and the selection counts), not the (B, T, E)
gates of every training batch.

Reference: Zhao et al., SMoRA (arXiv 2501.15103), code github StyxXuan/smora @8bdabcd srmole/layer.py;
routing.md §1 (g): "bias-vector trajectory; load CV over ranks over training; gate-value histogram".
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from workbench.analysis.routing import KEYS, _row_mask, records
from workbench.errors import WorkbenchError
from workbench.hooks.cache import split_hook_key
from workbench.hooks.recorder import hook_points, match_hooks
from workbench.hooks.routing_record import RoutingRecord
from workbench.naming import split_module_name

KINDS = ("score g", "biased g + b", "gate G / k")  # the three stages of a selected rank's gate value


@dataclass
class RouteTrace:
    """Per routed module (its ``hook_route`` key): the bias (E,) and selection counts (E,) of each forward."""

    train_only: bool = True
    bias: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    counts: dict[str, list[torch.Tensor]] = field(default_factory=dict)

    def add(self, key: str, rec: RoutingRecord, training: bool) -> None:
        if rec.bias is None or (self.train_only and not training):
            return
        self.bias.setdefault(key, []).append(rec.bias.detach().float().cpu().clone())
        self.counts.setdefault(key, []).append(rec.counts().detach().float().cpu())  # padding included


@contextmanager
def trace_routes(model: nn.Module, patterns: list[str] | str = "*.hook_route", *,
                 train_only: bool = True) -> Iterator[RouteTrace]:
    """Keep each forward's balancing bias and selection counts of the matching routers.

    Args:
        model: the lab's model (``lab.model``) holding the routers.
        patterns: which ``hook_route`` points (glob or regex, as ``record``).
        train_only: keep training forwards only (those that move the bias).

    The bias kept for a forward is the one that made its selection (before that forward's update),
    so step 0 is the bias before training. Routers without a bias are skipped.
    """
    points = hook_points(model)
    trace, handles = RouteTrace(train_only), []

    def make_hook(name: str):
        def hook(module, _inputs, output):
            if isinstance(output, RoutingRecord):
                trace.add(name, output, module.training)

        return hook

    try:
        for name in match_hooks(model, patterns):
            handles.append(points[name].register_forward_hook(make_hook(name)))
        yield trace
    finally:
        for h in handles:
            h.remove()


def bias_trajectory(trace: RouteTrace) -> pd.DataFrame:
    """``step, layer, module, router, expert, bias, count``: one row per recorded forward and expert.

    ``step`` counts the training forwards before this one (= optimizer steps when each step is one
    forward): ``bias`` is what selected this forward's experts, ``count`` how many tokens (padding
    included, as SMoRA's update counts them) selected each expert in it.
    """
    if not trace.bias:
        raise WorkbenchError("the trace holds no biased routing records: trace a router with a balancing "
                             "bias (smora, flylora) during training forwards (train_only=True skips eval "
                             "forwards)")
    frames = []
    for key, biases in trace.bias.items():
        path, _, router = split_hook_key(key)
        layer, module = split_module_name(path)
        b, c = torch.stack(biases).numpy(), torch.stack(trace.counts[key]).numpy()  # (S, E)
        steps, experts = np.indices(b.shape)
        frames.append(pd.DataFrame({"step": steps.ravel(), "layer": layer, "module": module, "router": router,
                                    "expert": experts.ravel(), "bias": b.ravel(), "count": c.ravel()}))
    return pd.concat(frames, ignore_index=True)


def load_cv(trajectory: pd.DataFrame) -> pd.DataFrame:
    """``step, layer, module, router, cv``: coefficient of variation of the selection counts over the
    experts at each step (0 = every expert selected equally often)."""
    g = trajectory.groupby(["step", *KEYS], dropna=False, sort=False)["count"]
    out = (g.std(ddof=0) / g.mean().where(lambda m: m > 0)).rename("cv").reset_index()
    return out[["step", *KEYS, "cv"]]


def gate_values(cache: Mapping, mask: torch.Tensor | None = None) -> pd.DataFrame:
    """One row per real token and selected expert of every biased top-k router in ``cache``.

    Returns:
        ``layer, module, router, k, expert`` (k experts selected per token; the selected one),
        ``score`` (the router's unbiased score g), ``biased`` (g + b, what top-k compared) and
        ``gate`` (the weight applied; for SMoRA the biased values renormalised to sum to k over the
        selected ranks).
    """
    frames = []
    for (layer, module, router), rec in records(cache).items():
        if rec.selected is None or rec.bias is None:
            continue
        real = _row_mask(rec, mask)
        idx = rec.selected.cpu()[real]  # (N, k)
        score = rec.scores.detach().float().cpu()[real].gather(-1, idx)
        gate = rec.weights.detach().float().cpu()[real].gather(-1, idx)
        biased = score + rec.bias.detach().float().cpu()[idx]
        frames.append(pd.DataFrame({"layer": layer, "module": module, "router": router, "k": idx.shape[-1],
                                    "expert": idx.reshape(-1).numpy(), "score": score.reshape(-1).numpy(),
                                    "biased": biased.reshape(-1).numpy(), "gate": gate.reshape(-1).numpy()}))
    if not frames:
        raise WorkbenchError("no biased top-k router in the cache (records with a bias and a selection): "
                             "record a smora or flylora router's hook_route")
    return pd.concat(frames, ignore_index=True)


def gate_histogram(values: pd.DataFrame, bins: int = 10, by: Sequence[str] = tuple(KEYS)) -> pd.DataFrame:
    """``<by>, kind, bin, lo, hi, share``: histograms of ``gate_values``' three columns.

    ``kind`` is one of ``KINDS``: the unbiased score g, the biased g + b, and the applied gate divided by
    k (for SMoRA the gates of a token sum to k, so G / k lies in [0, 1] like g). Each kind has its own
    ``bins`` equal-width bins over its range in the group; ``share`` sums to 1 over a kind's bins.

    Args:
        by: the columns whose groups get a histogram each (default one per module; ``["layer"]`` pools a
            layer's modules; ``[]`` pools everything).
    """
    if bins < 1:
        raise WorkbenchError(f"gate_histogram needs bins >= 1; got {bins}")
    by = list(by)
    groups = values.groupby(by, dropna=False, sort=False) if by else [((), values)]
    rows = []
    for keys, part in groups:
        keys = keys if isinstance(keys, tuple) else (keys,)
        columns = {KINDS[0]: part["score"], KINDS[1]: part["biased"], KINDS[2]: part["gate"] / part["k"]}
        for kind, v in columns.items():
            v = v.to_numpy(float)
            lo, hi = float(v.min()), float(v.max())
            counts, edges = np.histogram(v, bins=bins, range=(lo, hi if hi > lo else lo + 1e-12))
            share = counts / max(len(v), 1)
            rows += [(*keys, kind, i, float(edges[i]), float(edges[i + 1]), float(share[i]))
                     for i in range(bins)]
    return pd.DataFrame(rows, columns=[*by, "kind", "bin", "lo", "hi", "share"])


def selection_share(values: pd.DataFrame) -> pd.DataFrame:
    """``layer, module, router, expert, share``: the fraction of tokens that selected each expert
    (from ``gate_values``; the shares of a module sum to k)."""
    per = values.groupby(KEYS, dropna=False, sort=False).agg(rows=("k", "size"), k=("k", "first"))
    per = per.reset_index()
    per["tokens"] = per["rows"] / per["k"]
    n = values.groupby([*KEYS, "expert"], dropna=False, sort=False).size().rename("n").reset_index()
    out = n.merge(per[[*KEYS, "tokens"]], on=KEYS, how="left")
    out["share"] = out["n"] / out["tokens"]
    return out[[*KEYS, "expert", "share"]].sort_values([*KEYS, "expert"], ignore_index=True)
