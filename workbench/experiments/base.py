"""The experiment contract: one file per reproduced claim, registered in ``EXPERIMENTS``.

An experiment declares its claims, its arms and two schedules (``full`` for ``make reproduce``,
``quick`` for the tests and tutorials), and implements two methods:

- ``run_arm(lab, arm, seed, schedule)``: train and measure one arm with one seed; return tidy rows
  ``arm, measure, task, value`` (``task`` is ``""`` for whole-model measures), leaving ``lab`` as it
  found it (``scratch``);
- ``verdicts(table)``: each claim tried on the per-seed table of all seeds (usually a paired
  difference against the baseline arm, with its 95% t interval over seeds).

``workbench.experiments.runner.reproduce(name)`` runs the seeds and writes the results.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd

from workbench.experiments.stats import Interval, mean_interval
from workbench.registry import Registry

COLUMNS = ["experiment", "seed", "arm", "measure", "task", "value"]


@dataclass(frozen=True)
class Schedule:
    """How long an experiment trains and how much it evaluates.

    Attributes:
        steps: optimizer steps per arm.
        lr: learning rate (the same for every arm).
        batch_size: examples per step.
        eval_limit: held-out examples per task (None: all of them).
        seeds: the seeds run by default.
        prompts: held-out prompts per task for the routing records.
    """

    steps: int
    lr: float = 1e-3
    batch_size: int = 8
    eval_limit: int | None = None
    seeds: tuple[int, ...] = (0, 1, 2)
    prompts: int = 16


@dataclass(frozen=True)
class Verdict:
    """One claim tried: the measure it rests on, its interval over seeds, and whether it holds.

    ``holds`` is True/False when the interval decides it, None when it straddles the threshold
    (or n = 1): "not shown" rather than "refuted".
    """

    claim: str
    measure: str
    interval: Interval
    holds: bool | None
    note: str = ""


class Experiment:
    """Base class of the registered experiments (see the module docstring)."""

    title: str = ""
    claims: tuple[str, ...] = ()
    arms: tuple[str, ...] = ()
    full: Schedule = Schedule(steps=60)
    quick: Schedule = Schedule(steps=2, eval_limit=4, seeds=(0,), prompts=2)
    notes: tuple[str, ...] = ()  # settings and deviations printed in the summary
    tasks: tuple[str, ...] = ()  # the real tasks ``load_tasks`` gives, in order

    def load_tasks(self) -> dict:
        """name -> Task of ``tasks``, in order (a test subclass gives toy tasks for a tiny lab)."""
        from workbench import tasks as task_registry

        return task_registry.load(list(self.tasks))

    def run_arm(self, lab, arm: str, seed: int, schedule: Schedule) -> pd.DataFrame:
        raise NotImplementedError

    def verdicts(self, table: pd.DataFrame) -> list[Verdict]:
        return []


EXPERIMENTS: Registry[type[Experiment]] = Registry("experiment", base=Experiment,
                                                     package="workbench.experiments")


def rows(arm: str, measures: dict[str, float], task: str = "") -> list[dict]:
    """Tidy rows of one arm: ``{measure: value}`` -> ``arm, measure, task, value``."""
    return [{"arm": arm, "measure": m, "task": task, "value": float(v)} for m, v in measures.items()]


def per_seed(table: pd.DataFrame, arm: str, measure: str, task: str = "") -> pd.Series:
    """seed -> value of one (arm, measure, task)."""
    part = table[(table.arm == arm) & (table.measure == measure) & (table.task == task)]
    return part.set_index("seed")["value"].sort_index()


def paired(table: pd.DataFrame, measure: str, arm: str, baseline: str, task: str = "") -> Interval:
    """The interval over seeds of ``arm − baseline`` on ``measure`` (seeds present in both)."""
    a, b = per_seed(table, arm, measure, task), per_seed(table, baseline, measure, task)
    common = a.index.intersection(b.index)
    return mean_interval((a[common] - b[common]).tolist())


def decide(interval: Interval, *, above: float = 0.0) -> bool | None:
    """True when the interval lies above ``above``, False when below, None when it straddles it."""
    if interval.n < 2:
        return None
    if interval.low > above:
        return True
    if interval.high < above:
        return False
    return None


def at_least(interval: Interval) -> bool | None:
    """A "≥ baseline" claim on a difference: refuted when the interval lies wholly below 0, shown
    (strictly better) when wholly above, not decided when it straddles 0 or n = 1."""
    return decide(interval)


def per_rank(lab, targets) -> int:
    """Trainable parameters one rank of a plain LoRA on ``targets`` costs: Σ (in + out)."""
    return sum(i + o for o, i in lab.shapes(targets).values())


def matched_rank(lab, budget: int, targets) -> int:
    """The rank of a plain LoRA on ``targets`` whose trainable count is the closest to ``budget``."""
    return max(1, round(budget / per_rank(lab, targets)))


@contextmanager
def scratch(lab) -> Iterator[None]:
    """Remove every adapter and router an arm added to ``lab`` when the arm is done."""
    adapters, routers = set(lab.adapters), set(lab.routers)
    try:
        yield
    finally:
        lab.use(None)
        for name in set(lab.routers) - routers:
            lab.remove_router(name)
        for name in set(lab.adapters) - adapters:
            lab.remove_adapter(name)
