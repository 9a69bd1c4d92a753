"""RoutedBlock: lets a router replace a whole block's forward (MixLoRA's experts inside the FFN).

The wrapper shares the block's children *by the same names* (``mlp.gate_proj`` stays
``mlp.gate_proj``), so adapter paths, state-dict keys and ``LoraLayer`` wrapping are unchanged;
the original block object is kept aside and comes back on ``unwrap``.
"""

from __future__ import annotations

import torch
from torch import nn

from workbench.adapters.composition import Composition
from workbench.errors import WorkbenchError
from workbench.routing.rows import block_rows


class RoutedBlock(nn.Module):
    def __init__(self, block: nn.Module, path: str):
        super().__init__()
        object.__setattr__(self, "block", block)  # kept, not registered: its children are ours
        self._modules = block._modules  # the same children under the same names (shared dict)
        self.routes = nn.ModuleDict()  # lands in the shared dict too; `unwrap` takes it out again
        self.path = path
        self.composition = Composition()

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if self.composition.rows is not None:  # a mixed batch: each router on its rows only
            if not self.composition.names & self.routes.keys():
                return self.block(x, *args, **kwargs)
            if len(self.composition.rows) != x.shape[0]:
                raise WorkbenchError(f"mixed batch: {len(self.composition.rows)} adapter names for a batch "
                                     f"of {x.shape[0]} rows; give one name (or None) per row")
            return block_rows(self, x, args, kwargs)
        active = [n for n in self.composition.weights if n in self.routes]
        if not active:
            return self.block(x, *args, **kwargs)
        if len(active) > 1:
            raise WorkbenchError(
                f"block {self.path!r}: use one block router at a time (got {active}); "
                "block routers replace the block's output, so two cannot be summed"
            )
        return self.composition.weights[active[0]] * self.routes[active[0]](x, self.block)

    def unwrap(self) -> nn.Module:
        """The original block, as it was (its children, possibly wrapped since, are shared)."""
        del self._modules["routes"]
        return self.block

    def extra_repr(self) -> str:
        return f"path={self.path!r}, block={type(self.block).__name__}, routes={list(self.routes)}"


def resolve_blocks(model: nn.Module, targets: str | list[str]) -> list[str]:
    """Paths of the blocks whose last name is one of ``targets`` (``"mlp"`` -> every ``*.mlp``)."""
    names = [targets] if isinstance(targets, str) else list(targets)
    found = [p for p, m in model.named_modules() if p.rsplit(".", 1)[-1] in names]
    if not found:
        raise WorkbenchError(
            f"block target(s) {names} match no module of this model; block routers wrap modules by "
            f"their last name, e.g. 'mlp' for model.layers.0.mlp"
        )
    return found
