"""ScaleZero's dynamic parameter scaling: capacity grows in stages, one new LoRA per stage.

Reference: opendilab/LightZero (ScaleZero, UniZero multitask), ``CurriculumLoRALinear``,
``LearnableScale`` and ``CurriculumController`` (../shared/specs/routing.md §13)::

    stage s:  y = α_0 W0 x + b + Σ_{j=1..s} α_j (α/r) B_j A_j x        (stage 0: y = W0 x + b)
    α = c + ρ tanh(θ), θ = 0 at start  ⇒  α ∈ (c − ρ, c + ρ); c = 1, ρ = 0.2

At stage s ≥ 1 only A_s, B_s, α_0 and α_j (j < s) train; W0, b, earlier adapters and α_s are
frozen. A new adapter starts with B = 0 (A ~ 0.01·N(0, 1)), so switching stages leaves the outputs
unchanged. ``run_stages`` trains such layers through the one training ``Loop``, the controller deciding
after each step. The controller switches when enough tasks were solved since the last switch, or after
``max_stage_iters``, never before ``min_stage0_iters`` in stage 0.

Deviation: a plain ``nn.Module`` wrapper around an ``nn.Linear`` (the authors wrap their own
transformer); the lab's LoraLayer has no scale on the base weight, which ScaleZero needs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from workbench.errors import WorkbenchError


class LearnableScale(nn.Module):
    """α = c + ρ·tanh(θ), bounded in (c − ρ, c + ρ); θ starts at 0 (α = c)."""

    def __init__(self, c: float = 1.0, rho: float = 0.2):
        super().__init__()
        self.c, self.rho = c, rho
        self.theta = nn.Parameter(torch.zeros(()))

    def forward(self) -> torch.Tensor:
        return self.c + self.rho * torch.tanh(self.theta)


class CurriculumLoRALinear(nn.Module):
    """An ``nn.Linear`` with ``stages − 1`` LoRA adapters activated one per stage."""

    def __init__(self, base: nn.Linear, *, r: int = 8, alpha: float = 16.0, stages: int = 3, seed: int = 0,
                 c: float = 1.0, rho: float = 0.2):
        super().__init__()
        if stages < 1:
            raise WorkbenchError(f"ScaleZero needs at least one stage (stage 0: the base); got {stages}")
        self.base, self.r, self.s, self.stage = base, r, alpha / r, 0
        g = torch.Generator().manual_seed(seed)
        self.A = nn.ParameterList([nn.Parameter(0.01 * torch.randn(r, base.in_features, generator=g))
                                   for _ in range(stages - 1)])  # (r, in) each
        self.B = nn.ParameterList([nn.Parameter(torch.zeros(base.out_features, r))
                                   for _ in range(stages - 1)])  # (out, r) each
        self.scales = nn.ModuleList([LearnableScale(c, rho) for _ in range(stages)])  # α_0 .. α_{S-1}
        self.set_stage(0)

    @property
    def stages(self) -> int:
        return len(self.scales)

    def set_stage(self, stage: int) -> None:
        """Enter ``stage``: set what trains (A_s, B_s, α_0, α_j<s) and freeze the rest."""
        if not 0 <= stage < self.stages:
            raise WorkbenchError(f"stage {stage} does not exist; this layer has stages 0..{self.stages - 1}")
        self.stage = stage
        for p in self.base.parameters():
            p.requires_grad_(stage == 0)
        for j in range(1, self.stages):
            active = j == stage
            self.A[j - 1].requires_grad_(active)
            self.B[j - 1].requires_grad_(active)
            self.scales[j].theta.requires_grad_(0 < j < stage)  # earlier adapters' scales
        self.scales[0].theta.requires_grad_(stage >= 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stage == 0:
            return self.base(x)
        y = self.scales[0]() * nn.functional.linear(x, self.base.weight)
        if self.base.bias is not None:
            y = y + self.base.bias
        for j in range(1, self.stage + 1):
            h = nn.functional.linear(x, self.A[j - 1])  # (..., r)
            y = y + self.scales[j]() * self.s * nn.functional.linear(h, self.B[j - 1])
        return y


class CurriculumController:
    """When to enter the next stage (``CurriculumController.step`` of the authors' code).

    Args:
        stages: total stages (stage 0 plus one per adapter).
        min_stage0_iters: never leave stage 0 before this many iterations.
        max_stage_iters: leave any stage after this many iterations in it.
    """

    def __init__(self, stages: int, *, min_stage0_iters: int, max_stage_iters: int):
        self.stages, self.min0, self.max_iters = stages, min_stage0_iters, max_stage_iters
        self.stage, self.iters_in_stage, self.solved_at_switch = 0, 0, 0

    def step(self, solved: int, unsolved: int) -> bool:
        """Count one iteration; True when the stage switches (``self.stage`` then moved on)."""
        self.iters_in_stage += 1
        if self.stage >= self.stages - 1:
            return False
        if self.stage == 0 and self.iters_in_stage < self.min0:
            return False
        remaining = self.stages - 1 - self.stage
        needed = math.ceil(unsolved / remaining) if remaining else math.inf
        if solved - self.solved_at_switch >= max(1, needed) or self.iters_in_stage >= self.max_iters:
            self.stage += 1
            self.iters_in_stage, self.solved_at_switch = 0, solved
            return True
        return False


def run_stages(loop, layers, controller: CurriculumController,
               judge: Callable[[object], tuple[int, int]]) -> list[int]:
    """Train through the one ``Loop``, entering the next stage whenever the controller says so.

    After every step ``judge(loop) -> (solved, unsolved)`` (tasks solved so far, tasks not yet)
    feeds ``controller``; on a switch every layer ``set_stage``s, so what trains changes from the
    next step on (the loop's optimizer holds every stage's parameters; those without a gradient
    are skipped). The loop's session must not set ``requires_grad`` itself (the layers decide).

    Returns:
        The step at which each stage began (``[0, ...]``).
    """
    starts = [0]
    for layer in layers:
        layer.set_stage(controller.stage)

    def after(loop, rows) -> None:
        if controller.step(*judge(loop)):
            for layer in layers:
                layer.set_stage(controller.stage)
            starts.append(loop.step_index)

    loop.callbacks.on_step(after)
    loop.run()
    return starts
