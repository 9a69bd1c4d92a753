"""Training and evaluation of joined models (vision- or speech-language) in stages.

A joined model's inputs are embeddings with media tokens inside, so its stages run the one training
``Loop`` with the joined model's own loss (``JoinedLoss``) over (task, example) pairs.

    history = train_stages(vlm, tasks, stages=[
        Stage("projector", use=None, steps=40),                   # 1) the front end alone
        Stage("adapters", use="mm", steps=60, front=True),        # 2) MM-LoRA (+ projector, ladder)
    ])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd
import torch

from workbench.errors import WorkbenchError
from workbench.tasks.metrics import METRICS
from workbench.training import JoinedLoss, Loop, Shuffled


@dataclass
class Stage:
    """One training stage.

    Attributes:
        name: its label in the history (``stage`` column).
        use: what the LM applies (a router or adapter name, a list, or None for the base).
        steps: optimizer steps.
        lr: peak learning rate.
        front: also train the front end (projector, ladder) in this stage.
        adapters: train the parameters of what ``use`` names (routers' trainables).
        extra: more parameters to train (e.g. a PromptScaler), or a callable returning them.
    """

    name: str
    use: object = None
    steps: int = 40
    lr: float = 1e-3
    front: bool = True
    adapters: bool = True
    extra: Sequence[torch.nn.Parameter] | Callable[[], Sequence[torch.nn.Parameter]] = ()


def _used_params(model, use) -> list[torch.nn.Parameter]:
    names = [] if use is None else [use] if isinstance(use, str) else list(use)
    params = []
    for n in names:
        if n in model.lab.routers:
            params += model.lab.routers[n].trainable()
        elif n in model.lab.adapters:
            params += [p for path in model.lab.adapters[n].modules
                       for p in (model.lab.layers[path].lora_A[n], model.lab.layers[path].lora_B[n])]
        else:
            raise WorkbenchError(f"stage uses {n!r}, which is neither a router nor an adapter of the lab")
    return params


def train_stages(model, tasks: Sequence, stages: Sequence[Stage], *, batch_size: int = 8, seed: int = 0,
                 progress: bool = True) -> pd.DataFrame:
    """Train ``model`` on the training examples of ``tasks`` stage after stage.

    Each stage is one run of the training ``Loop`` (seeded shuffled batches of (task, example) pairs,
    ``model.loss``, AdamW, warm-up then linear decay, auxiliary routing terms added); what the lab
    applies, the model's mode and what trains are restored after each.

    Returns:
        One row per step: ``stage, step, loss, lr`` (and ``task_loss, aux, aux/...`` with routers
        that add auxiliary losses).
    """
    items = [(k, (t, e)) for k, t in enumerate(tasks) for e in t.train]
    if not items:
        raise WorkbenchError(f"tasks {[t.name for t in tasks]} have no training examples")
    rows = []
    for k, stage in enumerate(stages):
        params = (model.trainable_front() if stage.front else []) + \
                 (_used_params(model, stage.use) if stage.adapters else []) + \
                 list(stage.extra() if callable(stage.extra) else stage.extra)
        params = list({id(p): p for p in params}.values())
        loop = Loop(params, JoinedLoss(model), Shuffled(items, seed + 1009 * k), label=f"stage {stage.name}",
                    desc=f"training {stage.name}", steps=stage.steps, lr=stage.lr, batch_size=batch_size,
                    seed=seed + 1009 * k, reseed="run", progress=progress,
                    weight_decay=0.01,  # torch's AdamW default, which these stages always had
                    session=lambda stage=stage, params=params: model.lab.session(
                        stage.use, train=True, trainable=params, module=model))
        loop.run()
        rows += [r | {"stage": stage.name} for r in loop.rows]
    return pd.DataFrame(rows)


def evaluate_joined(model, tasks: Sequence, uses: dict[str, object], *, n_eval: int | None = None,
                    batch_size: int = 8) -> pd.DataFrame:
    """Score each ``uses`` entry (label -> what the LM applies) on each task's eval split.

    Returns:
        Tidy rows ``adapter, task, metric, value`` (``adapter`` is the label).
    """
    rows = []
    for label, use in uses.items():
        with model.lab.using(use):
            for task in tasks:
                examples = task.eval[:n_eval] if n_eval else task.eval
                value = METRICS.get(task.metric).fn(model, model.lab.tokenizer, task, examples,
                                                    batch_size=batch_size)
                rows.append({"adapter": label, "task": task.name, "metric": task.metric, "value": value})
    return pd.DataFrame(rows)
