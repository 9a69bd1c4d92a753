"""train_lora: a plain, seeded LoRA training loop on one or several tasks, with a progress bar."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import pandas as pd
import torch
from tqdm.auto import tqdm

from workbench.adapters import Adapter
from workbench.errors import WorkbenchError


@dataclass
class TrainResult:
    """What ``train_lora`` returns: the trained adapter (already in the lab) and its loss history."""

    adapter: Adapter
    history: pd.DataFrame  # columns: step, loss, lr

    def __iter__(self):  # allows ``adapter, history = lab.train_lora(...)``
        return iter((self.adapter, self.history))


def train_lora(
    lab,
    name: str,
    task,
    *,
    r: int = 8,
    alpha: float | None = None,
    targets: str | list[str] = "attention",
    steps: int = 60,
    lr: float = 2e-3,
    batch_size: int = 8,
    seed: int = 0,
    scaling: str = "standard",
    dropout: float = 0.0,
    weight_decay: float = 0.0,
    warmup: float = 0.1,
    progress: bool = True,
) -> TrainResult:
    """Train a new LoRA ``name`` on ``task`` (a Task or a list of Tasks, mixed by concatenation).

    AdamW with linear warm-up (``warmup`` fraction of steps) then linear decay to zero. Batches are
    drawn by a seeded permutation, so the same seed gives the same adapter bit for bit on one
    machine. The base weights are frozen; only this adapter's factors train.

    Returns:
        TrainResult(adapter, history) with one row per step: ``step, loss, lr``.
    """
    from workbench.tasks import collate, encode_for_training

    if lab.tokenizer is None:
        raise WorkbenchError("train_lora needs a tokenizer; build the lab with Workbench(model, tokenizer)")
    tasks = task if isinstance(task, list | tuple) else [task]
    features = [f for t in tasks for f in encode_for_training(lab.tokenizer, t, t.train)]
    if not features:
        raise WorkbenchError(f"tasks {[t.name for t in tasks]} have no training examples")
    adapter = lab.new_adapter(name, r=r, alpha=alpha, targets=targets, scaling=scaling, seed=seed)
    adapter.lineage = {
        "method": "train_lora", "tasks": [t.name for t in tasks], "r": r, "alpha": alpha or 2 * r,
        "targets": targets, "steps": steps, "lr": lr, "batch_size": batch_size, "seed": seed,
        "scaling": scaling, "dropout": dropout, "base": lab.name,
    }
    layers = [layer for layer in lab.layers.values() if name in layer.names]
    params = [p for layer in layers for p in (layer.lora_A[name], layer.lora_B[name])]
    for layer in layers:
        layer.dropout[name] = dropout
    pad_id = lab.tokenizer.pad_token_id if lab.tokenizer.pad_token_id is not None else 0
    g = torch.Generator().manual_seed(seed)
    order: list[int] = []
    rows = []
    before, was_training = lab.active, lab.model.training
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    n_warm = max(1, int(warmup * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / n_warm, max(0.0, (steps - s) / max(1, steps - n_warm)))
    )
    start = time.perf_counter()
    try:
        for p in params:
            p.requires_grad_(True)
        lab.use(name)
        lab.model.train()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            bar = tqdm(range(steps), desc=f"training {name}", disable=not progress)
            for step in bar:
                if len(order) < batch_size:
                    order += torch.randperm(len(features), generator=g).tolist()
                idx, order = order[:batch_size], order[batch_size:]
                batch = {k: v.to(lab.device) for k, v in collate([features[i] for i in idx], pad_id).items()}
                loss = lab.model(**batch).loss
                if not math.isfinite(loss.item()):
                    raise WorkbenchError(
                        f"training {name!r} diverged at step {step} (loss {loss.item()}); lower lr={lr}"
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                rows.append({"step": step, "loss": loss.item(), "lr": sched.get_last_lr()[0]})
                sched.step()
                bar.set_postfix(loss=f"{loss.item():.3f}")
    finally:
        for p in params:
            p.requires_grad_(False)
            p.grad = None
        for layer in layers:
            layer.dropout[name] = 0.0
        lab.model.train(was_training)
        lab.use(before)
    history = pd.DataFrame(rows, columns=["step", "loss", "lr"])
    adapter.lineage["final_loss"] = float(history["loss"].tail(5).mean()) if rows else None
    adapter.lineage["seconds"] = round(time.perf_counter() - start, 1)
    return TrainResult(adapter, history)
