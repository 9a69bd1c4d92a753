"""Data: a generator's training set, made of the late checkpoints the training lab keeps for each task.

    run = lab.train_multitask("arith", [tasks["arithmetic"]], steps=80, checkpoint_every=2)
    kept = late_checkpoints(run.checkpoints, late=0.5)    # the later half, sorted by step (numerically)
    data = CheckpointSet.build({"arithmetic": kept, ...})  # x (N, L) normalized, task (N,), stats

A checkpoint is an ``Adapter`` copy with lineage ``checkpoint_of, step, tasks, seed``
(``workbench.training`` makes them every ``checkpoint_every`` steps and at the end), or a PEFT
directory written by ``lab.save_adapter`` (its lineage travels inside; else its folder name's last
number is the step). Each is flattened with per-tensor normalization (``flatten``); a task's last
checkpoint gives the per-tensor ``(mean, std)`` used to de-normalize what is generated for it.

Reference: Shao et al., "In-Context Meta LoRA Generation" (ICM-LoRA), IJCAI 2025, arXiv 2501.17635;
authors' code ``train_lora/train_lora_arg.py`` (a checkpoint every epoch after epoch 100 of 200),
``utils/reformat_lora_param.py`` and ``utils/normalizeLoraWeight_small.py`` (the first 51 of the
sorted files are moved aside: ≈ the later half trains the CVAE), ``utils/ReconstructLora_cvae.py``
(de-normalization with the stats of the task's last checkpoint, ``normalized_adapter_model_99``).
Deviation: checkpoints are sorted by their step as a number (the authors' folder sort is
lexicographic: ``epoch_1, epoch_10, epoch_100, …``); ``late`` is a fraction, not a file count.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from workbench.adapters import Adapter, read_peft
from workbench.errors import WorkbenchError
from workbench.generation.flatten import Layout, flatten, layout_of


def step_of(checkpoint: Adapter) -> int:
    """The training step of a checkpoint: ``lineage["step"]``, else the last number in its name."""
    step = checkpoint.lineage.get("step")
    if isinstance(step, int) and not isinstance(step, bool):
        return step
    found = re.findall(r"\d+", checkpoint.name)
    if not found:
        raise WorkbenchError(f"checkpoint {checkpoint.name!r} says no step (no lineage['step'], no number in "
                             "its name); keep checkpoints with workbench.training (checkpoint_every=N)")
    return int(found[-1])


def _as_adapter(item) -> Adapter:
    if isinstance(item, Adapter):
        return item
    if isinstance(item, str | Path):
        path = Path(item)
        adapter = read_peft(path, _name(path.name))
        if "step" not in adapter.lineage and re.findall(r"\d+", path.name):
            adapter.lineage["step"] = int(re.findall(r"\d+", path.name)[-1])
        return adapter
    raise WorkbenchError(f"a checkpoint is an Adapter or a PEFT directory; got {type(item).__name__}")


def _name(folder: str) -> str:
    name = re.sub(r"\W", "_", folder)
    return name if name.isidentifier() else f"ckpt_{name}"


def late_checkpoints(checkpoints: Sequence, late: float = 0.5) -> list[Adapter]:
    """The later ``late`` fraction (at least one) of a run's checkpoints, sorted by step as a number.

    Args:
        checkpoints: Adapters with a step (lineage or name), or PEFT directories.
        late: the fraction kept from the end (1.0: all of them).
    """
    if not 0 < late <= 1:
        raise WorkbenchError(f"late is the fraction of checkpoints kept from the end, in (0, 1]; got {late}")
    adapters = sorted((_as_adapter(c) for c in checkpoints), key=step_of)
    if not adapters:
        raise WorkbenchError("no checkpoints given; train with checkpoint_every=N to keep some")
    keep = max(1, round(late * len(adapters)))
    return adapters[-keep:]


@dataclass
class CheckpointSet:
    """Flat normalized checkpoints of several tasks, one layout.

    Attributes:
        tasks: task names, in order (index = task id).
        x: (N, L) float32 normalized checkpoints; task: (N,) their task ids; steps: (N,) their steps.
        stats: task name -> (K, 2) per-tensor (mean, std) of its last checkpoint (for de-normalizing).
        layout: the shared layout.
    """

    tasks: list[str]
    x: torch.Tensor  # (N, L) float32
    task: torch.Tensor  # (N,) long
    steps: torch.Tensor  # (N,) long
    stats: dict[str, torch.Tensor]
    layout: Layout

    @classmethod
    def build(cls, runs: Mapping[str, Sequence], late: float = 1.0) -> CheckpointSet:
        """Flatten every task's checkpoints (its later ``late`` fraction, sorted by step).

        Args:
            runs: task name -> its checkpoints (Adapters or PEFT directories).
            late: the fraction of each task's checkpoints kept from the end (1.0: all given).
        """
        if not runs:
            raise WorkbenchError("give at least one task's checkpoints: {task name: [checkpoints]}")
        layout, rows, task, steps, stats = None, [], [], [], {}
        for t, (name, checkpoints) in enumerate(runs.items()):
            kept = late_checkpoints(checkpoints, late)
            for adapter in kept:
                layout = layout or layout_of(adapter)
                flat = flatten(adapter, layout)
                rows.append(flat.x.float())
                task.append(t)
                steps.append(step_of(adapter))
            stats[name] = flat.stats  # the last (latest) checkpoint's
        return cls(list(runs), torch.stack(rows), torch.tensor(task), torch.tensor(steps), stats, layout)

    def __len__(self) -> int:
        return self.x.shape[0]
