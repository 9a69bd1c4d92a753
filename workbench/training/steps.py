"""The two ways one optimizer step gets its gradient (``accumulate`` micro-batches each).

``plain_step``: one forward and one backward per micro-batch over the whole batch (task loss plus the
auxiliary routing terms); the gradients of the micro-batches add up, each divided by ``accumulate``.

``per_task_step``: every task present in a micro-batch gets its own forward and backward; the (T, D)
task gradients (rows weighted by the task weights) go to the conflict capture, which reduces them at
once, and to a ``GRAD_METHODS`` method, which combines them to the (D,) update; then they are dropped.

Both return a ``StepStats`` for the history and leave the gradient in ``p.grad`` for the optimizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from workbench.routing import aux_loss
from workbench.training.objectives import group_by_task


@dataclass
class StepStats:
    """What one step saw (means over its micro-batches).

    Attributes:
        total: the minimized loss (task losses + auxiliary terms).
        task_loss: the loss before auxiliary terms (None when no router added any).
        aux: the auxiliary terms' sum (None when there were none); aux_parts: each term by name.
        losses, counts: (T,) sum of each task's loss times its examples, and its examples.
    """

    total: float = 0.0
    task_loss: float | None = None
    aux: float | None = None
    aux_parts: dict[str, float] = field(default_factory=dict)
    losses: torch.Tensor | None = None
    counts: torch.Tensor | None = None

    def add_aux(self, task_loss: float, aux: float, parts: dict[str, float], accumulate: int) -> None:
        self.task_loss = (self.task_loss or 0.0) + task_loss / accumulate
        self.aux = (self.aux or 0.0) + aux / accumulate
        for k, v in parts.items():
            self.aux_parts[k] = self.aux_parts.get(k, 0.0) + v / accumulate


def _stats(n_tasks: int) -> StepStats:
    return StepStats(losses=torch.zeros(n_tasks, dtype=torch.float64),
                     counts=torch.zeros(n_tasks, dtype=torch.long))


def plain_step(loop, step: int) -> StepStats:
    """Sum of the micro-batches' gradients of (task loss + auxiliary terms) / accumulate."""
    stats = _stats(loop.source.n_tasks)
    for _ in range(loop.accumulate):
        out = loop.objective(loop.source.draw(loop.batch_size))
        extra, parts = aux_loss(loop.objective.module)
        for t, loss_t, n, _ in out.parts:
            loop.check(loss_t, step, t)
            stats.losses[t] += loss_t.item() * n
            stats.counts[t] += n
        loss = out.total
        if extra is not None:
            stats.add_aux(loss.item(), extra.item(), parts, loop.accumulate)
            loss = loss + extra
        loop.check(loss, step)
        (loss / loop.accumulate).backward()
        stats.total += loss.item() / loop.accumulate
    return stats


def per_task_step(loop, step: int, capture: bool) -> StepStats:
    """Per-task gradients, captured (``capture``) and combined by ``loop.method``, into ``p.grad``."""
    stats = _stats(loop.source.n_tasks)
    grads = torch.zeros(loop.source.n_tasks, loop.dim)  # (T, D) on the CPU, dropped after the step
    for _ in range(loop.accumulate):
        groups = group_by_task(loop.source.draw(loop.batch_size))
        for t, payloads in groups.items():
            out = loop.objective([(t, p) for p in payloads], present=len(groups))
            extra, parts = aux_loss(loop.objective.module)
            _, loss_t, n, w = out.parts[0] if out.parts else (t, out.total, len(payloads), 1.0)
            loop.check(loss_t, step, t)
            loss = loss_t
            if extra is not None:
                stats.add_aux(w * loss_t.item(), w * extra.item(), {k: w * v for k, v in parts.items()},
                              loop.accumulate)
                loss = loss_t + extra
                loop.check(loss, step, t)
            g = torch.autograd.grad(loss, loop.params, allow_unused=True)
            grads[t] += flatten(g, loop.params).cpu() * (w / loop.accumulate)
            stats.losses[t] += loss_t.item() * n
            stats.counts[t] += n
            stats.total += w * loss.item() / loop.accumulate
    if capture:
        loop.capture.record(step, grads)
    update = loop.method.combine(grads)  # (D,)
    del grads
    unflatten_into_grads(update, loop.params)
    return stats


def flatten(grads: Sequence[torch.Tensor | None], params: Sequence[torch.Tensor]) -> torch.Tensor:
    """One (D,) float32 vector of the gradients (zeros where a parameter got none)."""
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).float()
                      for g, p in zip(grads, params, strict=True)])


def unflatten_into_grads(flat: torch.Tensor, params: Sequence[torch.Tensor]) -> None:
    """Write the (D,) vector back as each parameter's ``.grad``."""
    k = 0
    for p in params:
        p.grad = flat[k:k + p.numel()].view_as(p).to(device=p.device, dtype=p.dtype).clone()
        k += p.numel()
