"""ScaleZero's staged adapters on the lab: tasks taken one after another, one new LoRA per stage.

    run = train_staged(lab, "sz", [task_a, task_b], r=4, stage_steps=8)   # through the one Loop
    run.starts          # the step at which each stage began
    lab.use(run.names)  # every stage's adapter, with its learned bounded scales (hooks stay on)
    run.remove()        # the hooks and the stage adapters leave the lab

Stage s ≥ 1 of a wrapped module computes (``workbench.training.scalezero`` has the plain-module form)::

    y = α_0 W0 x + b + Σ_{j=1..s} α_j s_j B_j A_j x,     α = c + ρ tanh(θ) ∈ (c − ρ, c + ρ)

with one lab adapter ``<name>_<j>`` per stage and per-module bounded scales: ``α_0`` through a forward
hook on the base layer, ``α_j`` through a forward hook on ``hook_rank.<name>_<j>`` (the rank activations
``A_j x``, so it multiplies that adapter's whole output). At stage s only ``A_s, B_s, θ_0`` and ``θ_j``
(0 < j < s) train; earlier adapters and ``θ_s`` are frozen. Stage 0 of ScaleZero trains the backbone;
here the backbone is the pretrained model, so the run starts at stage 1 (task 1). The source draws the
current stage's task only (a task-incremental curriculum: task s is trained in stage s); the authors'
``CurriculumController`` switches stages when the task is solved (its recent training loss under
``solve_loss``) or after ``stage_steps``; a solved task leaves training.

Reference: opendilab/LightZero (ScaleZero, "One Model for All Tasks", arXiv 2509.02722),
``CurriculumLoRALinear``, ``LearnableScale``, ``CurriculumController`` (../shared/specs/routing.md §13).
Deviations: the lab's adapters (peft's LoRA init: A Kaiming-uniform, B = 0) instead of A ~ 0.01·N(0, 1);
no stage 0 (the backbone is pretrained); tasks arrive one per stage (the authors train the pool of
unsolved tasks together); "solved" is a training-loss threshold (the authors: an evaluation return).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import nn

from workbench.errors import WorkbenchError
from workbench.training.loop import Loop
from workbench.training.objectives import TokenLoss
from workbench.training.scalezero import CurriculumController, LearnableScale, run_stages


class StagedAdapters:
    """One lab adapter per stage on ``targets``, with ScaleZero's bounded per-module scales.

    Args:
        lab: the Workbench.
        name: the stem; the adapters are ``<name>_1 .. <name>_<stages-1>``.
        stages: stage 0 (the base) plus one per adapter.
        c, rho: the scales' centre and half-width (α ∈ (c − ρ, c + ρ)).
    """

    def __init__(self, lab, name: str, *, stages: int, targets: str | list[str] = "attention", r: int = 8,
                 alpha: float | None = None, seed: int = 0, c: float = 1.0, rho: float = 0.2):
        if stages < 2:
            raise WorkbenchError(f"staged adapters need at least 2 stages (the base and one adapter); "
                                 f"got {stages}")
        self.lab, self.stage = lab, 0
        self.names = [f"{name}_{j}" for j in range(1, stages)]
        taken = [n for n in self.names if n in lab.adapters]
        if taken:
            raise WorkbenchError(f"the lab already has adapters {taken}; pick another stem than {name!r}")
        for j, n in enumerate(self.names):
            lab.new_adapter(n, r=r, alpha=alpha, targets=targets, seed=seed + j)
        self.paths = list(lab.adapters[self.names[0]].modules)
        self.scales = nn.ModuleDict({p.replace(".", "/"): nn.ModuleList(LearnableScale(c, rho)
                                                                         for _ in range(stages))
                                     for p in self.paths})  # path -> α_0 .. α_{S-1}
        self._handles = []
        for p in self.paths:
            layer, scales = lab.layers[p], self.scales[p.replace(".", "/")]
            self._handles.append(layer.base_layer.register_forward_hook(self._base_hook(layer, scales[0])))
            for j, n in enumerate(self.names, start=1):
                self._handles.append(layer.hook_rank[n].register_forward_hook(_times(scales[j])))
        self.set_stage(0)

    @property
    def stages(self) -> int:
        return len(self.names) + 1

    def _base_hook(self, layer, scale: LearnableScale):
        def hook(module, inputs, out):
            if self.stage == 0:
                return out
            bias = getattr(module, "bias", None)
            return scale() * out if bias is None else scale() * (out - bias) + bias  # α_0 W0 x + b
        return hook

    def factors(self, j: int) -> list[nn.Parameter]:
        """A_j, B_j of every module (j ≥ 1)."""
        layers, n = self.lab.layers, self.names[j - 1]
        return [t for p in self.paths for t in (layers[p].lora_A[n], layers[p].lora_B[n])]

    def thetas(self, j: int) -> list[nn.Parameter]:
        """θ_j of every module."""
        return [s[j].theta for s in self.scales.values()]

    def parameters(self) -> list[nn.Parameter]:
        """Everything any stage trains (the loop's optimizer holds them all)."""
        return [t for j in range(1, self.stages) for t in self.factors(j)] + \
            [t for j in range(self.stages) for t in self.thetas(j)]

    def set_stage(self, stage: int) -> None:
        """Enter ``stage``: A_s, B_s, θ_0 and θ_j (0 < j < s) train; the rest is frozen."""
        if not 0 <= stage < self.stages:
            raise WorkbenchError(f"stage {stage} does not exist; these adapters have stages "
                                 f"0..{self.stages - 1}")
        self.stage = stage
        for j in range(1, self.stages):
            for t in self.factors(j):
                t.requires_grad_(j == stage)
            for t in self.thetas(j):
                t.requires_grad_(0 < j < stage)
        for t in self.thetas(0):
            t.requires_grad_(stage >= 1)

    def scale_frame(self) -> pd.DataFrame:
        """``module, scale, value``: every α (scale 0 multiplies the base weight)."""
        return pd.DataFrame([{"module": p.replace("/", "."), "scale": j, "value": float(s())}
                             for p, ss in self.scales.items() for j, s in enumerate(ss)])

    def freeze(self) -> None:
        """Nothing trains (after the run)."""
        for t in self.parameters():
            t.requires_grad_(False)

    def remove(self) -> None:
        """Take the hooks off and remove the stage adapters from the lab."""
        for h in self._handles:
            h.remove()
        self._handles = []
        for n in self.names:
            if n in self.lab.adapters:
                self.lab.remove_adapter(n)


def _times(scale: LearnableScale):
    return lambda module, inputs, out: out * scale()


class StageSource:
    """Batches of the current stage's task only (task ``stage − 1``), each task in its own seeded order."""

    def __init__(self, features: Sequence[Sequence[dict]], stage: Callable[[], int], seed: int):
        self.features, self.stage = [list(f) for f in features], stage
        self.n_tasks = len(self.features)
        self.generators = [torch.Generator().manual_seed(seed * 1_000 + t) for t in range(self.n_tasks)]
        self.orders: list[list[int]] = [[] for _ in self.features]

    def draw(self, n: int) -> list[tuple[int, dict]]:
        t = min(max(self.stage(), 1), self.n_tasks) - 1
        order = self.orders[t]
        while len(order) < n:
            order += torch.randperm(len(self.features[t]), generator=self.generators[t]).tolist()
        idx, self.orders[t] = order[:n], order[n:]
        return [(t, self.features[t][i]) for i in idx]


@dataclass
class StagedRun:
    """What ``train_staged`` did: the stage starts, the history, the stage ends' callbacks' output."""

    names: list[str]
    starts: list[int]
    history: pd.DataFrame  # step, loss, lr (each step trains one task: the stage's)
    solved_at: dict[int, int] = field(default_factory=dict)  # task -> step it was solved
    staged: StagedAdapters | None = None

    def remove(self) -> None:
        if self.staged is not None:
            self.staged.remove()


def train_staged(lab, name: str, tasks, *, r: int = 8, alpha: float | None = None,
                 targets: str | list[str] = "attention", stage_steps: int = 20, solve_loss: float = 0.1,
                 lr: float = 2e-3, batch_size: int = 8, seed: int = 0, plain: bool = False,
                 on_stage_end: Callable[[int, Loop], None] | None = None, c: float = 1.0, rho: float = 0.2,
                 progress: bool = False) -> StagedRun:
    """Train ``tasks`` one after another through the one ``Loop``, ScaleZero's controller deciding.

    Args:
        tasks: Tasks (or encoded feature lists), in the order they arrive; stage s trains task s.
        stage_steps: the controller's ``max_stage_iters``; the run has ``len(tasks) · stage_steps`` steps
            (a task solved early leaves the spare steps to the last stage).
        solve_loss: a task is solved when its mean training loss over its last two steps is below this.
        plain: the baseline: ONE plain lab adapter ``name`` (rank ``r``) trained through the same stages
            (same source, controller and steps), nothing frozen.
        on_stage_end: ``fn(stage, loop)`` called when a stage ends (before the next one trains) and at
            the end of the run (to score the tasks as they stand).

    Returns:
        A ``StagedRun``; the adapters stay in the lab (``run.remove()`` takes them out).
    """
    from workbench.training.fitting import encode_tasks

    feats = [list(t) if isinstance(t, list) else encode_tasks(lab, [t]) for t in tasks]
    n_tasks = len(feats)
    if n_tasks < 1 or stage_steps < 1:
        raise WorkbenchError(f"train_staged needs tasks and stage_steps ≥ 1; got {n_tasks} tasks, "
                             f"stage_steps={stage_steps}")
    controller = CurriculumController(n_tasks + 1, min_stage0_iters=0, max_stage_iters=stage_steps)
    controller.stage = 1  # stage 0 (training the backbone) is the pretraining
    if plain:
        adapter = lab.new_adapter(name, r=r, alpha=alpha, targets=targets, seed=seed)
        params = [t for f in adapter.modules.values() for t in (f.A, f.B)]
        names, staged, layers = [name], None, []
        session = lambda: lab.session(name, train=True, trainable=params)  # noqa: E731
    else:
        staged = StagedAdapters(lab, name, stages=n_tasks + 1, targets=targets, r=r, alpha=alpha, seed=seed,
                                c=c, rho=rho)
        params, names, layers = staged.parameters(), staged.names, [staged]
        session = lambda: lab.session(staged.names, train=True)  # noqa: E731  (the stages set requires_grad)
    source = StageSource(feats, lambda: controller.stage, seed)
    loop = Loop(params, TokenLoss(lab), source, session=session, label=name, steps=n_tasks * stage_steps,
                lr=lr, batch_size=batch_size, seed=seed, reseed="step", progress=progress)
    solved: dict[int, int] = {}

    def judge(lp) -> tuple[int, int]:
        t = controller.stage - 1  # this step trained task t (the controller counts it next)
        recent = [r["loss"] for r in lp.rows[-2:]]
        if t not in solved and controller.iters_in_stage >= 1 and sum(recent) / 2 < solve_loss:
            solved[t] = lp.step_index
        return len(solved), n_tasks - len(solved)

    class _Scoring:  # the controller, telling ``on_stage_end`` before the next stage trains
        @property
        def stage(self) -> int:
            return controller.stage

        def step(self, *args) -> bool:
            before = controller.stage
            switched = controller.step(*args)
            if switched and on_stage_end is not None:
                on_stage_end(before, loop)
            return switched

    if on_stage_end is not None:
        loop.callbacks.on_finish(lambda lp: on_stage_end(controller.stage, lp))
    try:
        starts = run_stages(loop, layers, _Scoring(), judge)
    finally:
        if staged is not None:
            staged.freeze()
    return StagedRun(names, starts, loop.history(), solved, staged)
