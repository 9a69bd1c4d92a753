"""Routers on disk: ``router.json`` (mechanism, parameters, base fingerprint) + ``router.safetensors``,
and, when it was trained, its training state: ``history.json`` (the run's rows), ``optimizer.safetensors``
+ ``training_state.json`` (the optimizer's tensors, its param groups, the scheduler and the step).

Written atomically (a crash leaves no half-written folder); read back only through safetensors and JSON.
A router that routes over the lab's adapters (a bank) names them in its parameters: load those
adapters first. Parameters a router gains after it is built (MoRA's ``task_ranks``) are replayed on
load by ``REPLAY``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import save_file

from workbench.adapters.files import atomic_directory, read_safetensors
from workbench.errors import WorkbenchError
from workbench.routing.mechanisms.mora import add_task_ranks
from workbench.routing.routed import Routed

CONFIG, WEIGHTS = "router.json", "router.safetensors"
HISTORY, OPTIMIZER, STATE = "history.json", "optimizer.safetensors", "training_state.json"


def _replay_task_ranks(routed: Routed, ranks: list[int]) -> None:
    for r in ranks[1:]:  # the first task's ranks come with the router
        add_task_ranks(routed, int(r))


# Parameters that routers record after they are built -> how ``load_router`` brings them back.
REPLAY: dict[str, Callable[[Routed, object], None]] = {"task_ranks": _replay_task_ranks}


def write_routed(routed: Routed, path: str | Path, *, base_fingerprint: str | None,
                 overwrite: bool = False, optimizer=None, scheduler=None, step: int | None = None) -> Path:
    """Write ``routed`` (and its ``history``, and ``optimizer``/``scheduler``/``step`` when given)."""
    state = {k: v.detach().cpu().contiguous() for k, v in routed.state_dict().items()}
    config = {"name": routed.name, "mechanism": routed.mechanism, "params": routed.params,
              "base_fingerprint": base_fingerprint}
    with atomic_directory(path, overwrite=overwrite) as tmp:
        save_file(state, str(tmp / WEIGHTS))
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, default=str) + "\n")
        if routed.history is not None and len(routed.history):
            rows = routed.history.to_dict(orient="records")  # floats as repr: they read back exactly
            (tmp / HISTORY).write_text(json.dumps(rows, default=_plain) + "\n")
        if optimizer is not None:
            tensors, groups = _flatten(optimizer.state_dict())
            save_file(tensors, str(tmp / OPTIMIZER))
            extra = {"param_groups": groups, "step": step,
                     "scheduler": None if scheduler is None else scheduler.state_dict()}
            (tmp / STATE).write_text(json.dumps(extra, indent=2, default=_plain) + "\n")
    return Path(path)


def read_training(path: str | Path) -> tuple[pd.DataFrame | None, dict | None]:
    """(history or None, {"optimizer": state dict, "scheduler": ..., "step": ...} or None)."""
    path = Path(path)
    history = None
    if (path / HISTORY).is_file():
        history = pd.DataFrame(_json(path / HISTORY))
    if not (path / OPTIMIZER).is_file():
        return history, None
    extra = _json(path / STATE)
    state: dict = {}
    for key, t in read_safetensors(path / OPTIMIZER).items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = t
    groups = extra.get("param_groups")
    if not isinstance(groups, list):
        raise WorkbenchError(f"{path / STATE} has no param_groups list; save the router again")
    groups = [{k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()}
              for g in groups]  # JSON made the tuples (Adam's betas) lists
    optimizer = {"state": state, "param_groups": groups}
    return history, {"optimizer": optimizer, "scheduler": extra.get("scheduler"), "step": extra.get("step")}


def _flatten(state_dict: dict) -> tuple[dict[str, torch.Tensor], list]:
    """A ``torch.optim`` state dict as safetensors tensors (``<param index>.<name>``) + its param groups."""
    tensors = {}
    for index, entries in state_dict["state"].items():
        for name, value in entries.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{index}.{name}"] = t.detach().cpu().contiguous()
    return tensors, state_dict["param_groups"]


def _plain(value):
    """What JSON cannot hold as itself: tensors as lists, anything else as its string."""
    return value.tolist() if torch.is_tensor(value) else str(value)


def _json(file: Path):
    try:
        return json.loads(file.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, FileNotFoundError) as e:
        raise WorkbenchError(f"{file} cannot be read ({type(e).__name__}: {e}); "
                             "save the router again") from None


def read_config(path: str | Path) -> dict:
    file = Path(path) / CONFIG
    if not file.is_file():
        raise WorkbenchError(f"{path} is not a saved router: {CONFIG} is missing (save with lab.save_router)")
    try:
        config = json.loads(file.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise WorkbenchError(f"{file} is not UTF-8 text (at byte {e.start}); save the router again") from None
    except (json.JSONDecodeError, RecursionError) as e:
        raise WorkbenchError(f"{file} is not valid JSON ({e}); it may be truncated: "
                             "save the router again") from None
    if not isinstance(config, dict):
        raise WorkbenchError(f"{file} holds a JSON {type(config).__name__}, not an object; "
                             "save the router again")
    if config.get("name") is not None and not isinstance(config["name"], str):
        raise WorkbenchError(f"{file}: name is {config['name']!r}; it must be a string (or pass name=...)")
    return config


def read_weights(path: str | Path):
    return read_safetensors(Path(path) / WEIGHTS)
