"""task_arithmetic: the exact weighted sum Σᵢ wᵢ·ΔWᵢ, factored by the QR + small-core SVD.

Default rank Σrᵢ: exact (error ~1e-7, rounding). A smaller ``rank`` keeps the best rank-``rank``
approximation (then it equals ``svd``). ``peft_compat=True`` is peft's ``combination_type="linear"``:
A' = Σ sign(wᵢsᵢ)√|wᵢsᵢ|·Aᵢ and B' = Σ √|wᵢsᵢ|·Bᵢ, whose product carries the cross terms BᵢAⱼ (i ≠ j)
and is not the weighted sum (peft issue #3004); it needs equal ranks.

Reference: Ilharco et al., "Editing Models with Task Arithmetic", ICLR 2023.
"""

from __future__ import annotations

import torch

from workbench.merging.base import MERGES, PEFT_COMPAT, RANK, MergeMethod
from workbench.merging.inputs import _peft_factor_space, run_factored
from workbench.ops.lowrank import factored_svd, stack, truncate
from workbench.ops.sparsify import weighted_sum_


def task_arithmetic(parts: list[tuple[torch.Tensor, torch.Tensor]], weights: list[float], *,
                    rank: int | None = None, peft_compat: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact weighted sum Σᵢ wᵢΔWᵢ (rank Σrᵢ by default; a smaller rank truncates by SVD)."""
    U, S, Vh = factored_svd(*stack(parts, weights))  # (out, k), (k,), (k, in)
    return truncate(U, S, Vh, rank)


def _run(inputs, params: dict):
    if not params["peft_compat"]:
        return run_factored(inputs, task_arithmetic, {"rank": params["rank"]}, rank_default="sum",
                            stochastic=False)
    return {path: _peft_factor_space(inputs, path, _linear, {}, []) for path in inputs.paths}


def _linear(stack_: torch.Tensor, weights: torch.Tensor, *, generators, peft_compat) -> torch.Tensor:
    return weighted_sum_(stack_, weights)  # peft's merge_utils.task_arithmetic


MERGES.register("task_arithmetic", source=task_arithmetic, params=[RANK, PEFT_COMPAT],
                flags=("factored", "peft_equivalent"))(MergeMethod(name="task_arithmetic", run=_run))
