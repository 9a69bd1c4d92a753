"""fit: the one training loop (seeded batches, AdamW, warm-up then linear decay, routing losses).

``train_lora`` and ``train_router`` are thin fronts over it. Each batch runs inside a routing context
that carries each sample's task index and the attention mask, so routers that need them (LoRAMoE's
data types, MeteoRA's gate labels) find them; auxiliary routing losses are added to the task loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from workbench.errors import WorkbenchError
from workbench.routing import aux_loss, routing_context


def fit(
    lab,
    params: Sequence[torch.nn.Parameter],
    features: Sequence[dict],
    *,
    use,
    label: str,
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    weight_decay: float = 0.0,
    warmup: float = 0.1,
    progress: bool = True,
    context: Callable[[dict, list[dict]], dict] | None = None,
) -> pd.DataFrame:
    """Train ``params`` on ``features`` (dicts with ``input_ids``, ``labels`` and ``task``) with ``use`` on.

    The same seed gives the same result bit for bit on one machine. ``params`` get
    ``requires_grad`` inside (and their own setting back after); what the lab used and its
    train/eval mode are restored after. ``context(batch, features)`` may add routing-context values
    computed per batch (token types, prompt scales, ...).

    Returns:
        One row per step: ``step, loss`` (task + auxiliary), ``lr``, and ``aux`` when a router adds
        auxiliary losses (plus one ``aux/<router>/<loss>`` column per term).
    """
    from workbench.tasks import collate

    if not params:
        raise WorkbenchError(f"{label}: nothing to train (no trainable parameters)")
    pad_id = getattr(lab.tokenizer, "pad_token_id", None) or 0
    g = torch.Generator().manual_seed(seed)
    order: list[int] = []
    rows = []
    before, was_training = lab.active, lab.model.training
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    n_warm = max(1, int(warmup * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / n_warm, max(0.0, (steps - s) / max(1, steps - n_warm)))
    )
    wanted = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(True)
        lab.use(use)
        lab.model.train()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            bar = tqdm(range(steps), desc=f"training {label}", disable=not progress)
            for step in bar:
                if len(order) < batch_size:
                    order += torch.randperm(len(features), generator=g).tolist()
                idx, order = order[:batch_size], order[batch_size:]
                chosen = [features[i] for i in idx]
                batch = {k: v.to(lab.device) for k, v in collate(chosen, pad_id).items()}
                task = torch.tensor([f.get("task", 0) for f in chosen], device=lab.device)
                extra_context = context(batch, chosen) if context else {}
                with routing_context(task=task, attention_mask=batch["attention_mask"], **extra_context):
                    loss = lab.model(**batch).loss
                extra, parts = aux_loss(lab.model)
                row = {"step": step}
                if extra is not None:
                    row |= {"task_loss": loss.item(), "aux": extra.item(),
                            **{f"aux/{k}": v for k, v in parts.items()}}
                    loss = loss + extra
                if not math.isfinite(loss.item()):
                    raise WorkbenchError(
                        f"training {label!r} diverged at step {step} (loss {loss.item()}); lower lr={lr}"
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                rows.append(row | {"loss": loss.item(), "lr": sched.get_last_lr()[0]})
                sched.step()
                bar.set_postfix(loss=f"{loss.item():.3f}")
    finally:
        for p, w in zip(params, wanted, strict=True):
            p.requires_grad_(w)
            p.grad = None
        lab.model.train(was_training)
        lab.use(before)
    return pd.DataFrame(rows)


def encode_tasks(lab, tasks) -> list[dict]:
    """Training features of every task, each tagged with its task index (``"task"``)."""
    from workbench.tasks import encode_for_training

    if lab.tokenizer is None:
        raise WorkbenchError("training needs a tokenizer; build the lab with Workbench(model, tokenizer)")
    features = [f | {"task": i} for i, t in enumerate(tasks)
                for f in encode_for_training(lab.tokenizer, t, t.train)]
    if not features:
        raise WorkbenchError(f"tasks {[t.name for t in tasks]} have no training examples")
    return features
