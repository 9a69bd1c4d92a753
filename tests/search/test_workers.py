"""Search candidates scored on workers: a 4-point sweep (grid search) on a local Dask cluster and on local
processes gives the same candidates and scores as scoring them here; the cluster listens on loopback only."""

from __future__ import annotations

import os
import subprocess

import pandas as pd
import pytest

from tests.experiments.toy import toy_base, toy_library, toy_tasks
from workbench.errors import WorkbenchError
from workbench.search import FunctionObjective, LabObjective, SearchSpace, Workers, search

NAMES = ["colour", "fruit", "sum"]
COLUMNS = ["candidate", "task", "method", "weight.colour", "weight.fruit", "weight.sum", "value",
           "normalized", "objective"]


def _sweep(lab, workers=None) -> pd.DataFrame:
    objective = LabObjective(lab, NAMES, toy_tasks(), limit=2)
    run = search(objective, SearchSpace(NAMES, weights=(0.0, 1.0)), "grid", budget=4, seed=0, progress=False,
                 points=2, workers=workers)
    assert run.stopped_by == "budget" and len(run.candidates) == 4
    return run.frame[COLUMNS]


def _listening(pids: set[int]) -> list[str]:
    """The local addresses these processes listen on (TCP), from ``ss -ltnp``."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    return [line.split()[3] for line in out.splitlines() if any(f"pid={p}," in line for p in pids)]


@pytest.mark.slow  # starts a Dask cluster and a process pool (two workers each, each builds the base)
def test_a_sweep_on_dask_and_on_local_processes_equals_the_sweep_here_and_stays_on_loopback():
    pytest.importorskip("distributed", reason="Dask is the scale extra: pip install 'lora-workbench[scale]'")
    import psutil

    lab = toy_library(NAMES)
    here = _sweep(lab)
    with Workers(2, backend="dask", base=toy_base) as pool:
        on_dask = _sweep(lab, pool)
        pids = {os.getpid(), *(p.pid for p in psutil.Process().children(recursive=True))}
        addresses = _listening(pids)
    assert addresses and all(a.startswith("127.0.0.1:") for a in addresses), addresses
    with Workers(2, backend="processes", base=toy_base) as pool:
        on_processes = _sweep(lab, pool)
    pd.testing.assert_frame_equal(on_dask, here)
    pd.testing.assert_frame_equal(on_processes, here)


def test_workers_refuse_what_they_cannot_score():
    with pytest.raises(WorkbenchError, match="number of workers"):
        Workers(0)
    with pytest.raises(WorkbenchError, match="backend"):
        Workers(2, backend="ray")
    with Workers(1, backend="processes") as pool, pytest.raises(WorkbenchError, match="LabObjective"):
        search(FunctionObjective(lambda c: {"t": 0.0}, ["t"]), SearchSpace(NAMES), "random", budget=2,
               progress=False, workers=pool)
