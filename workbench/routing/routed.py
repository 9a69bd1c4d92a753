"""Routed: a named set of routers of one mechanism, one per target module, as the lab holds it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from workbench.routing.base import ROUTERS, Router


@dataclass
class Routed:
    """What ``Workbench.add_router`` returns: ``lab.use(routed.name)`` turns it on.

    Attributes:
        name: its name in the lab (shared namespace with adapters).
        mechanism: the registered router name (``workbench.routing.ROUTERS``).
        params: the mechanism's parameters as given (lineage).
        modules: module (or block) path -> its Router.
        history: the last training run's rows (a DataFrame: step, loss, ...), or None if never trained.
        training_state: what ``load_router`` read of the optimizer that trained it (``optimizer``: a
            ``torch.optim`` state dict, ``scheduler``, ``step``), to resume with
            ``optimizer.load_state_dict``; None when saved without.
    """

    name: str
    mechanism: str
    params: dict
    modules: dict[str, Router] = field(default_factory=dict)
    history: Any = None
    training_state: dict | None = None

    def has(self, flag: str) -> bool:
        """Whether its mechanism declares capability ``flag`` (``ROUTERS.has(self.mechanism, flag)``)."""
        return ROUTERS.has(self.mechanism, flag)

    def trainable(self) -> list[nn.Parameter]:
        return [p for r in self.modules.values() for p in r.trainable()]

    def n_parameters(self, trainable_only: bool = False) -> int:
        params = self.trainable() if trainable_only else [p for r in self.modules.values()
                                                          for p in r.parameters()]
        return sum(p.numel() for p in params)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Flat ``<path>.<param>`` -> tensor (parameters and buffers), e.g. for safetensors."""
        return {f"{path}.{k}": v for path, r in self.modules.items() for k, v in r.state_dict().items()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        for path, r in self.modules.items():
            prefix = f"{path}."
            r.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})

    def __repr__(self) -> str:
        return (f"Routed({self.name!r}, mechanism={self.mechanism!r}, modules={len(self.modules)}, "
                f"trainable={self.n_parameters(True):,})")
