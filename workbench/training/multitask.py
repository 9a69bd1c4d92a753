"""Multi-task training of one adapter (or one router) on several tasks, with gradient-conflict capture.

    trainer = MultiTaskTrainer(lab, "joint", [topic, language, arithmetic], method="pcgrad",
                               capture_every=5, steps=60)
    result = trainer.run()                   # or trainer.step(10) again and again (a live widget)
    result.conflicts.cosines(by="layer")     # tidy: step, layer, task, task_b, value

A front over the one ``Loop``: batches drawn task by task (``SAMPLINGS``, a seeded permutation per
task), the per-example weighted token loss (``LOSS_WEIGHTINGS``), per-task gradients on a capture step
or for a method that declares ``per_task_gradients`` (``GRAD_METHODS``), any ``OPTIMIZERS`` entry, a
``VARIANTS`` entry. When ``name`` is a router of the lab, its trainable parameters train, in the
routing context, with its auxiliary losses: PCGrad on a mixture of experts. Same seed, same result.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch

from workbench.adapters import Adapter
from workbench.errors import WorkbenchError
from workbench.training.capture import ConflictCapture
from workbench.training.checkpoint import adapter_checkpoint
from workbench.training.loop import Loop
from workbench.training.methods import GRAD_METHODS
from workbench.training.objectives import ExampleLoss
from workbench.training.optimizers import OPTIMIZERS
from workbench.training.sampling import SAMPLINGS
from workbench.training.sources import ByTask
from workbench.training.validate import check_training
from workbench.training.variants import resolve
from workbench.training.weighting import LOSS_WEIGHTINGS


@dataclass
class MultiTaskResult:
    """What a multi-task run leaves: the adapter (in the lab), its history, conflicts, checkpoints.

    Attributes:
        adapter: the trained adapter (or the ``Routed`` when a router trained).
        history: one row per step and task: ``step, task, loss, n, lr`` (task ``"total"``: the loss
            that was minimized; with a router also ``aux`` and ``aux/<router>/<loss>``).
        conflicts: the gradient-conflict capture (None when ``capture_every=0``).
        checkpoints: copies of the adapter along training (not in the lab), with lineage
            ``step, tasks, seed, checkpoint_of`` (none for a router).
    """

    adapter: Adapter
    history: pd.DataFrame
    conflicts: ConflictCapture | None
    checkpoints: list[Adapter] = field(default_factory=list)

    def __iter__(self):
        return iter((self.adapter, self.history))


class MultiTaskTrainer:
    """Trains one adapter (or router) on several tasks at once; drive it with ``run()`` or ``step(n)``.

    Args:
        lab: the Workbench.
        name: what trains: a router of the lab (its trainable parameters), an adapter the lab holds,
            or else a new adapter (``r, alpha, targets`` and the variant's ``init, scaling``).
        tasks: a list of Tasks, or a mapping name -> Task or name -> encoded features (dicts with
            ``input_ids`` and ``labels``, as ``workbench.tasks.encode_for_training`` makes).
        steps: optimizer steps; lr: peak learning rate (linear warm-up then linear decay).
        batch_size: examples per micro-batch; accumulate: micro-batches per optimizer step.
        sampling: a ``SAMPLINGS`` name; temperature: τ of a sampling that takes one.
        method: a ``GRAD_METHODS`` name (``sum``, ``pcgrad``, ``cagrad``, ``gradvac``) and its options.
        weighting: a ``LOSS_WEIGHTINGS`` name (``uniform``, ``balanced``).
        variant: a ``VARIANTS`` name: the default ``init``, ``scaling`` and ``optimizer`` (+ options),
            and its setup/finish (PiSSA); ``init``, ``scaling``, ``optimizer`` given here win.
        optimizer: an ``OPTIMIZERS`` name (``adamw``, ``loraplus``, ``lorapro``, ``nola``) and its options.
        capture_every: capture task-gradient conflicts every N steps (0: never, 1: every step).
        checkpoint_every: keep a copy of the adapter every N steps (0: only the final one).
        seed: seeds the adapter's initialization, the sampling and the methods' random orders.
    """

    def __init__(self, lab, name: str, tasks, *, r: int = 8, alpha: float | None = None,
                 targets: str | list[str] = "attention", init: str | None = None, scaling: str | None = None,
                 steps: int = 60, lr: float = 2e-3, batch_size: int = 8, accumulate: int = 1,
                 sampling: str = "proportional", temperature: float = 2.0,
                 method: str = "sum", method_options: dict | None = None, weighting: str = "uniform",
                 variant: str = "lora", optimizer: str | None = None, optimizer_options: dict | None = None,
                 capture_every: int = 0, checkpoint_every: int = 0, seed: int = 0,
                 weight_decay: float = 0.0, warmup: float = 0.1, progress: bool = True):
        check_training(lab, name=name, tasks=tasks, r=r, alpha=alpha, steps=steps, lr=lr,
                       batch_size=batch_size, accumulate=accumulate, seed=seed, weight_decay=weight_decay,
                       warmup=warmup, temperature=temperature)
        if not lr > 0 or not math.isfinite(lr):
            raise WorkbenchError(f"learning rate must be a finite number > 0; got lr={lr}")
        for label, value in (("steps", steps), ("batch_size", batch_size), ("accumulate", accumulate)):
            if int(value) < 1:
                raise WorkbenchError(f"{label} must be at least 1; got {value}")
        if capture_every < 0 or checkpoint_every < 0:
            raise WorkbenchError("capture_every and checkpoint_every count steps: give 0 (off) or more")
        self.task_names, self.features = _encode(lab, tasks)
        sizes = [len(f) for f in self.features]
        # unknown names fail here, before the lab changes
        probs = SAMPLINGS.get(sampling)(sizes, **_options(SAMPLINGS, sampling, temperature=temperature))
        GRAD_METHODS.check(method, method_options)
        self.weighting = LOSS_WEIGHTINGS.get(weighting)().fit(self.features)
        self.variant, run = resolve(variant, init=init, scaling=scaling, optimizer=optimizer,
                                    optimizer_options=optimizer_options)
        OPTIMIZERS.check(run["optimizer"], run["optimizer_options"])

        self.lab, self.name, self.steps, self.lr = lab, name, int(steps), float(lr)
        self.batch_size, self.accumulate, self.seed = int(batch_size), int(accumulate), seed
        self.capture_every, self.checkpoint_every, self.progress = capture_every, checkpoint_every, progress
        self.is_router, self._set_up = name in lab.routers, False
        if self.is_router:
            self.adapter = lab.routers[name]
            groups = [(path, r.trainable()) for path, r in self.adapter.modules.items()]
            self.pairs: list = []
        else:
            self.adapter = self._make_adapter(r=r, alpha=alpha, targets=targets, run=run)
            self.adapter.lineage = {
                **self.adapter.lineage, "method": "train_multitask", "tasks": self.task_names, "steps": steps,
                "lr": lr, "batch_size": batch_size, "accumulate": accumulate, "sampling": sampling,
                "gradient_method": method, "weighting": weighting, "optimizer": run["optimizer"],
                "variant": variant, "seed": seed, "base": lab.name,
            }
            layers = lab.layers
            self.pairs = [(layers[m].lora_A[name], layers[m].lora_B[name], layers[m].scaling[name])
                          for m in self.adapter.modules]
            groups = [(m, [A, B]) for m, (A, B, _) in zip(self.adapter.modules, self.pairs, strict=True)]
        self.modules = [m for m, _ in groups]
        self.params = [p for _, ps in groups for p in ps]
        offsets, slices = 0, []
        for _, ps in groups:
            n = sum(p.numel() for p in ps)
            slices.append(slice(offsets, offsets + n))
            offsets += n
        self.dim = offsets
        self.conflicts = ConflictCapture(self.modules, self.task_names, slices, pairs=self.pairs,
                                         optimizer=run["optimizer"]) if capture_every else None
        source = ByTask(self.features, probs, seed)
        self.sampler = source.sampler
        self.objective = ExampleLoss(lab, self.weighting, self.batch_size)
        params = self.params
        self.loop = Loop(
            params, self.objective, source, label=name,
            desc=f"training {name} on {len(self.task_names)} tasks",
            session=lambda: lab.session(name, train=True, trainable=params),
            steps=steps, lr=lr, batch_size=batch_size, accumulate=accumulate, seed=seed,
            weight_decay=weight_decay, warmup=warmup, optimizer=run["optimizer"],
            optimizer_options=run["optimizer_options"], pairs=self.pairs, method=method,
            method_options=method_options, capture=self.conflicts, capture_every=capture_every,
            checkpoint=None if self.is_router else self._checkpoint, checkpoint_every=checkpoint_every,
            task_names=self.task_names, rows="tasks", reseed="step", progress=progress)
        self.optimizer, self.scheduler = self.loop.optimizer, self.loop.scheduler
        self.method = self.loop.method
        me = weakref.ref(self)  # the loop refers to its trainer weakly: no cycle keeps a lab alive
        self.loop.callbacks.on_finish(lambda loop: me()._finish())

    def _make_adapter(self, *, r, alpha, targets, run) -> Adapter:
        lab, name = self.lab, self.name
        self._set_up = False
        if name in lab.adapters:
            return lab.adapters[name]
        self._set_up = self.variant.setup is not None  # then this run also finishes the variant
        if self._set_up:
            return self.variant.setup(lab, name, r=r, alpha=alpha, targets=targets, scaling=run["scaling"])
        return lab.new_adapter(name, r=r, alpha=alpha, targets=targets, init=run["init"],
                               scaling=run["scaling"], seed=self.seed)

    # -- driving ---------------------------------------------------------------------------------
    @property
    def step_index(self) -> int:
        return self.loop.step_index

    @property
    def done(self) -> bool:
        return self.loop.done

    @property
    def seconds(self) -> float:
        return self.loop.seconds

    @property
    def checkpoints(self) -> list[Adapter]:
        return self.loop.checkpoints

    @property
    def rows(self) -> list[dict]:
        return self.loop.rows

    @property
    def history(self) -> pd.DataFrame:
        return self.loop.history()

    def on_step(self, callback: Callable[[MultiTaskTrainer, list[dict]], None]) -> None:
        """Call ``callback(trainer, rows)`` after every step (rows: that step's history rows)."""
        me = weakref.ref(self)
        self.loop.callbacks.on_step(lambda loop, rows: callback(me(), rows))

    def run(self) -> MultiTaskResult:
        """Train to the end and return the result."""
        self.step(self.steps - self.step_index)
        return self.result()

    def result(self) -> MultiTaskResult:
        return MultiTaskResult(self.adapter, self.history, self.conflicts, self.checkpoints)

    def step(self, n: int = 1) -> pd.DataFrame:
        """Run up to ``n`` more steps (fewer at the end); returns their history rows.

        The lab's active composition, train/eval mode and the parameters' ``requires_grad`` are
        set for the steps and put back after, so cells in between see the lab as it was.
        """
        new = self.loop.run(n)
        return pd.DataFrame(new, columns=self.history.columns)

    def _task_loss(self, t: int, features: Sequence[dict]) -> torch.Tensor:
        """Task t's weighted loss on ``features`` (one forward, as the per-task step takes it)."""
        return self.objective([(t, f) for f in features]).parts[0][1]

    # -- checkpoints and the end -----------------------------------------------------------------
    def _checkpoint(self, step: int, note: str | None = None) -> Adapter:
        return adapter_checkpoint(self.adapter, step, tasks=self.task_names, seed=self.seed, note=note)

    def _finish(self) -> None:
        hist = self.history
        total = hist[hist.task == "total"]
        final = float(total["loss"].tail(5).mean()) if len(total) else None
        if self.is_router:
            self.adapter.params["training"] = {
                "method": "train_multitask", "tasks": self.task_names, "steps": self.steps, "lr": self.lr,
                "batch_size": self.batch_size, "seed": self.seed, "final_loss": final,
                "seconds": round(self.seconds, 1)}
            return
        if self._set_up and self.variant.finish:
            self.adapter = self.variant.finish(self.lab, self.name)
        self.adapter.lineage["final_loss"] = final
        self.adapter.lineage["seconds"] = round(self.seconds, 1)


def train_multitask(lab, name: str, tasks, **kwargs) -> MultiTaskResult:
    """Train adapter (or router) ``name`` on several tasks at once; see ``MultiTaskTrainer``."""
    return MultiTaskTrainer(lab, name, tasks, **kwargs).run()


# -- helpers -----------------------------------------------------------------------------------
def _options(registry, name: str, **offered) -> dict:
    """The offered options that entry ``name`` declares, checked (a sampling without τ gets none)."""
    declared = registry.info(name).params
    return registry.check(name, {k: v for k, v in offered.items() if k in declared})


def _encode(lab, tasks) -> tuple[list[str], list[list[dict]]]:
    """Task names and their training features; a task without examples is an error."""
    from workbench.tasks import Task, encode_for_training

    if isinstance(tasks, Task):
        tasks = [tasks]
    items = list(tasks.items()) if isinstance(tasks, Mapping) else [(t.name, t) for t in tasks]
    if not items:
        raise WorkbenchError("train_multitask needs at least one task")
    names, features = [], []
    for name, t in items:
        if isinstance(t, Task):
            if lab.tokenizer is None:
                raise WorkbenchError("training on Tasks needs a tokenizer; build the lab with "
                                     "Workbench(model, tokenizer) or pass encoded features")
            feats = encode_for_training(lab.tokenizer, t, t.train) if t.train else []
        else:
            feats = list(t)
        if not feats:
            raise WorkbenchError(f"task {name!r} has no training examples; give it some or leave it out")
        names.append(str(name))
        features.append(feats)
    if len(set(names)) != len(names):
        raise WorkbenchError(f"task names repeat: {names}; pass a mapping with distinct names")
    return names, features
