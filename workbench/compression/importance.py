"""Importance of coupled groups: element-wise scores (Taylor 1st/2nd order, L1, L2, random) summed
over each group's slices, then reduced across the coupled layers.

Per weight element (w its value, g the loss gradient on calibration data, F the diagonal Fisher):

- ``taylor``: |w·g| (LLM-Pruner ``param_first``, its code default);
- ``taylor2``: w·F·w with F = Σ_n g_n² / N over N calibration sequences, one backward each
  (``param_second``: the second-order term with the Hessian approximated by the diagonal Fisher);
- ``taylor-mix``: |w·g − ½·w·F·w| (``param_mix``);
- ``l1``: |w|; ``l2``: w² (torch_pruning's magnitude importance with p = 2 sums |w|^p);
- ``random``: uniform noise (a control).

A group's score: each member's slice (its rows or columns) is summed to one number, then the members
are reduced by ``aggregation``: ``"sum"`` (LLM-Pruner's default ``grouping_strategy``), ``"mean"`` or
``"max"``. With ``sum`` the group score is the plain sum of its element scores.

Reference: Ma et al., "LLM-Pruner: On the Structural Pruning of Large Language Models", NeurIPS 2023
(horseee/LLM-Pruner @128a07d, ``hf_prune.py`` and ``LLMPruner/pruner/hf_llama_pruner.py``).
Deviations: the calibration data are whatever token batches the caller gives (the paper: 10 BookCorpus
samples of 64 tokens); the ``vectorize`` option and the ``prod`` aggregation are not offered; the
gradient comes from the mean token loss over the given batch (padding masked out).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from workbench.compression.groups import GroupSet
from workbench.errors import WorkbenchError
from workbench.registry import Registry

IMPORTANCE: Registry = Registry("importance", flags={
    "gradient": "needs the loss gradient g on calibration data",
    "fisher": "needs the diagonal Fisher F = mean of per-sequence g²"},
    skip=("w", "grad", "fisher", "generator"))
AGGREGATIONS = ("sum", "mean", "max")


@IMPORTANCE.register("taylor", flags=("gradient",))
def taylor(w, grad, fisher, generator):
    """First-order Taylor: |w·g|, the loss change from zeroing one weight to first order."""
    return (w * grad).abs()


@IMPORTANCE.register("taylor2", flags=("fisher",))
def taylor2(w, grad, fisher, generator):
    """Second-order Taylor term w·F·w, the Hessian approximated by the diagonal Fisher F."""
    return w * fisher * w


@IMPORTANCE.register("taylor-mix", flags=("gradient", "fisher"))
def taylor_mix(w, grad, fisher, generator):
    """|w·g − ½·w·F·w|: first and second order together."""
    return (w * grad - 0.5 * w * fisher * w).abs()


@IMPORTANCE.register("l1")
def l1(w, grad, fisher, generator):
    """Magnitude |w|."""
    return w.abs()


@IMPORTANCE.register("l2")
def l2(w, grad, fisher, generator):
    """Squared magnitude w² (summed over a group: its squared L2 norm)."""
    return w * w


@IMPORTANCE.register("random")
def random_(w, grad, fisher, generator):
    """Uniform noise: the control every importance must beat."""
    return torch.rand(w.shape, generator=generator)


def _loss(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    ids = batch["input_ids"]
    mask = batch.get("attention_mask", torch.ones_like(ids))
    labels = ids.masked_fill(mask == 0, -100)
    return model(input_ids=ids, attention_mask=mask, labels=labels).loss


def gradients(model: nn.Module, modules: list[str], batch: Mapping[str, torch.Tensor], *,
              fisher: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Loss gradients of the modules' weights on ``batch`` and (if asked) the diagonal Fisher.

    Returns (grad, fisher) by module path, each shaped like the weight; fisher is empty unless asked.
    Only these weights take gradients; the others' ``requires_grad`` is restored after.
    """
    named = dict(model.named_modules())
    weights = {m: named[m].weight for m in modules}
    saved = {n: p.requires_grad for n, p in model.named_parameters()}
    was_training = model.training
    model.eval()
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        for w in weights.values():
            w.requires_grad_(True)
        with torch.enable_grad():
            grads = dict(zip(weights, torch.autograd.grad(_loss(model, batch), list(weights.values())),
                             strict=True))
            fish: dict[str, torch.Tensor] = {}
            if fisher:
                n = batch["input_ids"].shape[0]
                for i in range(n):  # one backward per sequence: F = Σ g_n² / N
                    one = {k: v[i:i + 1] for k, v in batch.items() if torch.is_tensor(v)}
                    gs = torch.autograd.grad(_loss(model, one), list(weights.values()))
                    for m, g in zip(weights, gs, strict=True):
                        fish[m] = fish.get(m, 0) + g * g / n
    finally:
        for name, p in model.named_parameters():
            p.requires_grad_(saved[name])
        model.train(was_training)
    return grads, fish


def element_scores(model: nn.Module, sets: list[GroupSet], method: str = "taylor",
                   batch: Mapping[str, torch.Tensor] | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """Per-element importance of every weight the groups touch, by module path (weight-shaped, on CPU)."""
    info = IMPORTANCE.info(method)
    modules = list(dict.fromkeys(m.module for s in sets for m in s.members))
    needs = {"gradient", "fisher"} & info.flags
    if needs and batch is None:
        raise WorkbenchError(f"importance {method!r} needs calibration data for its gradient: pass "
                             "batch={'input_ids': (n, T) token ids} (LLM-Pruner: 10 sequences of 64 tokens)")
    grads, fish = gradients(model, modules, batch, fisher="fisher" in needs) if needs else ({}, {})
    named = dict(model.named_modules())
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return {m: info.obj(named[m].weight.detach().float(), grads.get(m), fish.get(m), generator)
                .float().cpu() for m in modules}


def group_scores(sets: list[GroupSet], scores: Mapping[str, torch.Tensor],
                 aggregation: str = "sum") -> dict[tuple[int, str], torch.Tensor]:
    """One score per group, by (layer, kind): each member's slice summed, members reduced.

    Returns (n_groups,) tensors.
    """
    if aggregation not in AGGREGATIONS:
        raise WorkbenchError(f"aggregation={aggregation!r} is unknown; use one of {AGGREGATIONS}")
    out = {}
    for s in sets:
        per_member = []
        for m in s.members:
            channel = scores[m.module].sum(dim=1 - m.dim)  # (channels,): a row or column sum
            per_member.append(channel[m.channels].sum(dim=1))  # (n_groups,)
        stacked = torch.stack(per_member)  # (members, n_groups)
        out[(s.layer, s.kind)] = getattr(stacked, aggregation)(dim=0) if aggregation != "max" \
            else stacked.max(dim=0).values
    return out
