"""skewed: a class-imbalanced copy of a real choice task, by subsampling its training split.

    topic9 = skewed(tasks.load("topic")["topic"], ratio=9, n_majority=72)
    # train: 72 "Computers" quotes, 8 of each other topic (9 : 1); eval: the real balanced held-out split

The majority class keeps ``n_majority`` training examples (default: all it has), every other class
``round(n_majority / ratio)`` (at least 1), each chosen by a seeded shuffle; the order is shuffled at
the end. The eval split is left as it is (class-balanced for the registered choice tasks), so that
balanced accuracy there is the mean per-class recall with every class equally sampled. The task's
metric becomes ``balanced_accuracy`` unless another is named.

Reference: Menta (Zhang et al., arXiv 2512.02716) trains and scores on naturally imbalanced mental-
health tasks with balanced accuracy; here the imbalance is made by subsampling, a reconstruction.
"""

from __future__ import annotations

import dataclasses
import random

from workbench.errors import WorkbenchError
from workbench.tasks.base import Task


def class_counts(examples) -> dict[str, int]:
    """Target -> number of examples, targets in sorted order."""
    counts: dict[str, int] = {}
    for e in examples:
        counts[e.target] = counts.get(e.target, 0) + 1
    return dict(sorted(counts.items()))


def skewed(task: Task, *, ratio: float = 9.0, majority: str | None = None, n_majority: int | None = None,
           seed: int = 0, metric: str = "balanced_accuracy") -> Task:
    """A copy of ``task`` whose training split has a ``ratio`` : 1 majority-to-minority class skew.

    Args:
        task: a choice task (every example has ``choices``; the targets are its classes).
        ratio: majority count / each minority count (≥ 1).
        majority: the majority class (default: the first target in sorted order).
        n_majority: training examples of the majority class (default: all it has).
        seed: seeds which examples are kept.
        metric: the copy's metric (default ``balanced_accuracy``).

    Returns:
        A Task named ``<name>_skew<ratio>`` with the subsampled train split and the same eval split.
    """
    if not ratio >= 1:
        raise WorkbenchError(f"ratio={ratio} must be ≥ 1 (majority count per minority count)")
    if any(e.choices is None for e in task.train):
        raise WorkbenchError(f"task {task.name!r} has examples without choices; skewed needs a choice task")
    groups: dict[str, list] = {}
    for e in task.train:
        groups.setdefault(e.target, []).append(e)
    labels = sorted(groups)
    majority = labels[0] if majority is None else majority
    if majority not in groups:
        raise WorkbenchError(f"majority class {majority!r} is not a target of {task.name!r}: {labels}")
    n_major = len(groups[majority]) if n_majority is None else int(n_majority)
    n_minor = max(1, round(n_major / ratio))
    rng = random.Random(f"skew:{task.name}:{seed}")
    train = []
    for label in labels:
        want = n_major if label == majority else n_minor
        pool = list(groups[label])
        if want > len(pool):
            raise WorkbenchError(f"class {label!r} of {task.name!r} has {len(pool)} training examples, fewer "
                                 f"than the {want} asked; lower n_majority (now {n_major})")
        rng.shuffle(pool)
        train += pool[:want]
    rng.shuffle(train)
    name = f"{task.name}_skew{ratio:g}"
    return dataclasses.replace(task, name=name, train=train, metric=metric,
                               description=f"{task.description} (train skewed {ratio:g}:1 toward {majority})")
