"""The data types every task shares, the task registry, and seeded split helpers.

A task is a real data set cut into a fixed, seeded train/eval split, plus the name of the metric
that scores a model on it. Builders are registered by name in ``TASKS`` (one builder per file) and
called with ``builder(seed=0, n_train=..., n_eval=...)``; ``load`` is the short way to call them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from workbench.errors import WorkbenchError
from workbench.registry import Registry
from workbench.tasks.metric import METRICS

T = TypeVar("T")

DEFAULT_SYSTEM = "You are a helpful assistant."
"""System prompt used when ``Task.system`` is None: short and neutral, not the tokenizer default."""


@dataclass(frozen=True)
class Example:
    """One prompt and its expected answer.

    Attributes:
        prompt: The user message.
        target: The expected assistant answer, as an exact string.
        choices: Candidate answers for choice tasks (``target`` is one of them), else None.
    """

    prompt: str
    target: str
    choices: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.choices is not None:
            choices = tuple(self.choices)
            object.__setattr__(self, "choices", choices)
            if self.target not in choices:
                raise WorkbenchError(
                    f"example target {self.target!r} is not among its choices {choices}; "
                    "add the target to the choices"
                )
            if len(set(choices)) != len(choices):
                raise WorkbenchError(f"example choices {choices} repeat an entry; make them unique")


@dataclass
class Task:
    """A named data set with a train/eval split and the metric that scores it.

    Attributes:
        name: Registry name, e.g. ``"arithmetic"``.
        description: One line saying what the data is and where it comes from.
        metric: A ``METRICS`` name: ``"accuracy"``, ``"exact_match"`` or ``"loss"``.
        train: Training examples.
        eval: Evaluation examples (disjoint from ``train``).
        system: System prompt for the chat template; None means ``DEFAULT_SYSTEM``.
        max_new_tokens: Generation budget for generation metrics.
        max_length: Token budget of one encoded example (prompt + target + end-of-turn).
    """

    name: str
    description: str
    metric: str
    train: list[Example]
    eval: list[Example]
    system: str | None = None
    max_new_tokens: int = 8
    max_length: int = 128

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise WorkbenchError(
                f"task {self.name!r} names an unknown metric {self.metric!r}; "
                f"choose one of: {', '.join(METRICS.names())}"
            )
        if METRICS.has(self.metric, "needs_choices"):
            for split in (self.train, self.eval):
                if any(e.choices is None for e in split):
                    raise WorkbenchError(
                        f"task {self.name!r} uses the {self.metric} metric, so every example needs "
                        "choices; give each Example a choices tuple"
                    )

    @property
    def system_prompt(self) -> str:
        """The system prompt actually used (``system`` or the neutral default)."""
        return self.system if self.system is not None else DEFAULT_SYSTEM

    def __repr__(self) -> str:
        return (
            f"Task({self.name!r}, metric={self.metric!r}, train={len(self.train)}, "
            f"eval={len(self.eval)}, max_length={self.max_length})"
        )


TASKS: Registry[Callable[..., Task]] = Registry("task")
"""name -> builder(seed=0, n_train=..., n_eval=...) -> Task."""

SPLIT_BOUNDS = {"seed": (0, None), "n_train": (0, None), "n_eval": (1, None)}  # every builder's split
SPLIT_DOCS = {"seed": "seed of the train/eval split (and of generated data); same seed, same split",
              "n_train": "number of training examples", "n_eval": "number of evaluation examples"}


def load(names: str | Sequence[str], seed: int = 0) -> dict[str, Task]:
    """Build one or more registered tasks with their default sizes.

    Args:
        names: A task name or a list of names (see ``TASKS.names()``).
        seed: Seed of the train/eval split (and of generated data); same seed, same split.

    Returns:
        A dict from name to Task, in the order given.

    Example:
        >>> tasks = load(["arithmetic", "topic"])
        >>> tasks["topic"].metric
        'accuracy'
    """
    if isinstance(names, str):
        names = [names]
    return {name: TASKS.get(name)(seed=seed) for name in names}


def check_sizes(task: str, n_train: int, n_eval: int, available: int) -> None:
    """Raise a clear error when a split asks for more examples than the data holds."""
    if n_train < 0 or n_eval < 1:
        raise WorkbenchError(f"task {task!r}: need n_train >= 0 and n_eval >= 1")
    if n_train + n_eval > available:
        raise WorkbenchError(
            f"task {task!r} has {available} usable examples but n_train={n_train} + "
            f"n_eval={n_eval} were asked for; lower n_train or n_eval"
        )


def balanced_split(
    groups: dict[Hashable, Sequence[T]], n_train: int, n_eval: int, seed: int, task: str
) -> tuple[list[T], list[T]]:
    """Split items grouped by label into class-balanced, disjoint train and eval lists.

    Each group is shuffled with the seed; eval takes the first ``n_eval // k`` items of every group
    (the remainder goes to the first groups), train the next ones the same way. Eval therefore does
    not depend on ``n_train``. Both lists are shuffled at the end.

    Args:
        groups: label -> items; labels are taken in sorted order for determinism.
        n_train: Total train size.
        n_eval: Total eval size.
        seed: Split seed.
        task: Task name, for error messages.

    Returns:
        ``(train, eval)``.
    """
    rng = random.Random(f"{task}:{seed}")
    labels = sorted(groups, key=str)
    pools = {}
    for label in labels:
        items = list(groups[label])
        rng.shuffle(items)
        pools[label] = items
    per_eval = _spread(n_eval, len(labels))
    per_train = _spread(n_train, len(labels))
    for label, ne, nt in zip(labels, per_eval, per_train, strict=True):
        if ne + nt > len(pools[label]):
            most = min(len(p) for p in pools.values()) * len(labels)
            raise WorkbenchError(
                f"task {task!r}: class {label!r} has {len(pools[label])} examples, fewer than the "
                f"{ne} eval + {nt} train a balanced split needs; keep n_train + n_eval <= {most}"
            )
    eval_, train = [], []
    for label, ne, nt in zip(labels, per_eval, per_train, strict=True):
        eval_ += pools[label][:ne]
        train += pools[label][ne : ne + nt]
    rng.shuffle(eval_)
    rng.shuffle(train)
    return train, eval_


def plain_split(items: Iterable[T], n_train: int, n_eval: int, seed: int, task: str):
    """Shuffle ``items`` with the seed; eval is the first ``n_eval``, train the next ``n_train``."""
    items = list(items)
    check_sizes(task, n_train, n_eval, len(items))
    random.Random(f"{task}:{seed}").shuffle(items)
    return items[n_eval : n_eval + n_train], items[:n_eval]


def _spread(n: int, k: int) -> list[int]:
    """``n`` split into ``k`` near-equal counts, larger ones first."""
    return [n // k + (1 if i < n % k else 0) for i in range(k)]
