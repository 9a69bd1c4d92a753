"""LoRA-Pro's Sylvester term X, seen: the adjusted gradients are the closest-to-vanilla ones.

Among all (g_A, g_B) whose equivalent gradient s(B g_A + g_B A) is the projection of the full gradient
G, LoRA-Pro keeps the one nearest (in ‖g_A − G_A‖² + ‖g_B − G_B‖²) to the vanilla gradients; that choice
is what X does. Here it is found independently, as the minimum-distance point of that affine set
(a least-squares problem on tiny shapes), so flipping X's sign or setting X = 0 fails.
"""

from __future__ import annotations

import pytest
import torch

from workbench.training.lorapro import LoRAPro, adjusted_gradients, equivalent_gradient

R, IN, OUT = 3, 5, 6


def _lora(seed: int):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(R, IN, generator=g, dtype=torch.float64),  # A
            torch.randn(OUT, R, generator=g, dtype=torch.float64),  # B
            torch.randn(OUT, IN, generator=g, dtype=torch.float64))  # G = ∂L/∂W


def _projection(A, B, G):
    P_B = B @ torch.linalg.pinv(B.T @ B) @ B.T
    P_A = A.T @ torch.linalg.pinv(A @ A.T) @ A
    return P_B @ G + (torch.eye(OUT, dtype=G.dtype) - P_B) @ G @ P_A


def _closest(A, B, s, G_A, G_B, target):
    """argmin ‖(g_A, g_B) − (G_A, G_B)‖ subject to s(B g_A + g_B A) = target, by least squares."""
    # the linear map z = (vec g_A, vec g_B) -> vec(s(B g_A + g_B A)) as an explicit matrix
    cols = []
    for k in range(R * IN + OUT * R):
        z = torch.zeros(R * IN + OUT * R, dtype=A.dtype)
        z[k] = 1.0
        cols.append(equivalent_gradient(A, B, s, z[:R * IN].view(R, IN), z[R * IN:].view(OUT, R)).reshape(-1))
    M = torch.stack(cols, dim=1)  # (OUT·IN, R·IN + OUT·R)
    z0 = torch.cat([G_A.reshape(-1), G_B.reshape(-1)])
    dz = torch.linalg.pinv(M) @ (target.reshape(-1) - M @ z0)  # minimum-norm correction
    z = z0 + dz
    return z[:R * IN].view(R, IN), z[R * IN:].view(OUT, R)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("s", [2.0, 0.5])
def test_lorapro_x_gives_the_closest_to_vanilla_gradients(seed, s):
    A, B, G = _lora(seed)
    G_A, G_B = s * B.T @ G, s * G @ A.T  # what autograd gives a LoRA
    target = _projection(A, B, G)
    want_A, want_B = _closest(A, B, s, G_A, G_B, target)
    torch.testing.assert_close(equivalent_gradient(A, B, s, want_A, want_B), target, atol=1e-8, rtol=1e-8)
    g_A, g_B = adjusted_gradients(A, B, s, G_A, G_B)
    torch.testing.assert_close(g_A, want_A, atol=1e-5, rtol=1e-5)  # δ = 1e-8 inside
    torch.testing.assert_close(g_B, want_B, atol=1e-5, rtol=1e-5)
    # X matters: X = 0 gives the same equivalent gradient, farther from vanilla, and its part XA is far
    # above the tolerance above (so X = 0 or −X fails there)
    Q = torch.linalg.inv(B.T @ B)
    x0_A = Q @ G_A / s**2
    x0_B = (torch.eye(OUT, dtype=B.dtype) - B @ Q @ B.T) @ G_B @ torch.linalg.inv(A @ A.T) / s**2
    far = (x0_A - G_A).norm() ** 2 + (x0_B - G_B).norm() ** 2
    near = (g_A - G_A).norm() ** 2 + (g_B - G_B).norm() ** 2
    assert near < far
    assert float((g_A - x0_A).abs().max()) > 1e-2


def test_lorapro_step_takes_the_closest_adjustment_of_the_adam_direction():
    """One optimizer step (B ≠ 0): ΔA, ΔB are −lr × the closest-to-(G'_A, G'_B) adjustment of u."""
    A, B, G = _lora(7)
    s, lr = 2.0, 0.1
    A_p, B_p = A.clone().requires_grad_(False), B.clone().requires_grad_(False)
    A_p.grad, B_p.grad = s * B.T @ G, s * G @ A.T
    opt = LoRAPro([(A_p, B_p, s)], lr=lr)
    opt.step()
    g_A, g_B = adjusted_gradients(A, B, s, s * B.T @ G, s * G @ A.T)
    g = equivalent_gradient(A, B, s, g_A, g_B)
    u = g / (g.abs() + 1e-8)  # Adam's first step: m̂/(√v̂ + ε)
    GA2, GB2 = s * B.T @ u, s * u @ A.T
    want_A, want_B = _closest(A, B, s, GA2, GB2, _projection(A, B, u))
    torch.testing.assert_close(A_p, A - lr * want_A, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(B_p, B - lr * want_B, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("s", [2.0, 0.5])
def test_lorapro_first_step_projects_on_the_rows_of_a(s):
    """B = 0 (a fresh LoRA): only g_B moves W, and s·g_B·A is G's projection on A's rows, G P_A."""
    A, _, G = _lora(3)
    B = torch.zeros(OUT, R, dtype=torch.float64)
    G_A, G_B = s * B.T @ G, s * G @ A.T
    g_A, g_B = adjusted_gradients(A, B, s, G_A, G_B, first=True)
    P_A = A.T @ torch.linalg.inv(A @ A.T) @ A
    torch.testing.assert_close(g_A, G_A)
    torch.testing.assert_close(equivalent_gradient(A, B, s, g_A, g_B), G @ P_A, atol=1e-7, rtol=1e-6)


def test_lorapro_weight_decay_is_decoupled_on_a_and_b():
    A, B, _ = _lora(9)
    A_p, B_p = A.clone(), B.clone()
    A_p.grad, B_p.grad = torch.zeros_like(A), torch.zeros_like(B)  # no gradient: only the decay acts
    LoRAPro([(A_p, B_p, 2.0)], lr=0.1, weight_decay=0.5).step()
    torch.testing.assert_close(A_p, A * (1 - 0.05))
    torch.testing.assert_close(B_p, B * (1 - 0.05))
