"""What a run minimizes: objectives that turn a list of ``(task, payload)`` items into losses.

An objective is called as ``objective(items, present=None) -> Losses`` and runs one forward over the
items; ``module`` is where routers queue their auxiliary terms (the loop collects them after each
forward). ``Losses.parts`` lists ``(task, loss, examples, task weight)`` when the objective splits by
task (the per-task gradient step needs the unweighted task loss and its weight apart).

    TokenLoss(lab)                     the LM's own mean token loss over the batch (``train_lora``, ``fit``)
    ExampleLoss(lab, weighting, size)  per-example mean token losses, weighted inside each task and
                                       across tasks by a ``LOSS_WEIGHTINGS`` entry (the multi-task trainer)
    JoinedLoss(model)                  a joined model's ``model.loss(pairs)`` (vision-/speech-language)

Token objectives run the forward inside the routing context (each sample's ``task`` index, the
``attention_mask`` and what ``context(batch, features)`` adds); a joined model sets its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from workbench.routing import routing_context
from workbench.tasks.encoding import IGNORE_INDEX, collate

Context = Callable[[dict, list[dict]], dict]


@dataclass
class Losses:
    """The losses of one forward.

    Attributes:
        total: the loss this forward minimizes (task weights applied), before auxiliary terms.
        parts: ``(task, unweighted loss, examples, task weight)`` per task, in task order (may be empty).
    """

    total: torch.Tensor
    parts: list[tuple[int, torch.Tensor, int, float]] = field(default_factory=list)


def group_by_task(items: Sequence[tuple[int, object]]) -> dict[int, list]:
    """Task -> its payloads, tasks in ascending order, payloads in draw order."""
    groups: dict[int, list] = {}
    for t, payload in items:
        groups.setdefault(t, []).append(payload)
    return {t: groups[t] for t in sorted(groups)}


class TokenLoss:
    """The causal LM's mean token loss over every answer token of the batch (``model(**batch).loss``).

    Args:
        lab: the Workbench whose model runs.
        context: ``context(batch, features) -> dict`` of extra routing-context values per batch.
    """

    def __init__(self, lab, context: Context | None = None):
        self.lab, self.context, self.module = lab, context, lab.model
        self.pad = getattr(lab.tokenizer, "pad_token_id", None) or 0

    def __call__(self, items: Sequence[tuple[int, dict]], present: int | None = None) -> Losses:
        features = [f for _, f in items]
        batch = {k: v.to(self.lab.device) for k, v in collate(features, self.pad).items()}
        task = torch.tensor([t for t, _ in items], device=self.lab.device)
        extra = self.context(batch, features) if self.context else {}
        with routing_context(task=task, attention_mask=batch["attention_mask"], **extra):
            return Losses(self.lab.model(**batch).loss)


class ExampleLoss(TokenLoss):
    """``Σ_t task_weight_t · Σ_i w_i ℓ_i / Σ_i w_i`` with ℓ_i example i's mean token loss.

    Args:
        lab: the Workbench whose model runs.
        weighting: a fitted ``LossWeighting`` (example weights inside a task, task weights across).
        batch_size: the examples of one micro-batch (the task weights' denominator).
        context: extra routing-context values per batch, as for ``TokenLoss``.
    """

    def __init__(self, lab, weighting, batch_size: int, context: Context | None = None):
        super().__init__(lab, context)
        self.weighting, self.batch_size = weighting, batch_size

    def example_losses(self, items: Sequence[tuple[int, dict]]) -> torch.Tensor:
        """Mean token loss of each example (B,), over its answer tokens (NaN when it has none)."""
        features = [f for _, f in items]
        batch = {k: v.to(self.lab.device) for k, v in collate(features, self.pad).items()}
        task = torch.tensor([t for t, _ in items], device=self.lab.device)
        extra = self.context(batch, features) if self.context else {}
        with routing_context(task=task, attention_mask=batch["attention_mask"], **extra):
            logits = self.lab.model(input_ids=batch["input_ids"],
                                    attention_mask=batch["attention_mask"]).logits
        labels = batch["labels"][:, 1:]  # (B, T-1)
        ce = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), labels, reduction="none",
                             ignore_index=IGNORE_INDEX)  # (B, T-1)
        mask = (labels != IGNORE_INDEX).to(ce.dtype)
        return (ce * mask).sum(1) / mask.sum(1)  # (B,)

    def task_loss(self, t: int, features: Sequence[dict], ell: torch.Tensor) -> torch.Tensor:
        """Task t's loss: its examples' losses ``ell`` (n,) weighted by the weighting's example weights."""
        w = self.weighting.example_weights(t, features).to(ell)
        return (w * ell).sum() / w.sum()

    def __call__(self, items: Sequence[tuple[int, dict]], present: int | None = None) -> Losses:
        groups = group_by_task(items)
        present = present or len(groups)
        ordered = [(t, f) for t, feats in groups.items() for f in feats]
        ell = self.example_losses(ordered)  # one forward over every task of the batch
        total, parts, k = 0.0, [], 0
        for t, feats in groups.items():
            n = len(feats)
            loss_t = self.task_loss(t, feats, ell[k:k + n])
            w = self.weighting.task_weight(n, self.batch_size, present)
            parts.append((t, loss_t, n, w))
            total = total + w * loss_t
            k += n
        return Losses(total, parts)


class JoinedLoss:
    """A joined model's mean answer-token loss over ``(Task, Example)`` pairs (``model.loss``)."""

    def __init__(self, model: nn.Module):
        self.model, self.module = model, model.lab.model

    def __call__(self, items: Sequence[tuple[int, tuple]], present: int | None = None) -> Losses:
        return Losses(self.model.loss([pair for _, pair in items]))
