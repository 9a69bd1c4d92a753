"""DoRA's defining details, seen: magnitude × unit-row direction, and the row norm detached from the graph.

Reference: Liu et al., "DoRA: Weight-Decomposed Low-Rank Adaptation", ICML 2024, §4.3 (the norm is
treated as a constant in backpropagation, as peft does). DoRA is not a training variant of the lab
(``variant="dora"`` is refused); these checks are on ``workbench.adapters.dora``, which the layer uses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from workbench.adapters.dora import dora_update, effective_delta, row_norm

OUT, IN, R = 6, 5, 2


def _case(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(OUT, IN, generator=g, dtype=torch.float64)
    A = torch.randn(R, IN, generator=g, dtype=torch.float64)
    B = torch.randn(OUT, R, generator=g, dtype=torch.float64)
    m = torch.rand(OUT, generator=g, dtype=torch.float64) + 0.5
    x = torch.randn(4, IN, generator=g, dtype=torch.float64)
    return W, A, B, m, x


def _update(W, A, B, m, x, s, detach: bool):
    V = W + s * B @ A  # (out, in): the direction before normalizing
    n = V.norm(dim=1)
    n = n.detach() if detach else n
    return F.linear(x, (m / n)[:, None] * V) - F.linear(x, W)


def test_the_effective_weight_has_the_magnitude_as_row_norms():
    W, A, B, m, _ = _case()
    s = 0.7
    W_new = W + effective_delta(W, A, B, m, s).double()
    torch.testing.assert_close(W_new.norm(dim=1), m, atol=1e-5, rtol=1e-5)
    # at peft's init (m = ‖W‖_row, B = 0) the update is zero
    zero = effective_delta(W, A, torch.zeros_like(B), W.norm(dim=1), s)
    assert float(zero.abs().max()) < 1e-6


def test_the_row_norm_is_detached_in_the_backward():
    W, A, B, m, x = _case(1)
    s = 0.7
    grads = {}
    for how in ("dora", "detached", "through"):
        Bp, mp = B.clone().requires_grad_(True), m.clone().requires_grad_(True)
        if how == "dora":
            y = dora_update(x, W, A, Bp, mp, s, F.linear(F.linear(x, A), Bp))
        else:
            y = _update(W, A, Bp, mp, x, s, detach=how == "detached")
        (y ** 2).sum().backward()
        grads[how] = (Bp.grad, mp.grad)
    assert row_norm(W, A, B.requires_grad_(True), s).requires_grad is False
    torch.testing.assert_close(grads["dora"][0], grads["detached"][0])
    torch.testing.assert_close(grads["dora"][1], grads["detached"][1])
    # the norm's own gradient is left out: through it, B's gradient differs
    assert float((grads["dora"][0] - grads["through"][0]).abs().max()) > 1e-3
