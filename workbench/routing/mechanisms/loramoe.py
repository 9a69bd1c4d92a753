"""LoRAMoE: a dense (soft) mixture of LoRA experts in each FFN linear, with a localized balance.

Per wrapped Linear, x (B, T, n):

    ω = softmax(W_r x)   (B, T, E), every expert on every token (no top-k)
    Δ = s Σ_e ω_e B_e A_e dropout(x),   s = α/r

Localized balancing constraint (LBC, training forwards with β > 0): the experts are split into groups,
one per data type (``groups[t]`` are the experts of type t; default halves, the first half for type 1
and the second for type 0, as the code). Each sample's type comes from the routing context's ``task``
(B,), mapped through ``type_of_task`` when given. Then

    I = Σ_t ω   (B, E), over all positions, padding included (as the code)
    C[b, e] = 1 + δ if e ∈ groups[type_b] else 1 − δ;   Z = (I ⊙ C).flatten()
    L_lbc = β · Var(Z) / Mean(Z)²   (CV², unbiased variance, as the code; the paper writes σ²(Z)/μ(Z))

summed over every wrapped module. Record: scores = weights = ω (dense, no selection). One dropout mask
is shared by the experts (the code draws one per expert; the same in expectation). The update depends on
the input through ω, so it cannot be merged into W0 exactly.

Reference: Dou et al., "LoRAMoE: Alleviate World Knowledge Forgetting in Large Language Models via
MoE-Style Plugin" (arXiv 2312.09979, ACL'24); code github Ablustrund/LoRAMoE @1177288 peft/tuners/lora.py
(Linear.forward, cv_squared), run_loramoe.sh. Defaults from the code's script: E=8 (lora_nums), r=4, α=32,
dropout 0.05, targets gate/up/down, δ = β = 0 (blc_alpha, blc_weight; the public demo switches the LBC
off). ⚠ Paper settings (not verified): E=6, r=4, δ=0.1, β=0.1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from workbench.errors import WorkbenchError
from workbench.routing.base import INIT_NAMES, ROUTERS, Router
from workbench.routing.context import context_value
from workbench.routing.factors import expert_factors, linear_weight, mixture_delta
from workbench.routing.losses import AUX_LOSSES


@ROUTERS.register("loramoe", flags=("exportable", "needs_task_labels"),
                  bounds={"experts": (1, None), "r": (1, None), "alpha": (0.0, None), "dropout": (0.0, 1.0),
                          "blc_alpha": (0.0, 1.0), "blc_weight": (0.0, None)},
                  choices={"init": INIT_NAMES})
class LoRAMoE(Router):
    """LoRAMoE: a dense softmax mixture of LoRA experts in each FFN linear, with a localized balance loss.

    Args:
        experts: number of LoRA experts E (every one active on every token).
        r: rank of each LoRA expert.
        alpha: the LoRA scale numerator: s = α / r.
        dropout: dropout probability on the LoRA branch's input.
        blc_alpha: δ, how much the balance favours a sample's own expert group (C = 1 ± δ).
        blc_weight: β, the coefficient of the localized balancing loss (0: off, no task labels needed).
        groups: the experts of each data type (default: halves, as the code).
        type_of_task: maps the routing context's task id to a data type (default: identity).
        init: how the factors start (``workbench.adapters.INITS``): ``"lora"`` B = 0, ``"random"`` B ≠ 0.
    """

    default_targets = "mlp"
    reference = "LoRAMoE, arXiv 2312.09979; github Ablustrund/LoRAMoE @1177288 peft/tuners/lora.py"

    def __init__(self, in_features: int, out_features: int, *, generator: torch.Generator, experts: int = 8,
                 r: int = 4, alpha: float = 32.0, dropout: float = 0.05, blc_alpha: float = 0.0,
                 blc_weight: float = 0.0, groups: list[list[int]] | None = None,
                 type_of_task: dict[int, int] | None = None, init: str = "lora"):
        super().__init__()
        self.experts, self.scaling, self.dropout = experts, alpha / r, dropout
        self.blc_alpha, self.blc_weight = blc_alpha, blc_weight
        self.type_of_task = None if type_of_task is None else {int(t): int(v)
                                                               for t, v in type_of_task.items()}
        if groups is None:  # type 1 <-> first half, type 0 <-> second half (as the code)
            groups = [list(range(experts // 2, experts)), list(range(experts // 2))]
        bad = sorted({e for g in groups for e in g if not 0 <= e < experts})
        if bad:
            raise WorkbenchError(f"LoRAMoE groups name experts {bad}, but there are {experts} "
                                 f"(0..{experts - 1})")
        member = torch.zeros(len(groups), experts, dtype=torch.bool)  # (types, E): e ∈ groups[t]
        for t, g in enumerate(groups):
            member[t, g] = True
        self.register_buffer("member", member, persistent=False)
        self.A, self.B = expert_factors(experts, in_features, out_features, r, init=init, generator=generator)
        self.router = linear_weight(experts, in_features, generator)  # W_r (E, in)

    def forward(self, x: torch.Tensor, base: nn.Module) -> torch.Tensor:
        omega = F.linear(x.float(), self.router.float()).softmax(-1)  # (B, T, E), fp32 as the code
        z = F.dropout(x, self.dropout, self.training) if self.dropout else x
        delta = mixture_delta(z, self.A, self.B, self.scaling * omega)
        if self.training and self.blc_weight:
            own = self.member[self._types(x.shape[0])]  # (B, E): e in the group of the sample's type
            coef = torch.where(own, 1.0 + self.blc_alpha, 1.0 - self.blc_alpha)
            self.add_aux("loramoe_lbc", self.blc_weight, z=(omega.sum(1) * coef).flatten())
        self.emit(omega, omega)
        return delta

    def _types(self, batch: int) -> torch.Tensor:
        """(B,) the data type of each sample (the context's ``task``, through ``type_of_task``)."""
        task = context_value("task", needed_by="LoRAMoE's localized balancing constraint (blc_weight > 0)")
        task = torch.as_tensor(task, device=self.member.device).reshape(-1)
        if task.numel() != batch:
            raise WorkbenchError(f"LoRAMoE: the routing context's task has {task.numel()} entries for a "
                                 f"batch of {batch}; give one task index per sample")
        if self.type_of_task is not None:
            unknown = sorted({int(t) for t in task} - self.type_of_task.keys())
            if unknown:
                raise WorkbenchError(f"LoRAMoE: tasks {unknown} are missing from type_of_task "
                                     f"{self.type_of_task}; map every task to a data type")
            task = torch.tensor([self.type_of_task[int(t)] for t in task], device=task.device)
        if int(task.min()) < 0 or int(task.max()) >= len(self.member):
            raise WorkbenchError(
                f"LoRAMoE: data types {sorted(set(task.tolist()))} but only {len(self.member)} expert "
                "groups; pass groups=[[experts of type 0], [experts of type 1], ...] "
                "or type_of_task={task: type}"
            )
        return task.long()


@AUX_LOSSES.register("loramoe_lbc")
def localized_balance(payloads: list[dict]) -> torch.Tensor:
    """Σ over modules of CV²(Z) = Var(Z)/Mean(Z)² (unbiased variance, as LoRAMoE's ``cv_squared``).

    Payload: ``z`` (B·E,) the type-weighted importance of one module.
    """
    return sum(_cv_squared(p["z"]) for p in payloads)


def _cv_squared(z: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    z = z.float()
    return z.var() / (z.mean() ** 2 + eps) if z.numel() > 1 else z.sum() * 0
