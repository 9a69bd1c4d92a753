"""reproduce: run an experiment's arms over seeds and write its results, atomically, after every run.

    reproduce("mixlora")                      # the full schedule, 3 seeds -> results/mixlora.{csv,md}
    reproduce("mixlora", quick=True)          # a few steps, one seed -> results/quick/

Seeds run one after another, each over all arms (the baseline first), so a run stopped midway keeps
complete, paired seeds (the summary says how many); ``arms=`` adds arms to an existing table later.
The per-seed table is tidy (``experiment, seed, arm, measure, task, value``); the markdown summary
has each measure's mean and 95% t interval over seeds, each claim's verdict, the command, the date
and the machine (CPU count, torch threads, load average). Both files are rewritten after every (arm, seed).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from workbench.errors import WorkbenchError
from workbench.experiments.base import COLUMNS, EXPERIMENTS, Experiment, Schedule
from workbench.experiments.files import results_root, write_text
from workbench.experiments.index import write_index
from workbench.experiments.summary import summary_markdown
from workbench.runs import ENV as TRACKING_ENV

MODEL = "smollm2-135m"


@dataclass
class Reproduction:
    """What ``reproduce`` wrote: the per-seed table, the paths of its two files, the verdicts."""

    table: pd.DataFrame
    csv: Path
    markdown: Path
    verdicts: list


def reproduce(name: str, *, quick: bool = False, seeds: Sequence[int] | None = None,
              arms: Sequence[str] | None = None, resume: bool = False, out: str | Path | None = None,
              command: str | None = None,
              lab=None, experiment: Experiment | None = None,
              log: Callable[[str], None] = print) -> Reproduction:
    """Run experiment ``name`` and write ``<out>/<name>.csv`` and ``<out>/<name>.md``.

    Args:
        quick: the experiment's quick schedule (a few steps, one seed, a tiny evaluation).
        seeds: override the schedule's seeds.
        arms: run only these arms; the rows of the other arms already in ``<name>.csv`` are kept
            (their schedule must be the same), so arms can be added run by run.
        resume: keep the seeds ``<name>.csv`` already has for every arm to run, and run only the others
            (a seed a stopped run left half done runs again from its first arm).
        out: the folder (default ``results/``, or ``results/quick/`` when ``quick``).
        command: the command line recorded in the summary (default: the equivalent CLI line).
        lab: a ``Workbench`` on SmolLM2 to reuse (default: a fresh one; arms clean up after themselves).
        experiment: an unregistered ``Experiment`` to run under ``name`` (default: the registered one).
    """
    experiment = experiment if experiment is not None else EXPERIMENTS.get(name)()
    schedule: Schedule = experiment.quick if quick else experiment.full
    seeds = list(schedule.seeds if seeds is None else seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise WorkbenchError(f"seeds must be whole numbers ≥ 0, got {seeds!r}")
    unknown = sorted(set(arms or ()) - set(experiment.arms))
    if unknown:
        raise WorkbenchError(f"experiment {name!r} has no arm {unknown}; its arms: {list(experiment.arms)}")
    run_arms = list(arms) if arms else list(experiment.arms)
    folder = Path(out) if out is not None else results_root() / ("quick" if quick else "")
    folder.mkdir(parents=True, exist_ok=True)
    csv, md = folder / f"{name}.csv", folder / f"{name}.md"
    earlier = (arms or resume) and csv.exists()
    kept = pd.read_csv(csv, keep_default_na=False)[COLUMNS] if earlier else pd.DataFrame()
    finished = finished_seeds(kept, run_arms) if resume else set()
    if len(kept):
        kept = kept[~kept.arm.isin(run_arms) | kept.seed.isin(finished)]
    to_run = [s for s in seeds if s not in finished]
    if lab is None:
        from workbench.lab import Workbench

        lab = Workbench.from_zoo(MODEL)
        if not os.environ.get(TRACKING_ENV):  # experiments record to their tables; a store only when asked
            lab.track(False)
    command = command or " ".join(["lora-workbench reproduce", name, *(["--quick"] if quick else []),
                                   "--seeds", *map(str, seeds), *(["--arms", *arms] if arms else []),
                                   *(["--resume"] if resume else [])])
    commands = [command]
    if len(kept) and md.exists():  # the other arms came from earlier commands: keep them in the summary
        earlier = [line for line in md.read_text().splitlines() if line.startswith("Command")]
        commands = [c for line in earlier for c in re.findall(r"`([^`]+)`", line)] + commands
    info = {"commands": commands, "started": _now(), "machine": machine(), "load_start": _load(),
            "schedule": schedule, "quick": quick, "seeds_asked": seeds}
    parts, verdicts = [kept] if len(kept) else [], []
    if finished:
        log(f"{name}: seeds {sorted(finished)} already in {csv.name} for every arm: kept")
    for seed in to_run:
        for arm in run_arms:
            t0 = time.perf_counter()
            log(f"{name}: {arm}, seed {seed} ({schedule.steps} steps) ...")
            part = experiment.run_arm(lab, arm, seed, schedule)
            parts.append(part.assign(experiment=name, seed=seed))
            table = pd.concat(parts, ignore_index=True)[COLUMNS]
            verdicts = experiment.verdicts(table)
            info |= {"finished": _now(), "load_end": _load()}
            write_text(csv, table.to_csv(index=False))
            write_text(md, summary_markdown(experiment, name, table, verdicts, info))
            log(f"{name}: {arm}, seed {seed} done in {time.perf_counter() - t0:.0f} s "
                f"(load {_load()}) -> {csv.name}, {md.name}")
    if not parts:
        raise WorkbenchError(f"{name}: nothing to run or keep; check the seeds {seeds} and arms {run_arms}")
    if not to_run:  # every seed was already there: the verdicts of the kept table
        verdicts = experiment.verdicts(pd.concat(parts, ignore_index=True)[COLUMNS])
    if not quick:  # the folder's index of every claim (results/README.md) follows each full run
        write_index(folder)
    return Reproduction(pd.concat(parts, ignore_index=True)[COLUMNS], csv, md, verdicts)


def finished_seeds(table: pd.DataFrame, arms: Sequence[str]) -> set[int]:
    """The seeds of ``table`` that have rows for every one of ``arms``."""
    if not len(table):
        return set()
    have = table[table.arm.isin(arms)].groupby("seed").arm.nunique()
    return {int(seed) for seed, n in have.items() if n == len(set(arms))}


def machine() -> dict:
    """What the numbers were measured on."""
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version()}


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
