"""train_lora: a plain, seeded LoRA training loop on one or several tasks, with a progress bar."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd

from workbench.adapters import Adapter
from workbench.training.loop import encode_tasks, fit
from workbench.training.validate import check_training


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
    check_training(lab, name=name, new="adapter", tasks=task, r=r, alpha=alpha, steps=steps, lr=lr,
                   batch_size=batch_size, seed=seed, dropout=dropout, weight_decay=weight_decay,
                   warmup=warmup)
    tasks = list(task) if isinstance(task, list | tuple) else [task]
    features = encode_tasks(lab, tasks)
    adapter = lab.new_adapter(name, r=r, alpha=alpha, targets=targets, scaling=scaling, seed=seed)
    adapter.lineage = {
        "method": "train_lora", "tasks": [t.name for t in tasks], "r": r, "alpha": alpha or 2 * r,
        "targets": targets, "steps": steps, "lr": lr, "batch_size": batch_size, "seed": seed,
        "scaling": scaling, "dropout": dropout, "base": lab.name,
    }
    layers = [layer for layer in lab.layers.values() if name in layer.names]
    params = [p for layer in layers for p in (layer.lora_A[name], layer.lora_B[name])]
    start = time.perf_counter()
    try:
        for layer in layers:
            layer.dropout[name] = dropout
        history = fit(lab, params, features, use=name, label=name, steps=steps, lr=lr,
                      batch_size=batch_size, seed=seed, weight_decay=weight_decay, warmup=warmup,
                      progress=progress)
    finally:
        for layer in layers:
            layer.dropout[name] = 0.0
    adapter.lineage["final_loss"] = float(history["loss"].tail(5).mean()) if len(history) else None
    adapter.lineage["seconds"] = round(time.perf_counter() - start, 1)
    return TrainResult(adapter, history)
