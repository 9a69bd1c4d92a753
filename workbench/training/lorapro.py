"""LoRA-Pro: adjust the LoRA gradients so the low-rank step best matches a full fine-tuning step.

Reference: Wang et al., "LoRA-Pro: Are Low-Rank Adapters Properly Optimized?", ICLR 2025; the steps
follow the authors' released code (``mrflogs/LoRA-Pro``, ``lorapro_full_adjustment``), see
../shared/specs/merging.md §7.

With G = ∂L/∂W, vanilla LoRA's gradients are ``G_A = s Bᵀ G`` and ``G_B = s G Aᵀ``. An update
(g_A, g_B) moves W like the *equivalent gradient* ``g̃ = s (B g_A + g_B A)``. The g̃ closest to G is
``P_B G + (I − P_B) G P_A`` (P_B, P_A: projections on B's columns and A's rows), reached by
``g_A = Q G_A / s²``, ``g_B = (I − B Q Bᵀ) G_B P / s²`` (Q = (BᵀB)⁻¹, P = (AAᵀ)⁻¹) plus ``(XA, −BX)``
for any r×r X; X is chosen to stay closest to vanilla LoRA's gradients, which gives the Sylvester
equation ``(BᵀB) X + X (AAᵀ) = −Q G_A Aᵀ / s²``. The optimizer keeps a full-size Adam state on the
equivalent gradient (memory O(out·in) per module, as the authors' code) and takes a plain SGD step.

Note: G itself is never available to a LoRA (only G_A, G_B are); every formula here uses G_A and
G_B only, and the tests check them against an explicit G.
"""

from __future__ import annotations

import torch

from workbench.training.optimizers import OPTIMIZERS, Pairs

DELTA = 1e-8


def solve_sylvester(P: torch.Tensor, R: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """X with ``P X + X R = C`` for symmetric positive semi-definite P, R (r, r), by eigendecomposition.

    With P = U diag(p) Uᵀ and R = V diag(q) Vᵀ: ``X = U ((Uᵀ C V) / (p_i + q_j)) Vᵀ`` (fp64 inside).
    """
    p, U = torch.linalg.eigh(P.double())
    q, V = torch.linalg.eigh(R.double())
    C2 = U.T @ C.double() @ V
    denom = p[:, None] + q[None, :]
    X = U @ (C2 / torch.where(denom.abs() > 1e-30, denom, torch.full_like(denom, 1e-30))) @ V.T
    return X.to(C.dtype)


def adjusted_gradients(A: torch.Tensor, B: torch.Tensor, s: float, G_A: torch.Tensor, G_B: torch.Tensor,
                       *, first: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """LoRA-Pro's (g_A, g_B) from the vanilla gradients (step 6 of the spec; ``first``: B = 0 step).

    Args:
        A: (r, in); B: (out, r); s: the scale; G_A: (r, in) and G_B: (out, r) the gradients
            (vanilla ones, or the ones mapped back from the Adam direction).
    """
    A, B, G_A, G_B = (t.double() for t in (A, B, G_A, G_B))
    r = A.shape[0]
    eye = torch.eye(r, dtype=A.dtype)
    P = torch.linalg.pinv(A @ A.T + DELTA * eye)  # (r, r)
    if first:
        return G_A, G_B @ P / s**2
    Q = torch.linalg.pinv(B.T @ B + DELTA * eye)  # (r, r)
    X = solve_sylvester(B.T @ B, A @ A.T, -Q @ G_A @ A.T / s**2)
    g_A = Q @ G_A / s**2 + X @ A
    g_B = (torch.eye(B.shape[0], dtype=B.dtype) - B @ Q @ B.T) @ G_B @ P / s**2 - B @ X
    return g_A, g_B


def equivalent_gradient(A: torch.Tensor, B: torch.Tensor, s: float, g_A: torch.Tensor,
                        g_B: torch.Tensor) -> torch.Tensor:
    """g̃ = s (B g_A + g_B A), (out, in): how the step (g_A, g_B) moves W."""
    return s * (B.double() @ g_A.double() + g_B.double() @ A.double())


class LoRAPro(torch.optim.Optimizer):
    """LoRA-Pro with its full-size Adam state on the equivalent gradient, then SGD on A and B.

    Per module and step: adjust (G_A, G_B), form ĝ = s(B g_A + g_B A), update Adam moments of ĝ,
    u = m̂/(√v̂ + ε), map back G'_A = s Bᵀu, G'_B = s u Aᵀ, adjust those again (with the Sylvester X),
    and take ``θ −= lr · g``. ``weight_decay`` is applied as decoupled decay on A and B.
    """

    def __init__(self, pairs: Pairs, *, lr: float, weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        params = [p for A, B, _ in pairs for p in (A, B)]
        super().__init__([{"params": params}], {"lr": lr, "weight_decay": weight_decay})
        self.pairs = list(pairs)
        self.betas, self.eps = betas, eps

    @torch.no_grad()
    def step(self, closure=None):
        lr = self.param_groups[0]["lr"]
        wd = self.param_groups[0]["weight_decay"]
        b1, b2 = self.betas
        for A, B, s in self.pairs:
            if A.grad is None or B.grad is None:
                continue
            st = self.state[A]
            first = not bool((B != 0).any())
            g_A, g_B = adjusted_gradients(A, B, s, A.grad, B.grad, first=first)
            g = equivalent_gradient(A, B, s, g_A, g_B)  # (out, in)
            if not st:
                st["t"], st["m"], st["v"] = 0, torch.zeros_like(g), torch.zeros_like(g)
            st["t"] += 1
            st["m"].mul_(b1).add_(g, alpha=1 - b1)
            st["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
            m_hat = st["m"] / (1 - b1 ** st["t"])
            v_hat = st["v"] / (1 - b2 ** st["t"])
            u = m_hat / (v_hat.sqrt() + self.eps)
            GA2, GB2 = s * B.double().T @ u, s * u @ A.double().T
            f_A, f_B = adjusted_gradients(A, B, s, GA2, GB2, first=first)
            if wd:
                A.mul_(1 - lr * wd)
                B.mul_(1 - lr * wd)
            A.sub_(lr * f_A.to(A.dtype))
            B.sub_(lr * f_B.to(B.dtype))


@OPTIMIZERS.register("lorapro", flags=("needs_pairs",), bounds={"eps": (0.0, 1.0)})
def lorapro(params, pairs: Pairs, *, lr: float, weight_decay: float = 0.0,
            betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> LoRAPro:
    """LoRA-Pro (see ``LoRAPro``); memory O(out·in) per module for the Adam state.

    Reference: Wang et al., "LoRA-Pro: Are Low-Rank Adapters Properly Optimized?", ICLR 2025.

    Args:
        betas: Adam's moment decay rates (β1, β2) of the equivalent-gradient state.
        eps: Adam's ε in the denominator of the equivalent-gradient step.
    """
    return LoRAPro(pairs, lr=lr, weight_decay=weight_decay, betas=betas, eps=eps)
