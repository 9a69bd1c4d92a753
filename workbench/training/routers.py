"""train_router: train a router the lab holds (its trainable parameters only) on one or more tasks."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd

from workbench.errors import WorkbenchError
from workbench.routing import Routed
from workbench.training.fitting import encode_tasks, fit
from workbench.training.validate import check_training


@dataclass
class RouterTrainResult:
    """The trained ``Routed`` (still in the lab) and its history (task loss, auxiliary losses)."""

    routed: Routed
    history: pd.DataFrame

    def __iter__(self):
        return iter((self.routed, self.history))


def train_router(lab, name: str, tasks, *, steps: int = 60, lr: float = 2e-3, batch_size: int = 8,
                 seed: int = 0, weight_decay: float = 0.0, warmup: float = 0.1, progress: bool = True,
                 optimizer: str = "adamw", optimizer_options: dict | None = None,
                 accumulate: int = 1) -> RouterTrainResult:
    """Train router ``name`` (added with ``lab.add_router``) on ``tasks``, mixed by concatenation.

    Each sample carries its task's index in the routing context (``task``), so routers with
    supervised or type-driven balancing see it; auxiliary losses are added to the task loss. For
    per-task gradient methods (PCGrad on a mixture) use ``MultiTaskTrainer(lab, name, tasks, ...)``.

    Args:
        optimizer, optimizer_options: an ``OPTIMIZERS`` entry that trains any parameters (``adamw``,
            ``loraplus``) and its options.
        accumulate: micro-batches per optimizer step.
    """
    check_training(lab, name=name, new="router", tasks=tasks, steps=steps, lr=lr, batch_size=batch_size,
                   seed=seed, weight_decay=weight_decay, warmup=warmup, accumulate=accumulate)
    if name not in lab.routers:
        raise WorkbenchError(f"no router {name!r} in this lab; add it with lab.add_router first "
                             f"(it has: {list(lab.routers) or '(none)'})")
    tasks = list(tasks) if isinstance(tasks, list | tuple) else [tasks]
    routed = lab.routers[name]
    start = time.perf_counter()
    history = fit(lab, routed.trainable(), encode_tasks(lab, tasks), use=name, label=name, steps=steps,
                  lr=lr, batch_size=batch_size, seed=seed, weight_decay=weight_decay, warmup=warmup,
                  progress=progress, optimizer=optimizer, optimizer_options=optimizer_options,
                  accumulate=accumulate)
    routed.params["training"] = {"tasks": [t.name for t in tasks], "steps": steps, "lr": lr,
                                 "batch_size": batch_size, "seed": seed,
                                 "seconds": round(time.perf_counter() - start, 1)}
    return RouterTrainResult(routed, history)
