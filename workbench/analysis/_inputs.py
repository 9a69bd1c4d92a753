"""Shared input handling for the analysis functions: name the adapters, check they are comparable."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd
import torch

from workbench.adapters.adapter import Adapter
from workbench.errors import WorkbenchError


def as_named(adapters: Mapping[str, Adapter] | Iterable[Adapter]) -> dict[str, Adapter]:
    """A Mapping name -> Adapter, or a list of Adapters (keyed by ``.name``), as a checked dict.

    Raises:
        WorkbenchError: when there is no adapter, two share a name, the adapters were made for
            different base models, or a module shared by two adapters has different shapes in them.
    """
    if isinstance(adapters, Adapter):
        raise WorkbenchError("give several adapters (a list or a name -> Adapter mapping), not one Adapter")
    if isinstance(adapters, Mapping):
        named = dict(adapters)
    else:
        named = {}
        for a in adapters:
            if not isinstance(a, Adapter):
                raise WorkbenchError(f"expected Adapter objects, got {type(a).__name__}")
            if a.name in named:
                raise WorkbenchError(
                    f"two adapters are named {a.name!r}; pass a mapping {{name: adapter}} to label them"
                )
            named[a.name] = a
    if not named:
        raise WorkbenchError("no adapters to compare; give at least one")
    check_comparable(named)
    return named


def check_comparable(named: Mapping[str, Adapter], *,
                     why: str = "geometry compares updates of the same weights, so compare adapters "
                                "of one base") -> None:
    """Refuse adapters for different base models or with different shapes on a shared module.

    ``why`` ends the base-model error: what the caller does with the updates (compare, merge ...).
    """
    prints = {n: a.base_fingerprint for n, a in named.items() if a.base_fingerprint is not None}
    if len(set(prints.values())) > 1:
        listing = ", ".join(f"{n}: {p}" for n, p in prints.items())
        raise WorkbenchError(f"the adapters were made for different base models ({listing}); {why}")
    for n, a in named.items():
        if "dora" in a.kinds:
            raise WorkbenchError(
                f"adapter {n!r} is DoRA: its update diag(m/‖W+sBA‖)(W+sBA) − W depends on the base weight "
                "and is not the low-rank product sBA its factors describe, so factor geometry and "
                "factor merges would describe another update. Use it (lab.use) or fold it into the base "
                "(lab.merge_into_base); compare or merge plain LoRA adapters"
            )
    seen: dict[str, tuple[str, tuple[int, int]]] = {}
    for n, a in named.items():
        for path, f in a.modules.items():
            shape = (f.out_features, f.in_features)
            if path in seen and seen[path][1] != shape:
                first, first_shape = seen[path]
                raise WorkbenchError(
                    f"module {path!r} is {first_shape} (out, in) in adapter {first!r} but {shape} "
                    f"in adapter {n!r}; these adapters do not target the same weights"
                )
            seen.setdefault(path, (n, shape))


def module_paths(named: Mapping[str, Adapter]) -> list[str]:
    """Union of the adapters' module paths, in first-seen order."""
    paths: dict[str, None] = {}
    for a in named.values():
        paths.update(dict.fromkeys(a.modules))
    return list(paths)


def factors64(adapter: Adapter, path: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(A (r, in), s·B (out, r)) of one module in float64, so that small Gram matrices are exact."""
    A, sB = adapter.factors(path)
    return A.detach().to(torch.float64), sB.detach().to(torch.float64)


def tidy(rows: list[dict]) -> pd.DataFrame:
    """Rows -> DataFrame with ``layer`` as nullable integers (modules outside a block get <NA>)."""
    frame = pd.DataFrame(rows)
    if "layer" in frame.columns:
        frame["layer"] = frame["layer"].astype("Int64")
    return frame
