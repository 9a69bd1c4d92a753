"""A small world for bad-input cases: a tiny lab with two adapters and a router, files on disk around it,
and a snapshot of everything a failed call must leave as it was.

    w = make_world(tmp_path, template)   # template: files saved once per session
    before = snapshot(w)
    ...bad call...
    assert snapshot(w) == before
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tests.conftest import tiny_lab
from workbench import Workbench
from workbench.zoo import fingerprint
from workbench.zoo.fingerprint import base_state

ROUTER = {"mechanism": "smora", "r": 4, "k": 2, "targets": ["q_proj", "v_proj"]}


@dataclass
class World:
    """What a case may touch: ``lab`` (adapters a, b; router rt), ``root`` (files), ``other`` (a 2nd lab)."""

    lab: Workbench
    root: Path
    _other: Workbench | None = field(default=None, repr=False)

    @property
    def adapter_dir(self) -> Path:  # a PEFT folder written by lab.save_adapter("a")
        return self.root / "saved" / "a"

    @property
    def router_dir(self) -> Path:  # a router folder written by lab.save_router("rt")
        return self.root / "saved" / "rt"

    @property
    def project(self) -> Path:  # a user's folder: notebooks and data, never ours to delete
        return self.root / "project"

    @property
    def bad(self) -> Path:  # where cases write damaged copies
        return self.root / "bad"

    @property
    def other(self) -> Workbench:
        """A second lab on the same tiny base, with its own adapter ``a`` (an object from another lab)."""
        if self._other is None:
            self._other = tiny_lab()
            self._other.new_adapter("a", r=2, init="random", seed=7)
        return self._other


def build_lab() -> Workbench:
    lab = tiny_lab()
    lab.new_adapter("a", r=2, init="random", seed=0)
    lab.new_adapter("b", r=3, init="random", seed=1)
    params = {k: v for k, v in ROUTER.items() if k != "mechanism"}
    lab.add_router("rt", ROUTER["mechanism"], **params)
    return lab


def make_template(root: Path) -> Path:
    """Files saved once: the adapter and router folders, and a user's project folder."""
    lab = build_lab()
    lab.save_adapter("a", root / "saved" / "a")
    lab.save_router("rt", root / "saved" / "rt")
    project = root / "project"
    (project / "data").mkdir(parents=True)
    (project / "analysis.ipynb").write_text(json.dumps({"cells": [], "nbformat": 4}))
    (project / "data" / "results.csv").write_text("a,b\n1,2\n")
    (project / "adapter_config.json").write_text("{}")  # looks like an adapter, but holds more
    (root / "bad").mkdir()
    return root


_PRISTINE: list[Workbench] = []


def make_world(tmp: Path, template: Path) -> World:
    """Files copied from ``template`` into ``tmp``; a fresh lab (a deep copy of one built once)."""
    shutil.copytree(template, tmp, dirs_exist_ok=True)
    if not _PRISTINE:
        _PRISTINE.append(build_lab())
    return World(copy.deepcopy(_PRISTINE[0]), tmp)


def copy_adapter(w: World, name: str = "x") -> Path:
    """A copy of the saved adapter under ``bad/name`` (cases damage it)."""
    dst = w.bad / name
    shutil.copytree(w.adapter_dir, dst)
    return dst


def copy_router(w: World, name: str = "r") -> Path:
    dst = w.bad / name
    shutil.copytree(w.router_dir, dst)
    return dst


# -- the snapshot ------------------------------------------------------------------------------------
def _tensor_hash(tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()[:16]


def snapshot(w: World, *, exact: bool = False) -> dict:
    """Everything a failed call must not change: base weights, adapters, routers, wrapping, files.

    ``exact``: compute ``workbench.zoo.fingerprint`` of the base now (else the lab's recorded one).
    """
    lab = w.lab
    from workbench.adapters import LoraLayer
    from workbench.routing import RoutedBlock

    layers = {p: m for p, m in lab.model.named_modules() if isinstance(m, LoraLayer | RoutedBlock)}
    adapters = {}
    for name, a in lab.adapters.items():
        held = [
            t
            for layer in layers.values()
            if isinstance(layer, LoraLayer) and name in layer.names
            for t in (layer.lora_A[name], layer.lora_B[name])
        ]
        adapters[name] = (id(a), a.scaling, sorted(a.modules), _tensor_hash(held))
    routers = {name: (id(r), _tensor_hash(r.state_dict().values())) for name, r in lab.routers.items()}
    files = {}
    for p in sorted(w.root.rglob("*")):
        rel = str(p.relative_to(w.root))
        files[rel] = hashlib.sha256(p.read_bytes()).hexdigest()[:16] if p.is_file() else "dir"
    with torch.no_grad():
        base = _tensor_hash(t for _, t in base_state(lab.model))
    return {
        # zoo.fingerprint costs ~0.1 s on a loaded machine: computed once per case, after the call
        # (compared with the lab's own, taken when the base was built); "base" hashes every value.
        "fingerprint": fingerprint(lab.model) if exact else lab.fingerprint,
        "base": base,
        "lab.fingerprint": lab.fingerprint,
        "adapters": adapters,
        "routers": routers,
        "wrapped": sorted(
            (p, type(m).__name__, tuple(getattr(m, "names", ())), tuple(m.routes)) for p, m in layers.items()
        ),
        "merged": sorted((p, tuple(m.merged)) for p, m in layers.items() if isinstance(m, LoraLayer)),
        "active": (dict(lab.active.weights), lab.active.rows),
        "training": lab.model.training,
        "files": files,
    }
