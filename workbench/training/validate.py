"""Argument checks run first by every training front: a bad value is refused before the lab changes.

``train_lora``, ``train_router`` and ``MultiTaskTrainer`` call ``check_training(...)`` on their first
line, so a negative or NaN learning rate, a dropout of 1.5, ``steps=0`` or ``r=0`` never installs
half an adapter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from workbench.errors import WorkbenchError
from workbench.tasks import Task


def check_training(lab, *, name: str | None = None, new: str | None = None, tasks=None,
                   r=None, alpha=None, **values) -> None:
    """Refuse bad training arguments, naming the argument, its value and the fix.

    Args:
        name: the adapter/router trained; ``new`` says which: ``"adapter"`` must not exist yet
            (``train_lora``), ``"router"`` must exist (``train_router``), ``None``: either.
        tasks: a Task, a list/tuple of Tasks, or (multi-task) a mapping name -> Task or features.
        values: ``steps``, ``lr``, ``batch_size``, ``accumulate``, ``dropout``, ``weight_decay``,
            ``warmup``, ``seed``, ``temperature`` as given.
    """
    if name is not None and (not isinstance(name, str) or not name.isidentifier()):
        raise WorkbenchError(f"name {name!r} is not a Python identifier; use letters, digits and _")
    if new == "adapter" and name is not None and (name in lab.adapters or name in lab.routers):
        raise WorkbenchError(f"an adapter named {name!r} is already in this lab; pick another name "
                             "(or lab.remove_adapter it first)")
    if new == "router" and name is not None and name not in lab.routers:
        raise WorkbenchError(f"no router {name!r} in this lab; add it with lab.add_router first "
                             f"(it has: {list(lab.routers) or '(none)'})")
    for key in ("steps", "batch_size", "accumulate"):
        if key in values:
            _count(key, values[key])
    if "seed" in values and (isinstance(values["seed"], bool) or not isinstance(values["seed"], int)):
        raise WorkbenchError(f"seed={values['seed']!r} must be a whole number")
    if "lr" in values:
        lr = values["lr"]
        if isinstance(lr, bool) or not isinstance(lr, int | float) or not math.isfinite(lr) or lr <= 0:
            raise WorkbenchError(f"learning rate must be a finite number > 0; got lr={lr!r} (e.g. lr=1e-3)")
    if "dropout" in values:
        d = _number("dropout", values["dropout"], "a probability in [0, 1), e.g. dropout=0.05")
        if not 0 <= d < 1:
            raise WorkbenchError(f"dropout={d} must be in [0, 1) (the probability of dropping an input)")
    if "weight_decay" in values:
        wd = _number("weight_decay", values["weight_decay"], "e.g. weight_decay=0.01")
        if wd < 0:
            raise WorkbenchError(f"weight_decay={wd} must be 0 or more")
    if "warmup" in values:
        w = _number("warmup", values["warmup"], "the warm-up fraction of steps, e.g. warmup=0.1")
        if not 0 <= w <= 1:
            raise WorkbenchError(f"warmup={w} must be a fraction of the steps in [0, 1]")
    if values.get("temperature") is not None:
        t = _number("temperature", values["temperature"], "e.g. temperature=2.0")
        if t <= 0:
            raise WorkbenchError(f"temperature={t} must be greater than 0")
    if r is not None:
        for where, rank in (r.items() if isinstance(r, Mapping) else [("r", r)]):
            if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
                raise WorkbenchError(f"{where if where == 'r' else f'r[{where!r}]'}={rank!r}: the rank "
                                     "must be a whole number of at least 1 (e.g. r=8)")
    if alpha is not None:
        _number("alpha", alpha, "e.g. alpha=16 (or None for 2·r)")
    if tasks is not None:
        _tasks(tasks)


def _tasks(tasks) -> None:
    if isinstance(tasks, str):
        raise WorkbenchError(f"tasks={tasks!r} is a name; pass Task objects: "
                             f"workbench.tasks.load([{tasks!r}])[{tasks!r}]")
    items = list(tasks.values()) if isinstance(tasks, Mapping) else (
        list(tasks) if isinstance(tasks, list | tuple) else [tasks])
    if not items:
        raise WorkbenchError("no tasks given; pass a Task (workbench.tasks.load) or a list of them")
    for t in items:
        if isinstance(t, str):
            raise WorkbenchError(f"task {t!r} is a name; pass Task objects: workbench.tasks.load([{t!r}])")
        if not isinstance(t, Task) and not (isinstance(tasks, Mapping) and isinstance(t, list | tuple)):
            raise WorkbenchError(f"expected a workbench Task, got {type(t).__name__}; load tasks with "
                                 "workbench.tasks.load(names)")


def _count(key: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise WorkbenchError(f"{key}={value!r} must be a whole number of at least 1")
    return value


def _number(key: str, value, fix: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WorkbenchError(f"{key}={value!r} must be a number: {fix}")
    if not math.isfinite(value):
        raise WorkbenchError(f"{key}={value} is not finite: {fix}")
    return float(value)
