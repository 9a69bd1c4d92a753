"""Auxiliary routing losses, collected in one place and added to the task loss by the trainer.

A router calls ``self.add_aux("load_balance", coef, logits=..., k=...)`` in its training forward; the
trainer calls ``aux_loss(model)`` once per step. Terms are grouped by (routed adapter, loss) so a loss
defined over all layers at once (MixLoRA concatenates router logits over layers) sees all of them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from workbench.registry import Registry
from workbench.routing.base import Router
from workbench.routing.gates import topk_dense

AuxLoss = Callable[[list[dict]], torch.Tensor]
AUX_LOSSES: Registry[AuxLoss] = Registry("auxiliary routing loss")


def aux_loss(model: nn.Module) -> tuple[torch.Tensor | None, dict[str, float]]:
    """Sum of every pending auxiliary term in ``model`` (and clear them).

    Returns:
        (total or None when there is none, {"<routed adapter>/<loss>": value}) for logging.
    """
    groups: dict[tuple[str, str, float], list[dict]] = {}
    for m in model.modules():
        if isinstance(m, Router):
            for term in m.pending_aux:
                groups.setdefault((m.owner, term.loss, term.coef), []).append(term.payload)
            m.pending_aux.clear()
    total, parts = None, {}
    for (owner, loss, coef), payloads in groups.items():
        value = coef * AUX_LOSSES.get(loss)(payloads)
        parts[f"{owner}/{loss}"] = parts.get(f"{owner}/{loss}", 0.0) + float(value.detach())
        total = value if total is None else total + value
    return total, parts


@AUX_LOSSES.register("load_balance")
def load_balance(payloads: list[dict]) -> torch.Tensor:
    """Switch/Mixtral balance E·Σ_e f_e·P_e over the logits of all layers, concatenated.

    Payload: ``logits`` (N, E), ``k``, optional ``mask`` (N,) of real tokens. f_e is the fraction of
    (token, slot) assignments to e, P_e the mean router probability. Its minimum under uniform
    routing is 1 (this normalisation; MoE-PEFT's sum of k slots gives k).

    Reference: Fedus et al., Switch Transformers (2021), eq. 4; MixLoRA (arXiv 2404.15159) via MoE-PEFT.
    """
    logits = torch.cat([p["logits"].reshape(-1, p["logits"].shape[-1]) for p in payloads])
    masks = [p.get("mask") for p in payloads]
    keep = None if any(m is None for m in masks) else torch.cat([m.reshape(-1) for m in masks]).bool()
    if keep is not None:
        logits = logits[keep]
    k = payloads[0]["k"]
    n_experts = logits.shape[-1]
    probs = logits.float().softmax(-1)
    _, chosen = topk_dense(probs, k, torch.ones_like)  # (N, E) 0/1
    f = chosen.mean(0) / k
    return n_experts * (f * probs.mean(0)).sum()
