"""Teacher-forced answer scores per example, in a routing context: what the routed experiments measure.

    feats = answer_features(lab.tokenizer, task, task.eval[:16], task_index=0)
    scores = answer_scores(lab, feats, use="mixer")          # one row per example: loss, correct

``loss`` is the mean negative log-likelihood of the example's answer tokens (the target and the
end-of-turn token, the positions whose label is not -100) given everything before them; ``correct``
is first-token accuracy among the example's choices (1 when the highest log-probability at the first
answer position, among the choices' first tokens, is the target's), NaN for an example without
choices. One forward per batch, no generation, so routers that read a per-sample context (RecLoRA's
user vector, TARA's token masks) are scored with exactly the context they train with: ``context``
is called as ``context(batch, features) -> dict`` as in ``workbench.training.fit``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd
import torch
import torch.nn.functional as F

from workbench.errors import WorkbenchError
from workbench.routing import routing_context
from workbench.tasks import collate, encode_for_training
from workbench.tasks.encoding import IGNORE_INDEX, pad_id
from workbench.tasks.metrics import first_token_ids


def answer_features(tokenizer, task, examples, *, task_index: int = 0, **extra) -> list[dict]:
    """Training encodings of ``examples`` with ``task`` (index), ``choice_ids`` and ``extra`` keys added."""
    feats = encode_for_training(tokenizer, task, examples)
    out = []
    for f, e in zip(feats, examples, strict=True):
        choices = first_token_ids(tokenizer, e.choices) if e.choices else None
        out.append(f | {"task": task_index, "choice_ids": choices} | extra)
    return out


def example_scores(logits: torch.Tensor, labels: torch.Tensor,
                   choice_ids: Sequence[Sequence[int] | None]) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss (B,), correct (B,)) from logits (B, T, V) and labels (B, T) (-100 off the answer).

    loss: mean NLL of the answer tokens, position t predicting label t+1. correct: at the position
    before the first answer token, is the target's first token the most likely among the choices'
    first tokens (NaN without choices).
    """
    target = labels[:, 1:]  # (B, T-1)
    nll = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), target, reduction="none",
                          ignore_index=IGNORE_INDEX)  # (B, T-1)
    on = (target != IGNORE_INDEX).float()
    if (on.sum(1) == 0).any():
        raise WorkbenchError("an example has no answer tokens (every label is -100); nothing to score")
    loss = (nll * on).sum(1) / on.sum(1)
    correct = torch.full((labels.shape[0],), float("nan"))
    for b, ids in enumerate(choice_ids):
        if not ids:
            continue
        p = int(on[b].nonzero()[0])  # logits[p] predict the first answer token labels[p + 1]
        best = int(torch.as_tensor(list(ids))[logits[b, p, list(ids)].float().argmax()])
        correct[b] = float(best == int(target[b, p]))
    return loss, correct


@torch.no_grad()
def answer_scores(lab, features: Sequence[dict], *, use, batch_size: int = 8,
                  context: Callable[[dict, list[dict]], dict] | None = None) -> pd.DataFrame:
    """One row per feature: ``index, task, loss, correct`` (and every other scalar key of the feature).

    Args:
        use: what the lab applies (an adapter, a composition, a router; None = the base).
        context: ``context(batch, features) -> dict`` of extra routing-context values per batch.
    """
    features = list(features)
    if not features:
        raise WorkbenchError("answer_scores got no features")
    pad = pad_id(lab.tokenizer) if lab.tokenizer is not None else 0
    rows = []
    with lab.session(use, train=False):
        for start in range(0, len(features), batch_size):
            part = features[start:start + batch_size]
            batch = {k: v.to(lab.device) for k, v in collate(part, pad).items()}
            task = torch.tensor([f.get("task", 0) for f in part], device=lab.device)
            extra = context(batch, part) if context else {}
            with routing_context(task=task, attention_mask=batch["attention_mask"], **extra):
                logits = lab.model(input_ids=batch["input_ids"],
                                   attention_mask=batch["attention_mask"]).logits  # (B, T, V)
            loss, correct = example_scores(logits, batch["labels"], [f.get("choice_ids") for f in part])
            for i, f in enumerate(part):
                keys = {k: v for k, v in f.items() if isinstance(v, int | float | str) and k != "task"}
                rows.append(keys | {"index": start + i, "task": f.get("task", 0), "loss": float(loss[i]),
                                    "correct": float(correct[i])})
    return pd.DataFrame(rows)
