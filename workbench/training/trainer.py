"""train_lora: train a new LoRA on one or several tasks (a front over the one ``Loop``)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd

from workbench.adapters import Adapter
from workbench.training.fitting import encode_tasks, fit
from workbench.training.validate import check_training
from workbench.training.variants import resolve


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
    scaling: str | None = None,
    dropout: float = 0.0,
    weight_decay: float = 0.0,
    warmup: float = 0.1,
    progress: bool = True,
    variant: str = "lora",
    optimizer: str | None = None,
    optimizer_options: dict | None = None,
    init: str | None = None,
) -> TrainResult:
    """Train a new LoRA ``name`` on ``task`` (a Task or a list of Tasks, mixed by concatenation).

    Linear warm-up (``warmup`` fraction of steps) then linear decay to zero. Batches are drawn by a
    seeded permutation, so the same seed gives the same adapter bit for bit on one machine. The
    base weights are frozen; only this adapter's factors train.

    Args:
        variant: a ``VARIANTS`` name (``lora``, ``rslora``, ``loraplus``, ``lorapro``, ``nola``,
            ``pissa``): the default init, scaling and optimizer, and its setup/finish.
        optimizer, optimizer_options: an ``OPTIMIZERS`` entry and its options (default: the variant's,
            AdamW for plain LoRA); scaling, init: ``SCALINGS`` / ``INITS`` names (default: the variant's).

    Returns:
        TrainResult(adapter, history) with one row per step: ``step, loss, lr``.
    """
    check_training(lab, name=name, new="adapter", tasks=task, r=r, alpha=alpha, steps=steps, lr=lr,
                   batch_size=batch_size, seed=seed, dropout=dropout, weight_decay=weight_decay,
                   warmup=warmup)
    tasks = list(task) if isinstance(task, list | tuple) else [task]
    features = encode_tasks(lab, tasks)
    v, run = resolve(variant, init=init, scaling=scaling, optimizer=optimizer,
                     optimizer_options=optimizer_options)
    if v.setup:
        adapter = v.setup(lab, name, r=r, alpha=alpha, targets=targets, scaling=run["scaling"])
    else:
        adapter = lab.new_adapter(name, r=r, alpha=alpha, targets=targets, init=run["init"],
                                  scaling=run["scaling"], seed=seed)
    adapter.lineage = {
        "method": "train_lora", "tasks": [t.name for t in tasks], "r": r,
        "alpha": alpha or 2 * r, "targets": targets, "steps": steps, "lr": lr, "batch_size": batch_size,
        "seed": seed, "scaling": run["scaling"], "dropout": dropout, "base": lab.name, "variant": variant,
        "optimizer": run["optimizer"],
    }
    layers = [layer for layer in lab.layers.values() if name in layer.names]
    pairs = [(layer.lora_A[name], layer.lora_B[name], layer.scaling[name]) for layer in layers]
    start = time.perf_counter()
    try:
        for layer in layers:
            layer.dropout[name] = dropout
        history = fit(lab, [p for A, B, _ in pairs for p in (A, B)], features, use=name, label=name,
                      steps=steps, lr=lr, batch_size=batch_size, seed=seed, weight_decay=weight_decay,
                      warmup=warmup, progress=progress, optimizer=run["optimizer"],
                      optimizer_options=run["optimizer_options"], pairs=pairs)
    finally:
        for layer in layers:
            layer.dropout[name] = 0.0
    if v.finish:
        adapter = v.finish(lab, name)
    adapter.lineage["final_loss"] = float(history["loss"].tail(5).mean()) if len(history) else None
    adapter.lineage["seconds"] = round(time.perf_counter() - start, 1)
    return TrainResult(adapter, history)
