"""Loop: the one training loop of the workbench (``fit`` in ``fit.py`` is its plainest front).

Every trainer (``train_lora``, ``train_router``, ``MultiTaskTrainer``, the curriculum, the joined
models' ``train_stages``, ScaleZero's ``run_stages``, ``cat_learned``) is a front that builds a
``Loop`` from these parts:

    source      seeded batches of (task, payload) items             ``sources``: Shuffled, ByTask
    objective   the loss of a batch (routing context inside)        ``objectives``: Token/Example/JoinedLoss
    step        plain backward, or per-task gradients combined by   ``steps``; ``GRAD_METHODS`` (flag
                a gradient method, with conflict capture            ``per_task_gradients``)
    optimizer   an ``OPTIMIZERS`` entry (LoRA+, LoRA-Pro, NOLA)      ``optimizers``
    schedule    linear warm-up then linear decay                    ``schedule``
    session     what the lab applies, train mode, what trains;      ``Workbench.session``
                entered for each ``run(n)`` and restored after
    callbacks   on_step, on_eval every N, on_checkpoint, on_finish   ``callbacks``
    checkpoints adapter copies with lineage; the last good weights  ``checkpoint``

Auxiliary routing terms queued by routers during a forward are added to that forward's loss. A
non-finite loss stops the run: the trained parameters get their last good weights back (those at
the start of the previous step, whose losses were all finite), a checkpoint keeps them, and the
error names the step and the task. The same seed gives the same result bit for bit on one machine.
This is the only place in ``workbench`` that calls ``optimizer.step()``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from workbench.errors import WorkbenchError
from workbench.training import checkpoint as ckpt
from workbench.training.callbacks import Callbacks
from workbench.training.methods import GRAD_METHODS
from workbench.training.optimizers import OPTIMIZERS
from workbench.training.schedule import schedule
from workbench.training.steps import StepStats, per_task_step, plain_step


class Loop:
    """One training run that can be driven step by step (``run(n)``) or to the end (``run()``).

    Args:
        params: what trains (deduplicated, in order).
        objective: ``objective(items, present=None) -> Losses``; its ``module`` holds the routers.
        source: ``draw(n)`` items and ``n_tasks``.
        session: a callable returning the context manager each ``run`` enters (``lab.session(...)``).
        label: the run's name in messages; desc: the progress bar's text (default ``training <label>``).
        steps, lr, batch_size, accumulate, seed, weight_decay, warmup: as in every trainer.
        optimizer, optimizer_options: an ``OPTIMIZERS`` entry and its options (checked).
        pairs: the ``(A, B, s)`` LoRA pairs among ``params`` (optimizers that need them read them).
        method, method_options: a ``GRAD_METHODS`` entry (per-task gradients when it declares so).
        capture, capture_every: a ``ConflictCapture`` fed every N steps (per-task gradients then).
        checkpoint: ``checkpoint(step, note) -> object`` makes a checkpoint (None: none are made).
        checkpoint_every: a checkpoint every N steps (and one at the end when ``checkpoint`` is given).
        task_names: names of the task indices, for messages and the per-task history.
        rows: ``"wide"`` (one row a step: step, [task_loss, aux, aux/..], loss, lr) or ``"tasks"``
            (one row per task and step plus a ``"total"`` row: step, task, loss, n, lr[, aux ...]).
        reseed: ``"step"`` seeds torch's CPU generator with ``seed·1_000_003 + step`` at every step;
            ``"run"`` seeds it once and carries its state from step to step (dropout streams).
        progress: show a tqdm progress bar.
    """

    def __init__(self, params: Sequence[torch.nn.Parameter], objective, source, *, session: Callable,
                 label: str, steps: int, lr: float, batch_size: int, seed: int, accumulate: int = 1,
                 weight_decay: float = 0.0, warmup: float = 0.1, optimizer: str = "adamw",
                 optimizer_options: dict | None = None, pairs: Sequence = (), method: str = "sum",
                 method_options: dict | None = None, capture=None, capture_every: int = 0,
                 checkpoint: Callable | None = None,
                 checkpoint_every: int = 0, task_names: Sequence[str] | None = None, rows: str = "wide",
                 reseed: str = "step", progress: bool = True, desc: str | None = None):
        self.params = list({id(p): p for p in params}.values())
        if not self.params:
            raise WorkbenchError(f"{label}: nothing to train (no trainable parameters)")
        self.objective, self.source, self.session, self.label = objective, source, session, label
        self.steps, self.lr = int(steps), float(lr)
        self.batch_size, self.accumulate = int(batch_size), int(accumulate)
        self.seed, self.reseed, self.rows_format, self.progress = seed, reseed, rows, progress
        self.desc = desc or f"training {label}"
        self.pairs = list(pairs)
        self.optimizer = _build_optimizer(optimizer, optimizer_options, self.params, self.pairs, lr,
                                          weight_decay)
        self.scheduler = schedule(self.optimizer, self.steps, warmup)
        self.method = GRAD_METHODS.get(method)(seed=seed, **GRAD_METHODS.check(method, method_options))
        self.per_task = GRAD_METHODS.has(method, "per_task_gradients")
        self.capture, self.capture_every = capture, int(capture_every)
        self.dim = sum(p.numel() for p in self.params)
        self.make_checkpoint, self.checkpoint_every = checkpoint, int(checkpoint_every)
        self.task_names = list(task_names) if task_names is not None else None
        self.callbacks = Callbacks()
        self.checkpoints: list = []
        self.rows: list[dict] = []
        self.step_index, self.seconds = 0, 0.0
        self._last_good: list[torch.Tensor] | None = None
        self._start: list[torch.Tensor] | None = None
        self._rng_state: torch.Tensor | None = None
        self._bar = None
        self._finished = False

    # -- driving ---------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.step_index >= self.steps

    def history(self) -> pd.DataFrame:
        """The rows so far as a frame."""
        if self.rows_format == "tasks":
            base = ["step", "task", "loss", "n", "lr"]
            extra = sorted({k for r in self.rows for k in r} - set(base), key=lambda k: (k != "aux", k))
            return pd.DataFrame(self.rows, columns=base + extra)
        return pd.DataFrame(self.rows)

    def run(self, n: int | None = None) -> list[dict]:
        """Run up to ``n`` more steps (all remaining when None); returns their history rows.

        The session (what the lab applies, train mode, trainable parameters) holds for these steps
        only, so cells in between see the lab as it was.
        """
        n = self.steps - self.step_index if n is None else min(n, self.steps - self.step_index)
        if self._bar is None:
            self._bar = tqdm(total=self.steps, desc=self.desc, disable=not self.progress)
        new: list[dict] = []
        start = time.perf_counter()
        try:
            with self.session():
                for _ in range(n):
                    rows = self._one_step()
                    new += rows
                    self.callbacks.after_step(self, rows)
        finally:
            self.seconds += time.perf_counter() - start
            if self.done and not self._finished:
                self._finish()
        return new

    # -- one step --------------------------------------------------------------------------------
    def _one_step(self) -> list[dict]:
        step = self.step_index
        capture = self.capture is not None and self.capture_every > 0 and step % self.capture_every == 0
        self._start = ckpt.snapshot(self.params)
        with self._rng(step):
            if capture or self.per_task:
                stats = per_task_step(self, step, capture)
            else:
                stats = plain_step(self, step)
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        for p in self.params:
            p.grad = None
        lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        self._last_good = self._start
        rows = self._rows(step, stats, lr)
        self.rows += rows
        self.step_index += 1
        if self.make_checkpoint and self.checkpoint_every and self.step_index % self.checkpoint_every == 0 \
                and not self.done:
            self.checkpoint(self.step_index)
        self._bar.update(1)
        self._bar.set_postfix(loss=f"{stats.total:.3f}")
        return rows

    @contextlib.contextmanager
    def _rng(self, step: int):
        with torch.random.fork_rng(devices=[]):
            if self.reseed == "step":
                torch.manual_seed(self.seed * 1_000_003 + step)
            elif self._rng_state is None:
                torch.manual_seed(self.seed)
            else:
                torch.set_rng_state(self._rng_state)
            yield
            self._rng_state = torch.get_rng_state()

    def _rows(self, step: int, s: StepStats, lr: float) -> list[dict]:
        aux = {} if s.aux is None else {"task_loss": s.task_loss, "aux": s.aux,
                                        **{f"aux/{k}": v for k, v in s.aux_parts.items()}}
        if self.rows_format == "wide":
            return [{"step": step, **aux, "loss": s.total, "lr": lr}]
        names = self.task_names or [str(t) for t in range(len(s.counts))]
        rows = [{"step": step, "task": names[t], "loss": s.losses[t].item() / s.counts[t].item(),
                 "n": int(s.counts[t]), "lr": lr} for t in range(len(s.counts)) if s.counts[t] > 0]
        rows.append({"step": step, "task": "total", "loss": s.total, "n": int(s.counts.sum()), "lr": lr}
                    | {k: v for k, v in aux.items() if k != "task_loss"})
        return rows

    # -- safety and checkpoints ------------------------------------------------------------------
    def check(self, loss: torch.Tensor, step: int, task: int | None = None) -> None:
        """Stop on a non-finite loss, putting back the last weights whose losses were finite."""
        if torch.isfinite(loss).all():
            return
        good = self._last_good if self._last_good is not None else self._start
        ckpt.restore(self.params, good)
        good_step = max(0, step - 1) if self._last_good is not None else step
        where = "" if task is None or self.task_names is None else f" of task {self.task_names[task]!r}"
        kept = ""
        if self.make_checkpoint:
            note = f"last good weights before a non-finite loss at step {step}"
            made = self.checkpoint(good_step, note=note)
            kept = f", also kept as checkpoint {made.name!r}"
        raise WorkbenchError(
            f"training {self.label!r} stopped at step {step}: the loss{where} is {loss.item()}. The trained "
            f"parameters hold their last good weights (those of step {good_step}{kept}); lower lr={self.lr} "
            "or check that every example has answer tokens"
        )

    def checkpoint(self, step: int, note: str | None = None):
        """Make a checkpoint now (``checkpoint(step, note)`` of the front) and tell the callbacks."""
        made = self.make_checkpoint(step, note)
        self.checkpoints.append(made)
        for fn in self.callbacks.checkpoint:
            fn(self, made)
        return made

    def _finish(self) -> None:
        self._finished = True
        if self._bar is not None:
            self._bar.close()
        for fn in self.callbacks.finish:
            fn(self)
        final = bool(self.checkpoints) and self.checkpoints[-1].lineage["step"] == self.steps
        if self.make_checkpoint and not final:
            self.checkpoint(self.steps)


def _build_optimizer(name: str, options: dict | None, params, pairs, lr: float, weight_decay: float):
    checked = OPTIMIZERS.check(name, options)
    if OPTIMIZERS.has(name, "needs_pairs"):
        in_pairs = {id(p) for A, B, _ in pairs for p in (A, B)}
        others = [p for p in params if id(p) not in in_pairs]
        if not pairs or others:
            raise WorkbenchError(
                f"optimizer {name!r} trains LoRA factor pairs (A, B) only, but this run trains "
                f"{len(others)} other parameter tensors; use optimizer='adamw' or 'loraplus' here")
    return OPTIMIZERS.get(name)(params, pairs, lr=lr, weight_decay=weight_decay, **checked)
