"""One row of the catalogue: a bad call, what its refusal must say, and the files it starts from."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from safetensors.torch import load_file, save_file

from tests.reliability.world import World, copy_adapter, copy_router
from workbench.errors import WorkbenchError

NAME = "x"  # damaged copies load under this name (free in the world's lab)


@dataclass(frozen=True)
class Case:
    """``call(world)`` must raise ``error`` whose message matches ``match`` (a regex, case-sensitive).

    ``setup(world)`` runs before the snapshot (it writes the damaged files the call reads).
    ``cli=True``: ``call`` runs the command line and returns its exit code (must be 2, with one line
    on stderr matching ``match`` and no traceback).
    """

    id: str
    call: Callable[[World], object]
    match: str
    setup: Callable[[World], None] | None = None
    error: type[BaseException] = WorkbenchError
    cli: bool = False


def bad_config(id: str, mutate: Callable[[dict], object], match: str) -> Case:
    """Load a copy of the saved adapter whose adapter_config.json is ``mutate(config)`` (or raw bytes)."""

    def setup(w: World) -> None:
        f = copy_adapter(w) / "adapter_config.json"
        value = mutate(json.loads(f.read_text()))
        f.write_bytes(value if isinstance(value, bytes) else json.dumps(value).encode())

    return Case(f"adapter-config:{id}", lambda w: w.lab.load_adapter(w.bad / "x", name=NAME), match, setup)


def with_field(**fields) -> Callable[[dict], dict]:
    return lambda cfg: {**cfg, **fields}


def bad_weights(id: str, mutate: Callable, match: str, *, raw: bool = False) -> Case:
    """Load a copy of the saved adapter whose weights file is damaged by ``mutate``.

    ``raw``: ``mutate(bytes) -> bytes``; else ``mutate(tensors) -> tensors`` (saved with safetensors).
    """

    def setup(w: World) -> None:
        f = copy_adapter(w) / "adapter_model.safetensors"
        if raw:
            f.write_bytes(mutate(f.read_bytes()))
        else:
            tensors = mutate(load_file(f))
            f.unlink()
            save_file(tensors, f)

    return Case(f"adapter-weights:{id}", lambda w: w.lab.load_adapter(w.bad / "x", name=NAME), match, setup)


def bad_router(
    id: str,
    mutate: Callable[[dict], object] | None,
    match: str,
    weights: Callable[[bytes], bytes] | None = None,
) -> Case:
    """Load a copy of the saved router with router.json ``mutate(config)`` and/or damaged weights."""

    def setup(w: World) -> None:
        d = copy_router(w)
        if mutate is not None:
            f = d / "router.json"
            value = mutate(json.loads(f.read_text()))
            f.write_bytes(value if isinstance(value, bytes) else json.dumps(value).encode())
        if weights is not None:
            f = d / "router.safetensors"
            f.write_bytes(weights(f.read_bytes()))

    return Case(f"router-file:{id}", lambda w: w.lab.load_router(w.bad / "r", name="r2"), match, setup)
