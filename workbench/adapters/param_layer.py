"""ParamLayer: applies adapters' trained parameters to a module that is not Linear/Conv1D/Embedding.

A LayerNorm (or RMSNorm) whose bias or weight peft trained (``bias="all"``, ``modules_to_save``) is
wrapped here; its output for weights {name: w} is the module run with P + Σ w·Δ
(``torch.func.functional_call``), exact for these layers because their output is affine in their
parameters. Linear, Conv1D and Embedding modules carry trained parameters in ``LoraLayer`` itself.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from workbench.adapters.adapter import Adapter
from workbench.adapters.composition import Composition
from workbench.adapters.layer import EMBEDDINGS, WRAPPABLE, LoraLayer
from workbench.adapters.params import applies_to, holders, split_path
from workbench.errors import WorkbenchError
from workbench.hooks import HookPoint


class ParamLayer(LoraLayer):
    """Holds trained-parameter deltas (no LoRA factors) for one non-linear module."""

    def __init__(self, base: nn.Module, name: str):  # noqa: D107 - a LoraLayer without factors
        nn.Module.__init__(self)
        self.base_layer, self.path = base, name
        self.embedding = self.fan_in_fan_out = False
        self.out_features = self.in_features = None
        for d in ("lora_A", "lora_B", "lora_bias", "magnitude"):
            setattr(self, d, nn.ParameterDict())
        self.scaling, self.dropout, self.merged, self._merged_delta = {}, {}, {}, {}
        self.hook_in, self.hook_delta, self.hook_rank, self.routes = HookPoint(), HookPoint(), \
            nn.ModuleDict(), nn.ModuleDict()
        self.composition = Composition()
        self.param_deltas = {}
        self._base_backup = None  # leaf -> original tensor while anything is merged

    def add(self, adapter: Adapter) -> None:
        raise WorkbenchError(f"{self.path!r} is a {type(self.base_layer).__name__}; LoRA factors go on "
                             "nn.Linear, Conv1D or nn.Embedding modules")

    def check_merge(self, name: str) -> None:
        if name in self.merged:
            raise WorkbenchError(f"adapter {name!r} is already merged into {self.path!r}")

    @torch.no_grad()
    def merge(self, name: str, weight: float = 1.0) -> None:
        self.check_merge(name)
        if self._base_backup is None:
            self._base_backup = {k: p.detach().clone() for k, p in self.base_layer.named_parameters()}
        self._fold_params(name, weight)
        self.merged[name] = weight

    @torch.no_grad()
    def unmerge(self, name: str) -> None:
        weight = self.merged.pop(name)
        if self.merged:
            self._fold_params(name, -weight)
            return
        for k, p in self.base_layer.named_parameters():  # nothing left folded in: restore exactly
            p.copy_(self._base_backup[k])
        self._base_backup = None

    def _call(self, weights: dict[str, float], x: torch.Tensor, args, kwargs) -> torch.Tensor:
        params = {}
        for name, w in weights.items():
            for leaf, d in self.param_deltas[name].items():
                P = params.get(leaf, getattr(self.base_layer, leaf))
                params[leaf] = (P.float() + w * d.dense(P)).to(P.dtype)
        return functional_call(self.base_layer, params, (x, *args), kwargs)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        comp = self.composition
        held = set(self.param_deltas)
        if not comp.names & held:
            return self.base_layer(x, *args, **kwargs)
        if comp.rows is None:
            return self._call({n: w for n, w in comp.weights.items() if n in held}, x, args, kwargs)
        result = self.base_layer(x, *args, **kwargs)
        for name in dict.fromkeys(r for r in comp.rows if r in held):
            idx = torch.tensor([i for i, r in enumerate(comp.rows) if r == name], device=x.device)
            result = result.index_copy(0, idx, self._call({name: 1.0}, x[idx], args, kwargs))
        return result

    def extra_repr(self) -> str:
        return f"path={self.path!r}, trained parameters of {sorted(self.param_deltas)}"


def install_params(model: nn.Module, wrap, adapter: Adapter) -> None:
    """Give every module that applies one of ``adapter.params`` its delta (``wrap(path, cls)`` wraps)."""
    for path, d in adapter.params.items():
        _, leaf = split_path(path)
        for module_path in holders(model, path, d):
            m = model.get_submodule(module_path)
            base = getattr(m, "base_layer", m)
            cls = LoraLayer if isinstance(base, WRAPPABLE + EMBEDDINGS) and applies_to(base, leaf, d) \
                else ParamLayer
            if isinstance(m, ParamLayer) or (cls is ParamLayer and isinstance(m, LoraLayer)):
                cls = type(m)
            if cls is LoraLayer and not applies_to(base, leaf, d):
                raise WorkbenchError(f"adapter {adapter.name!r}: a trained {leaf} of {module_path!r} "
                                     f"({type(base).__name__}) cannot be applied exactly here")
            wrap(module_path, cls).add_param(adapter.name, leaf, d)
