"""Shared input handling for the analysis functions: name the adapters, check they are comparable."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

from workbench.adapters.adapter import Adapter
from workbench.adapters.comparable import check_comparable
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
