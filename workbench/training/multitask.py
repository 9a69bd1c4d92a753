"""Multi-task LoRA training: one adapter on several tasks, with gradient-conflict capture.

    trainer = MultiTaskTrainer(lab, "joint", [topic, language, arithmetic], method="pcgrad",
                               capture_every=5, steps=60)
    result = trainer.run()                   # or trainer.step(10) again and again (a live widget)
    result.conflicts.cosines(by="layer")     # tidy: step, layer, task, task_b, value

Each step draws ``batch_size`` examples ``accumulate`` times (tasks by ``SAMPLINGS``, examples from
a seeded permutation per task). On steps that need per-task gradients (a capture step, or a method
other than ``sum``) every task present gets its own forward and backward pass; the (T, D) task
gradients go to the capture (reduced at once) and to the gradient method, and are dropped. Other
steps run one forward and backward over the whole batch. Same seed, same adapter, bit for bit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from workbench.adapters import Adapter
from workbench.errors import WorkbenchError
from workbench.tasks.encoding import IGNORE_INDEX, collate
from workbench.training.capture import ConflictCapture
from workbench.training.methods import GRAD_METHODS
from workbench.training.optimizers import OPTIMIZERS
from workbench.training.sampling import SAMPLINGS, TaskSampler
from workbench.training.validate import check_training
from workbench.training.weighting import LOSS_WEIGHTINGS


@dataclass
class MultiTaskResult:
    """What a multi-task run leaves: the adapter (in the lab), its history, conflicts, checkpoints.

    Attributes:
        adapter: the trained adapter.
        history: one row per step and task: ``step, task, loss, n, lr`` (task ``"total"``: the loss
            that was minimized).
        conflicts: the gradient-conflict capture (None when ``capture_every=0``).
        checkpoints: copies of the adapter along training (not in the lab), with lineage
            ``step, tasks, seed, checkpoint_of``.
    """

    adapter: Adapter
    history: pd.DataFrame
    conflicts: ConflictCapture | None
    checkpoints: list[Adapter] = field(default_factory=list)

    def __iter__(self):
        return iter((self.adapter, self.history))


class MultiTaskTrainer:
    """Trains one adapter on several tasks at once; drive it with ``run()`` or ``step(n)``.

    Args:
        lab: the Workbench.
        name: the adapter to train: a new one is made (``r, alpha, targets, init, scaling``) unless
            the lab already holds an adapter of that name (then that one trains).
        tasks: a list of Tasks, or a mapping name -> Task or name -> encoded features (dicts with
            ``input_ids`` and ``labels``, as ``workbench.tasks.encode_for_training`` makes).
        steps: optimizer steps; lr: peak learning rate (linear warm-up then linear decay).
        batch_size: examples per micro-batch; accumulate: micro-batches per optimizer step.
        sampling: a ``SAMPLINGS`` name; temperature: τ of ``"temperature"``.
        method: a ``GRAD_METHODS`` name (``sum``, ``pcgrad``, ``cagrad``, ``gradvac``) and its options.
        weighting: a ``LOSS_WEIGHTINGS`` name (``uniform``, ``balanced``).
        optimizer: an ``OPTIMIZERS`` name (``adamw``, ``loraplus``, ``lorapro``) and its options.
        capture_every: capture task-gradient conflicts every N steps (0: never, 1: every step).
        checkpoint_every: keep a copy of the adapter every N steps (0: only the final one).
        seed: seeds the adapter's initialization, the sampling and the methods' random orders.
    """

    def __init__(self, lab, name: str, tasks, *, r: int = 8, alpha: float | None = None,
                 targets: str | list[str] = "attention", init: str = "lora", scaling: str = "standard",
                 steps: int = 60, lr: float = 2e-3, batch_size: int = 8, accumulate: int = 1,
                 sampling: str = "proportional", temperature: float = 2.0,
                 method: str = "sum", method_options: dict | None = None, weighting: str = "uniform",
                 optimizer: str = "adamw", optimizer_options: dict | None = None,
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
        sampler_fn = SAMPLINGS.get(sampling)  # unknown names fail here, before the lab changes
        probs = sampler_fn(sizes, temperature) if sampling == "temperature" else sampler_fn(sizes)
        self.method = GRAD_METHODS.get(method)(seed=seed, **(method_options or {}))
        self.weighting = LOSS_WEIGHTINGS.get(weighting)().fit(self.features)
        build_optimizer = OPTIMIZERS.get(optimizer)

        self.lab, self.name, self.steps, self.lr = lab, name, int(steps), float(lr)
        self.batch_size, self.accumulate, self.seed = int(batch_size), int(accumulate), seed
        self.capture_every, self.checkpoint_every, self.progress = capture_every, checkpoint_every, progress
        self.method_name = method
        if name in lab.adapters:
            self.adapter = lab.adapters[name]
        else:
            self.adapter = lab.new_adapter(name, r=r, alpha=alpha, targets=targets, init=init,
                                           scaling=scaling, seed=seed)
        self.adapter.lineage = {
            **self.adapter.lineage, "method": "train_multitask", "tasks": self.task_names, "steps": steps,
            "lr": lr, "batch_size": batch_size, "accumulate": accumulate, "sampling": sampling,
            "gradient_method": method, "weighting": weighting, "optimizer": optimizer, "seed": seed,
            "base": lab.name,
        }
        layers = lab.layers
        self.modules = list(self.adapter.modules)
        self.pairs = [(layers[m].lora_A[name], layers[m].lora_B[name], layers[m].scaling[name])
                      for m in self.modules]
        self.params = [p for A, B, _ in self.pairs for p in (A, B)]
        offsets, slices = 0, []
        for A, B, _ in self.pairs:
            n = A.numel() + B.numel()
            slices.append(slice(offsets, offsets + n))
            offsets += n
        self.dim = offsets
        self.optimizer = build_optimizer(self.pairs, lr=lr, weight_decay=weight_decay,
                                         **(optimizer_options or {}))
        n_warm = max(1, int(warmup * steps))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min((s + 1) / n_warm, max(0.0, (steps - s) / max(1, steps - n_warm))))
        self.sampler = TaskSampler(sizes, probs, torch.Generator().manual_seed(seed), seed=seed)
        self.conflicts = (ConflictCapture(self.modules, self.task_names, slices)
                          if capture_every else None)
        self.checkpoints: list[Adapter] = []
        self.rows: list[dict] = []
        self.step_index = 0
        self.callbacks: list[Callable[[MultiTaskTrainer, list[dict]], None]] = []
        self.seconds = 0.0
        self._last_good: torch.Tensor | None = None
        self._bar = None

    # -- driving ---------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.step_index >= self.steps

    @property
    def history(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["step", "task", "loss", "n", "lr"])

    def on_step(self, callback: Callable[[MultiTaskTrainer, list[dict]], None]) -> None:
        """Call ``callback(trainer, rows)`` after every step (rows: that step's history rows)."""
        self.callbacks.append(callback)

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
        lab = self.lab
        before, was_training = lab.active, lab.model.training
        new: list[dict] = []
        if self._bar is None:
            self._bar = tqdm(total=self.steps, desc=f"training {self.name} on {len(self.task_names)} tasks",
                             disable=not self.progress)
        start = time.perf_counter()
        try:
            for p in self.params:
                p.requires_grad_(True)
            lab.use(self.name)
            lab.model.train()
            for _ in range(min(n, self.steps - self.step_index)):
                rows = self._one_step()
                new += rows
                for cb in self.callbacks:
                    cb(self, rows)
        finally:
            for p in self.params:
                p.requires_grad_(False)
                p.grad = None
            lab.model.train(was_training)
            lab.use(before)
            self.seconds += time.perf_counter() - start
            if self.done:
                self._finish()
        return pd.DataFrame(new, columns=["step", "task", "loss", "n", "lr"])

    # -- one step --------------------------------------------------------------------------------
    def _one_step(self) -> list[dict]:
        step, T = self.step_index, len(self.task_names)
        capture = bool(self.capture_every) and step % self.capture_every == 0
        per_task = capture or self.method_name != "sum"
        start_weights = self._flat_weights()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1_000_003 + step)
            losses, counts = torch.zeros(T, dtype=torch.float64), torch.zeros(T, dtype=torch.long)
            total = 0.0
            grads = torch.zeros(T, self.dim) if per_task else None  # (T, D), dropped after the step
            for _ in range(self.accumulate):
                draws = self.sampler.draw(self.batch_size)
                groups: dict[int, list[dict]] = {}
                for t, i in draws:
                    groups.setdefault(t, []).append(self.features[t][i])
                order = sorted(groups)
                if per_task:
                    for t in order:
                        loss = self._task_loss(t, groups[t])
                        self._check(loss, step, t, start_weights)
                        w = self.weighting.task_weight(len(groups[t]), self.batch_size, len(order))
                        g = torch.autograd.grad(loss, self.params, allow_unused=True)
                        grads[t] += _flatten(g, self.params) * (w / self.accumulate)
                        losses[t] += loss.item() * len(groups[t])
                        counts[t] += len(groups[t])
                        total += w * loss.item() / self.accumulate
                else:
                    task_losses = self._batch_losses(order, groups)  # one forward over all tasks
                    loss = 0.0
                    for t, lt in zip(order, task_losses, strict=True):
                        self._check(lt, step, t, start_weights)
                        w = self.weighting.task_weight(len(groups[t]), self.batch_size, len(order))
                        loss = loss + w * lt
                        losses[t] += lt.item() * len(groups[t])
                        counts[t] += len(groups[t])
                    (loss / self.accumulate).backward()
                    total += loss.item() / self.accumulate
            if per_task:
                if capture:
                    self.conflicts.record(step, grads)
                update = self.method.combine(grads)  # (D,)
                del grads
                _unflatten_into_grads(update, self.params)
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        for p in self.params:
            p.grad = None
        lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        self._last_good = start_weights
        rows = [{"step": step, "task": self.task_names[t], "loss": losses[t].item() / counts[t].item(),
                 "n": int(counts[t]), "lr": lr} for t in range(T) if counts[t] > 0]
        rows.append({"step": step, "task": "total", "loss": total, "n": int(counts.sum()), "lr": lr})
        self.rows += rows
        self.step_index += 1
        if self.checkpoint_every and self.step_index % self.checkpoint_every == 0 and not self.done:
            self._checkpoint(self.step_index)
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{total:.3f}")
        return rows

    def _example_losses(self, features: Sequence[dict]) -> torch.Tensor:
        """Mean token loss of each example (B,), over its answer tokens."""
        pad = getattr(self.lab.tokenizer, "pad_token_id", None) or 0
        batch = {k: v.to(self.lab.device) for k, v in collate(features, pad).items()}
        logits = self.lab.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        labels = batch["labels"][:, 1:]  # (B, T-1)
        ce = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), labels, reduction="none",
                             ignore_index=IGNORE_INDEX)  # (B, T-1)
        mask = (labels != IGNORE_INDEX).to(ce.dtype)
        return (ce * mask).sum(1) / mask.sum(1)  # (B,); NaN for an example with no answer token

    def _weighted(self, t: int, features: Sequence[dict], ell: torch.Tensor) -> torch.Tensor:
        w = self.weighting.example_weights(t, features).to(ell)
        return (w * ell).sum() / w.sum()

    def _task_loss(self, t: int, features: Sequence[dict]) -> torch.Tensor:
        return self._weighted(t, features, self._example_losses(features))

    def _batch_losses(self, order: list[int], groups: dict[int, list[dict]]) -> list[torch.Tensor]:
        feats = [f for t in order for f in groups[t]]
        ell = self._example_losses(feats)
        out, k = [], 0
        for t in order:
            n = len(groups[t])
            out.append(self._weighted(t, groups[t], ell[k:k + n]))
            k += n
        return out

    # -- safety and checkpoints ------------------------------------------------------------------
    def _check(self, loss: torch.Tensor, step: int, t: int, start_weights: torch.Tensor) -> None:
        """Stop on a non-finite loss, putting back the last weights whose losses were finite."""
        if torch.isfinite(loss).all():
            return
        good = self._last_good if self._last_good is not None else start_weights
        self._set_weights(good)
        good_step = max(0, step - 1) if self._last_good is not None else step
        self._checkpoint(good_step, note=f"last good weights before a non-finite loss at step {step}")
        raise WorkbenchError(
            f"training {self.name!r} stopped at step {step}: the loss of task {self.task_names[t]!r} "
            f"is {loss.item()}. The adapter holds its last good weights (those of step {good_step}, "
            f"also kept as checkpoint {self.checkpoints[-1].name!r}); lower lr={self.lr} or check "
            "that every example of that task has answer tokens"
        )

    def _flat_weights(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.params]).clone()

    @torch.no_grad()
    def _set_weights(self, flat: torch.Tensor) -> None:
        k = 0
        for p in self.params:
            p.copy_(flat[k:k + p.numel()].view_as(p))
            k += p.numel()

    def _checkpoint(self, step: int, note: str | None = None) -> Adapter:
        ckpt = self.adapter.copy(f"{self.name}_step{step}")
        ckpt.lineage = {**ckpt.lineage, "checkpoint_of": self.name, "step": step,
                        "tasks": self.task_names, "seed": self.seed}
        if note:
            ckpt.lineage["note"] = note
        self.checkpoints.append(ckpt)
        return ckpt

    def _finish(self) -> None:
        if self._bar is not None:
            self._bar.close()
        hist = self.history
        total = hist[hist.task == "total"]
        self.adapter.lineage["final_loss"] = float(total["loss"].tail(5).mean()) if len(total) else None
        self.adapter.lineage["seconds"] = round(self.seconds, 1)
        if not self.checkpoints or self.checkpoints[-1].lineage["step"] != self.steps:
            self._checkpoint(self.steps)


def train_multitask(lab, name: str, tasks, **kwargs) -> MultiTaskResult:
    """Train adapter ``name`` on several tasks at once; see ``MultiTaskTrainer`` for the arguments."""
    return MultiTaskTrainer(lab, name, tasks, **kwargs).run()


# -- helpers -----------------------------------------------------------------------------------
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


def _flatten(grads: Sequence[torch.Tensor | None], params: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).float()
                      for g, p in zip(grads, params, strict=True)])


def _unflatten_into_grads(flat: torch.Tensor, params: Sequence[torch.Tensor]) -> None:
    k = 0
    for p in params:
        p.grad = flat[k:k + p.numel()].view_as(p).to(p.dtype).clone()
        k += p.numel()
