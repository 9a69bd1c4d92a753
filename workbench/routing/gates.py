"""Small pieces that routers share: top-k selection, renormalisation, straight-through, bias updates."""

from __future__ import annotations

from collections.abc import Callable

import torch

from workbench.errors import WorkbenchError


def check_k(k: int, n: int, what: str = "experts") -> int:
    """``k`` as an int in [1, n], or a clear error."""
    if not isinstance(k, int) or not 1 <= k <= n:
        raise WorkbenchError(f"top-k needs 1 <= k <= {n} (the number of {what}); got k={k!r}")
    return k


def topk_dense(values: torch.Tensor, k: int, weigh: Callable[[torch.Tensor], torch.Tensor] | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of the last axis, spread back to a dense gate.

    Args:
        values: (..., E) scores.
        k: how many to keep.
        weigh: maps the top-k values (..., k) to the gate values (same dtype as ``values``), e.g. a
            softmax over the k or ``torch.ones_like`` for a 0/1 mask; None keeps the values themselves.

    Returns:
        (selected indices (..., k), dense (..., E): ``weigh(top)`` at the selected places, zero elsewhere).
    """
    top, idx = values.topk(k, dim=-1)
    return idx, torch.zeros_like(values).scatter(-1, idx, top if weigh is None else weigh(top))


def renormalize(weights: torch.Tensor, total: float = 1.0, eps: float = 1e-9) -> torch.Tensor:
    """Scale the last axis so it sums to ``total`` (SMoRA: k; MixLoRA: 1)."""
    return total * weights / (weights.sum(-1, keepdim=True) + eps)


def straight_through(hard: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """``hard`` in the forward pass, the gradient of ``soft`` in the backward pass."""
    return hard + soft - soft.detach()


@torch.no_grad()
def sign_bias_update(bias: torch.Tensor, counts: torch.Tensor, u: float) -> None:
    """Aux-loss-free balancing (DeepSeek-V3 style): b_i ← b_i + u·sign(mean(c) − c_i), in place.

    Under-used experts move up, over-used ones down, by a fixed step ``u``.
    """
    counts = counts.to(bias.dtype)
    bias += u * torch.sign(counts.mean() - counts)


def entropy(p: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Shannon entropy (nats) over the last axis."""
    return -(p * (p + eps).log()).sum(-1)
