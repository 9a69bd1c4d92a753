"""CAGrad: the update that best improves the worst task inside a ball around the average gradient.

Reference: Liu et al., "Conflict-Averse Gradient Descent for Multi-task Learning", NeurIPS 2021.

    max_d  min_i  g_iᵀ d     subject to  ‖d − g0‖ ≤ c ‖g0‖,   g0 = mean_i g_i

Its dual is ``min_{w ∈ simplex} g_wᵀ g0 + √φ ‖g_w‖`` with ``g_w = Σ w_i g_i`` and ``φ = c²‖g0‖²``;
the primal solution is ``d = g0 + (√φ / ‖g_w‖) g_w``. The dual lives in T dimensions and only needs
the (T, T) Gram matrix, so it is solved here in float64 by projected gradient descent on the simplex
(the authors' code calls scipy's SLSQP on the same problem). The update is ``T · d / (1 + c²)``
(LibMTL's ``rescale=1``, times T so that it has the scale of the summed gradient like the others).
"""

from __future__ import annotations

import torch

from workbench.training.grad_method import GRAD_METHODS, GradMethod


@GRAD_METHODS.register("cagrad", flags=("per_task_gradients",), bounds={"c": (0.0, None), "iters": (1, None)})
class CAGrad(GradMethod):
    """The update that best improves the worst task inside a ball of radius c‖g0‖ around the mean gradient.

    Args:
        c: radius of the ball, relative to ‖g0‖ (paper: 0.4 or 0.5). c = 0 gives the average gradient.
        iters: at most this many projected-gradient iterations on the (T,) dual weights.
    """

    def __init__(self, c: float = 0.5, iters: int = 300, seed: int = 0):
        super().__init__(seed)
        self.c = c
        self.iters = iters

    def weights(self, gram: torch.Tensor) -> torch.Tensor:
        """The dual weights w (T,) on the simplex, from the (T, T) Gram matrix of the gradients.

        Projected gradient descent with a backtracking (Armijo) step: the dual is convex and only
        T-dimensional, so a few hundred cheap iterations reach the optimum.
        """
        T = gram.shape[0]
        gram = gram.to(torch.float64)
        b = gram.mean(1)  # (T,) g_iᵀ g0
        sqrt_phi = self.c * b.mean().clamp(min=0).sqrt()

        def objective(w: torch.Tensor) -> torch.Tensor:
            return w @ b + sqrt_phi * (w @ gram @ w).clamp(min=0).sqrt()

        w = torch.full((T,), 1.0 / T, dtype=torch.float64)
        step = 1.0 / float(gram.abs().max().clamp(min=1e-30))
        f = objective(w)
        for _ in range(self.iters):
            gw = (w @ gram @ w).clamp(min=1e-30).sqrt()
            grad = b + sqrt_phi * (gram @ w) / gw  # ∂F/∂w
            while True:
                trial = _project_simplex(w - step * grad)
                f_trial = objective(trial)
                if f_trial <= f + grad @ (trial - w) + (trial - w).pow(2).sum() / (2 * step) or step < 1e-30:
                    break
                step /= 2
            if (trial - w).abs().max() < 1e-12:
                break
            w, f, step = trial, f_trial, step * 1.5
        return w

    def direction(self, grads: torch.Tensor) -> torch.Tensor:
        """d (D,) before rescaling: ``g0 + (√φ/‖g_w‖) g_w``."""
        g = grads.to(torch.float64)
        gram = g @ g.T  # (T, T)
        w = self.weights(gram)
        g0 = g.mean(0)
        gw = w @ g
        gw_norm = gw.norm()
        if gw_norm == 0:
            return g0.to(grads.dtype)
        sqrt_phi = self.c * g0.norm()
        return (g0 + (sqrt_phi / gw_norm) * gw).to(grads.dtype)

    def combine(self, grads: torch.Tensor) -> torch.Tensor:
        return grads.shape[0] * self.direction(grads) / (1 + self.c**2)  # (D,)


def _project_simplex(v: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of v (T,) onto the probability simplex (sort-based)."""
    u, _ = torch.sort(v, descending=True)
    css = u.cumsum(0) - 1
    k = torch.arange(1, len(v) + 1, dtype=v.dtype)
    rho = int((u - css / k > 0).nonzero().max())
    return (v - css[rho] / (rho + 1)).clamp(min=0)
