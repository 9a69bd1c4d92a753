"""Arrow: training-free routing over a library of the lab's LoRAs, by each adapter's SVD prototype.

Per routed module, for each adapter e of the bank (``bank=[names]``), the prototype p_e is the top
right singular vector of its update ΔW_e = s_e·B_e·A_e (a unit vector in the input space, sign
arbitrary). Per token x (…, in):

    sim_e = |⟨x, p_e⟩|                 (…, E)   sign-agnostic
    S = top-k of sim;  w = softmax(sim_S / T) over S, 0 elsewhere
    Δ(x) = Σ_e w_e · s_e · B_e A_e x

No parameter trains: the prototypes are computed when the router is built (from the lab's adapters,
copied; the lab's adapters are never touched). The decision is recorded as a RoutingRecord
(scores = sim, weights = w, selected = the top-k indices); ``routing.freeze`` turns it into one
static adapter at the average weights.

Deviations from peft's ``ArrowLoraLinearLayer``: the prototype is the exact top right singular vector
(float64, from the factors: QR of Aᵀ and the SVD of the small B·Rᵀ), where peft runs 15 power
iterations from a random start in float32; on updates with a spectral gap both agree up to sign,
which |·| ignores (tested against peft). Adapters of different ranks are allowed (peft requires one
rank). peft's GenKnowSub (subtracting the mean of general adapters) is not included; merge it first
(``lab.merge([task, general], "task_arithmetic", [1, -1])``) if wanted. Dropout: none (peft applies
the router's LoRA dropout, 0 by default).

Reference: Ostapenko et al., "Towards Modular LLMs by Building and Reusing a Library of LoRAs", ICML
2024 (arXiv 2405.11157), Arrow routing; peft ``tuners/lora/arrow.py`` (``ArrowLoraLinearLayer``:
top_k 3, router_temperature 1.0).
"""

from __future__ import annotations

import torch
from torch import nn

from workbench.errors import WorkbenchError
from workbench.routing.bank import plain_bank
from workbench.routing.base import ROUTERS, Router
from workbench.routing.factors import mixture_delta
from workbench.routing.gates import check_k, topk_dense


def prototype(A: torch.Tensor, sB: torch.Tensor) -> torch.Tensor:
    """The top right singular vector (in,) of sB·A (float64), without forming the product."""
    Q, R = torch.linalg.qr(A.double().T)  # Aᵀ = Q R: (in, r), (r, r)
    _, _, Vh = torch.linalg.svd(sB.double() @ R.T, full_matrices=False)  # sB·A = (sB Rᵀ) Qᵀ
    return Q @ Vh[0]


def library(lab, bank) -> list:
    """The lab's adapters named in ``bank``: known, distinct, plain LoRA."""
    return plain_bank(lab, bank, "arrow bank")


@ROUTERS.register("arrow", flags=("bank", "freezable"),
                  bounds={"top_k": (1, None), "temperature": (0.0, None)})
class Arrow(Router):
    """Arrow: per token, the top-k library adapters by |⟨x, SVD prototype⟩|, softmax-weighted; no training.

    Args:
        bank: names of the lab's adapters (the library) it routes over.
        top_k: adapters combined per token (peft's default 3; at most the library's size).
        temperature: softmax temperature over the selected similarities (peft's router_temperature).
    """

    default_targets = "all-linear"
    reference = ("Ostapenko et al., Towards Modular LLMs by Building and Reusing a Library of LoRAs, "
                 "ICML 2024 (arXiv 2405.11157); peft tuners/lora/arrow.py")

    def __init__(self, in_features: int, out_features: int, *, generator: torch.Generator, bank: list[str],
                 factors: list[tuple[torch.Tensor, torch.Tensor, float]], top_k: int = 3,
                 temperature: float = 1.0):
        super().__init__()
        self.bank = list(bank)
        n = len(factors)
        self.k = check_k(top_k, n, "adapters in the Arrow library")
        if not temperature > 0:
            raise WorkbenchError(f"arrow: temperature={temperature!r} must be > 0")
        self.T = float(temperature)
        self.ranks = [A.shape[0] for A, _, _ in factors]
        r_max = max(self.ranks)
        A = torch.zeros(n, r_max, in_features)
        B = torch.zeros(n, out_features, r_max)
        for j, (a, b, _) in enumerate(factors):
            A[j, : a.shape[0]] = a.detach().float()
            B[j, :, : b.shape[1]] = b.detach().float()
        # rebuilt from the lab's adapters (bank), so not part of the saved state
        self.register_buffer("A", A, persistent=False)  # (E, r_max, in)
        self.register_buffer("B", B, persistent=False)  # (E, out, r_max)
        self.register_buffer("scales", torch.tensor([s for _, _, s in factors], dtype=torch.float32),
                             persistent=False)  # (E,)
        # detached: from the lab's Parameters a prototype would hold their graph (gradients into the library;
        # a 2nd backward through a freed graph). Reference: peft's build_prototypes is @torch.no_grad().
        self.register_buffer("prototypes", torch.stack([prototype(a.detach(), s * b.detach())
                                                        for a, b, s in factors]).float(),
                             persistent=False)  # (E, in)

    @classmethod
    def build(cls, *, path: str, module: nn.Module, lab, generator: torch.Generator,
              bank: list[str] | None = None, **params) -> Arrow:
        adapters = library(lab, bank)
        lacking = [a.name for a in adapters if path not in a.modules]
        if lacking:
            raise WorkbenchError(f"arrow: adapters {lacking} have no factors at {path!r}; route only modules "
                                 "every library adapter covers (targets=Arrow.targets_for(lab, bank=...))")
        factors = [(a.modules[path].A, a.modules[path].B, a.scale(path)) for a in adapters]
        return cls(module.in_features, module.out_features, generator=generator,
                   bank=[a.name for a in adapters], factors=factors, **params)

    @classmethod
    def targets_for(cls, lab, *, bank: list[str], **_) -> list[str]:
        """The modules every adapter of the library covers (what Arrow routes by default)."""
        adapters = library(lab, bank)
        return [p for p in adapters[0].modules if all(p in a.modules for a in adapters[1:])]

    def bank_factors(self) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
        """(A_j (r_j, in), B_j (out, r_j), s_j) of each library adapter, unpadded (used by ``freeze``)."""
        return [(self.A[j, :r].detach(), self.B[j, :, :r].detach(), float(self.scales[j]))
                for j, r in enumerate(self.ranks)]

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(similarities |⟨x, p_e⟩| (…, E), dense weights (…, E), selected (…, k))."""
        sim = (x.float() @ self.prototypes.T).abs()  # (…, E)
        idx, weights = topk_dense(sim, self.k, lambda top: (top / self.T).softmax(-1))
        return sim, weights, idx

    def forward(self, x: torch.Tensor, base: nn.Module) -> torch.Tensor:
        sim, weights, idx = self.gates(x)
        delta = mixture_delta(x, self.A, self.B, weights * self.scales)  # (…, out)
        self.emit(sim, weights, idx)
        return delta.to(x.dtype)

    def extra_repr(self) -> str:
        return f"bank={self.bank}, ranks={self.ranks}, top_k={self.k}, T={self.T}"
