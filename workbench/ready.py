"""The ready adapters shipped in ``adapters/``: four SmolLM2 task LoRAs, and the recipe that made them.

    lab = Workbench.from_zoo("smollm2-135m")
    ready.load_all(lab)             # adds arithmetic, topic, language, code
    scores = lab.evaluate([None, *ready.NAMES], tasks.load(ready.NAMES))

``scripts/train_ready_adapters.py`` retrains them from ``RECIPES`` (``make adapters``).
"""

from __future__ import annotations

from pathlib import Path

from workbench.errors import WorkbenchError

BASE = "smollm2-135m"
# name -> train_lora arguments (the task of the same name; r=8 on attention, as the issue asks).
RECIPES: dict[str, dict] = {
    "arithmetic": {"steps": 120, "lr": 1e-3, "batch_size": 8},
    "topic": {"steps": 80, "lr": 1e-3, "batch_size": 8},
    "language": {"steps": 80, "lr": 1e-3, "batch_size": 8},
    "code": {"steps": 80, "lr": 1e-3, "batch_size": 4},
}
COMMON = {"r": 8, "alpha": 16, "targets": "attention", "seed": 0}
NAMES = list(RECIPES)


def root() -> Path:
    """The ``adapters/`` folder of the repository (shipped beside the package in an editable install)."""
    return Path(__file__).resolve().parent.parent / "adapters"


def path(name: str) -> Path:
    """The PEFT directory of ready adapter ``name``."""
    if name not in RECIPES:
        raise WorkbenchError(f"no ready adapter {name!r}; the ready adapters are {NAMES}")
    p = root() / name
    if not (p / "adapter_config.json").exists():
        raise WorkbenchError(
            f"ready adapter {name!r} is missing at {p}; run from a clone of the repository "
            "(pip install -e .), or rebuild them with `make adapters`"
        )
    return p


def load_all(lab, names: list[str] | None = None) -> list:
    """Load ready adapters (all by default) into ``lab``; returns the Adapters."""
    return [lab.load_adapter(path(n), name=n) for n in (names or NAMES)]
