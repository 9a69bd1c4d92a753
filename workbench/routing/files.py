"""Routers on disk: ``router.json`` (mechanism, parameters, base fingerprint) + ``router.safetensors``.

Written atomically (a crash leaves no half-written folder); read back only through safetensors.
A router that routes over the lab's adapters (a bank) names them in its parameters: load those
adapters first.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file

from workbench.adapters.files import atomic_directory, read_safetensors
from workbench.errors import WorkbenchError
from workbench.routing.routed import Routed

CONFIG, WEIGHTS = "router.json", "router.safetensors"


def write_routed(routed: Routed, path: str | Path, *, base_fingerprint: str | None,
                 overwrite: bool = False) -> Path:
    state = {k: v.detach().cpu().contiguous() for k, v in routed.state_dict().items()}
    config = {"name": routed.name, "mechanism": routed.mechanism, "params": routed.params,
              "base_fingerprint": base_fingerprint}
    with atomic_directory(path, overwrite=overwrite) as tmp:
        save_file(state, str(tmp / WEIGHTS))
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, default=str) + "\n")
    return Path(path)


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
