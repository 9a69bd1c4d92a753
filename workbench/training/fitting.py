"""fit: the plainest front of the one ``Loop`` — the LM's token loss on encoded features, shuffled by seed.

``train_lora``, ``train_router`` and ``cat_learned`` train through it; ``encode_tasks`` makes its features.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd
import torch

from workbench.errors import WorkbenchError
from workbench.training.loop import Loop
from workbench.training.objectives import TokenLoss
from workbench.training.sources import Shuffled


def fit(lab, params: Sequence[torch.nn.Parameter], features: Sequence[dict], *, use, label: str, steps: int,
        lr: float, batch_size: int, seed: int, weight_decay: float = 0.0, warmup: float = 0.1,
        progress: bool = True, context: Callable[[dict, list[dict]], dict] | None = None,
        optimizer: str = "adamw", optimizer_options: dict | None = None, pairs: Sequence = (),
        accumulate: int = 1) -> pd.DataFrame:
    """Train ``params`` on ``features`` (dicts with ``input_ids``, ``labels`` and ``task``) with ``use`` on.

    The LM's token loss over seeded shuffled batches, in the routing context (each sample's task,
    the attention mask, and what ``context(batch, features)`` adds), plus auxiliary routing terms.
    The same seed gives the same result bit for bit on one machine; what the lab used, its train
    mode and the parameters' ``requires_grad`` are restored after.

    Returns:
        One row per step: ``step, loss`` (task + auxiliary), ``lr``, and ``task_loss, aux`` when a
        router adds auxiliary losses (plus one ``aux/<router>/<loss>`` column per term).
    """
    params = list(params)
    items = [(f.get("task", 0), f) for f in features]
    loop = Loop(params, TokenLoss(lab, context), Shuffled(items, seed),
                session=lambda: lab.session(use, train=True, trainable=params), label=label, steps=steps,
                lr=lr, batch_size=batch_size, seed=seed, accumulate=accumulate, weight_decay=weight_decay,
                warmup=warmup, optimizer=optimizer, optimizer_options=optimizer_options, pairs=pairs,
                reseed="run", progress=progress)
    loop.run()
    return loop.history()


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
