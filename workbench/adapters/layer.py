"""LoraLayer: wraps an ``nn.Linear`` (or GPT-2's ``Conv1D``, or an ``nn.Embedding``) and applies
many named adapters.

On an embedding, the input is token ids and A x is a lookup: Δy = s·B·A[:, ids] (peft's
``lora_embedding_A/B``), times the layer's ``embed_scale`` when it has one (Gemma 3), as peft does.

forward: y = base(x) + Σ_i w_i · s_i · (B_i A_i x + b_i)   (or one adapter per batch row, for mixed
         batches; b_i is peft's ``lora_bias``, zero when absent; a DoRA adapter adds its own Δy, see
         ``workbench.adapters.dora``)
         + Σ_j w_j · Δ_j(x) for the routers in use (``routes``: input-dependent updates, see
         ``workbench.routing``; in a mixed batch a router adds Δ_j only to the rows naming it,
         ``workbench.routing.rows``)

Hook points: ``hook_in`` (x), ``hook_rank.<adapter>`` (A x, per-rank activations, (B, T, r)) and
``hook_delta`` (the summed update added to the output, (B, T, out)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.pytorch_utils import Conv1D

from workbench.adapters.adapter import Adapter
from workbench.adapters.composition import Composition
from workbench.adapters.dora import dora_update, effective_delta
from workbench.adapters.params import ParamDelta, output_change
from workbench.adapters.pool import FactorPool
from workbench.adapters.segments import mixed_delta, refusal
from workbench.errors import WorkbenchError
from workbench.hooks import HookPoint

WRAPPABLE = (nn.Linear, Conv1D)  # what targets such as "all-linear" resolve to
EMBEDDINGS = (nn.Embedding,)  # wrapped only when an adapter names them (peft's lora_embedding_A/B)


def out_in(module: nn.Module) -> tuple[int, int]:
    """(out, in) of a Linear, a Conv1D or Embedding (weights stored (in, out)) or a LoraLayer."""
    if isinstance(module, LoraLayer):
        return module.out_features, module.in_features
    w = module.weight
    return (w.shape[1], w.shape[0]) if isinstance(module, Conv1D | nn.Embedding) else (w.shape[0], w.shape[1])


class LoraLayer(nn.Module):
    """Holds per-adapter factors as parameters keyed by adapter name (peft's layout).

    The parameters share storage with the ``Adapter``'s tensors, so training a layer trains the
    adapter. ``merge``/``unmerge`` fold an adapter into the base weight and back; a copy of the
    original weight is kept while anything is merged, so the last unmerge restores it bit-exactly.
    """

    def __init__(self, base: nn.Module, name: str):
        super().__init__()
        if not isinstance(base, WRAPPABLE + EMBEDDINGS):
            raise WorkbenchError(
                f"module {name!r} is a {type(base).__name__}; adapters wrap nn.Linear, Conv1D or "
                "nn.Embedding only"
            )
        self.base_layer = base
        self.path = name
        self.embedding = isinstance(base, EMBEDDINGS)  # input is token ids
        self.fan_in_fan_out = isinstance(base, Conv1D | nn.Embedding)  # weight stored (in, out)
        self.out_features, self.in_features = out_in(base)
        self.lora_A = nn.ParameterDict()  # name -> (r, in)
        self.lora_B = nn.ParameterDict()  # name -> (out, r)
        self.lora_bias = nn.ParameterDict()  # name -> (out,), peft's lora_bias=True
        self.magnitude = nn.ParameterDict()  # name -> (out,), DoRA's m
        self.scaling: dict[str, float] = {}
        self.dropout: dict[str, float] = {}
        self.hook_in = HookPoint()
        self.hook_rank = nn.ModuleDict()  # name -> HookPoint of A x
        self.hook_delta = HookPoint()
        self.routes = nn.ModuleDict()  # name -> Router (workbench.routing), applied like adapters
        self.composition = Composition()
        self.merged: dict[str, float] = {}  # name -> weight folded into the base weight
        self._base_backup: tuple[torch.Tensor, torch.Tensor | None] | None = None  # (weight, bias)
        self._merged_delta: dict[str, torch.Tensor] = {}  # DoRA: the ΔW added at merge, to undo it
        self.param_deltas: dict[str, dict[str, ParamDelta]] = {}  # name -> leaf -> Δ (trained params)
        self.pool = FactorPool()  # factors stacked per rank for mixed batches (built on first use)
        self._plan = None  # the cached mixed-batch plan (workbench.adapters.segments)
        self.mixed_path = ""  # what served the last mixed batch: "pool" or "loop: <reason>" (+ routers)

    # -- adapters --------------------------------------------------------------------------------
    def add(self, adapter: Adapter) -> None:
        f = adapter.modules[self.path]
        if (f.in_features, f.out_features) != (self.in_features, self.out_features):
            raise WorkbenchError(
                f"adapter {adapter.name!r} does not fit module {self.path!r}: its factors give "
                f"ΔW of shape (out={f.out_features}, in={f.in_features}) but the module is "
                f"(out={self.out_features}, in={self.in_features}); was it made for another base model?"
            )
        if f.embedding != self.embedding or (self.embedding and f.kind != "lora"):
            raise WorkbenchError(
                f"adapter {adapter.name!r} module {self.path!r}: "
                + ("DoRA and lora_bias are not supported on embeddings (peft refuses lora_bias there)"
                   if f.embedding and self.embedding else
                   f"its factors are for {'an embedding' if f.embedding else 'a linear layer'}, "
                   f"but the module is a {type(self.base_layer).__name__}"))
        dev = self.base_layer.weight.device
        self.lora_A[adapter.name] = nn.Parameter(f.A.to(dev), requires_grad=False)
        self.lora_B[adapter.name] = nn.Parameter(f.B.to(dev), requires_grad=False)
        f.A, f.B = self.lora_A[adapter.name], self.lora_B[adapter.name]  # one source of truth
        if f.bias is not None:
            self.lora_bias[adapter.name] = nn.Parameter(f.bias.to(dev), requires_grad=False)
            f.bias = self.lora_bias[adapter.name]
        if f.magnitude is not None:
            self.magnitude[adapter.name] = nn.Parameter(f.magnitude.to(dev), requires_grad=False)
            f.magnitude = self.magnitude[adapter.name]
        self.scaling[adapter.name] = adapter.scale(self.path)
        self.hook_rank[adapter.name] = HookPoint()
        self.pool.add(self, adapter.name)

    def add_param(self, name: str, leaf: str, d: ParamDelta) -> None:
        """Hold Δ of the base parameter ``leaf`` (weight or bias) for adapter ``name``."""
        self.param_deltas.setdefault(name, {})[leaf] = d

    @property
    def held(self) -> list[str]:
        """Every adapter with something here: factors (``names``) or trained parameters."""
        return list(dict.fromkeys([*self.lora_A.keys(), *self.param_deltas]))

    def remove(self, name: str) -> None:
        if name in self.merged:
            self.unmerge(name)
        self.param_deltas.pop(name, None)
        if name not in self.lora_A:
            return
        for d in (self.lora_A, self.lora_B, self.hook_rank):
            del d[name]
        for d in (self.lora_bias, self.magnitude):
            if name in d:
                del d[name]
        self.scaling.pop(name)
        self.dropout.pop(name, None)
        self.pool.remove(name)

    @property
    def names(self) -> list[str]:
        return list(self.lora_A.keys())

    def base_weight(self) -> torch.Tensor:
        """The base weight in forward layout (out, in), as it is now (merged adapters included)."""
        w = self.base_layer.weight
        return w.T if self.fan_in_fan_out else w

    def delta_weight(self, name: str) -> torch.Tensor:
        """The effective ΔW in the base weight's own layout ((in, out) for Conv1D).

        s·B·A for LoRA; for DoRA, diag(m/n)(W + sBA) − W against the unmerged base weight W.
        """
        A, B, s = self.lora_A[name], self.lora_B[name], self.scaling[name]
        if name in self.magnitude:
            W = self._base_backup[0] if self._base_backup is not None else self.base_layer.weight
            W = W.T if self.fan_in_fan_out else W
            d = effective_delta(W, A, B, self.magnitude[name], s)  # (out, in)
        else:
            d = s * (B @ A)  # (out, in)
        return d.T if self.fan_in_fan_out else d

    def bias_delta(self, name: str) -> torch.Tensor | None:
        """s·b, what a ``lora_bias`` adds to the base bias; None without one."""
        return self.scaling[name] * self.lora_bias[name] if name in self.lora_bias else None

    # -- merging into the base -------------------------------------------------------------------
    def check_merge(self, name: str) -> None:
        """Refuse, before anything changes, a merge this layer cannot do."""
        if name in self.merged:
            raise WorkbenchError(f"adapter {name!r} is already merged into {self.path!r}")
        if name in self.lora_bias and getattr(self.base_layer, "bias", None) is None:
            raise WorkbenchError(
                f"adapter {name!r} has a lora_bias on {self.path!r}, whose base layer has no bias to "
                "fold it into (peft refuses this merge too); use the adapter instead (lab.use)")

    @torch.no_grad()
    def merge(self, name: str, weight: float = 1.0) -> None:
        self.check_merge(name)
        w, b = self.base_layer.weight, getattr(self.base_layer, "bias", None)
        if self._base_backup is None:
            self._base_backup = (w.detach().clone(), None if b is None else b.detach().clone())
        if name in self.lora_A:
            db = self.bias_delta(name)
            d = weight * self.delta_weight(name)
            if name in self.magnitude:
                self._merged_delta[name] = d
            w += d.to(w.dtype)
            if db is not None:
                b += (weight * db).to(b.dtype)
        self._fold_params(name, weight)
        self.merged[name] = weight

    def _fold_params(self, name: str, weight: float) -> None:
        """Add weight·Δ of the adapter's trained parameters to the base parameters (in place)."""
        for leaf, d in self.param_deltas.get(name, {}).items():
            P = getattr(self.base_layer, leaf)
            P += (weight * d.dense(P)).to(P.dtype)

    @torch.no_grad()
    def unmerge(self, name: str) -> None:
        weight = self.merged.pop(name)
        w, b = self.base_layer.weight, getattr(self.base_layer, "bias", None)
        d = self._merged_delta.pop(name, None)
        if not self.merged:  # nothing left folded in: restore the original exactly
            w.copy_(self._base_backup[0])
            if b is not None:
                b.copy_(self._base_backup[1])
            self._base_backup = None
        else:
            self._fold_params(name, -weight)
            if name not in self.lora_A:
                return
            w -= (d if d is not None else weight * self.delta_weight(name)).to(w.dtype)
            if (db := self.bias_delta(name)) is not None:
                b -= (weight * db).to(b.dtype)

    # -- forward ---------------------------------------------------------------------------------
    def update(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """What the forward adds for adapter ``name`` at weight 1: s·(B·A·dropout(x) + b), or DoRA's Δy."""
        A, B = self.lora_A[name], self.lora_B[name]
        if self.embedding:  # x: token ids (B, T); no dropout on a lookup (as peft)
            h = self.hook_rank[name](F.embedding(x, A.T))  # (B, T, r)
            out = self.scaling[name] * F.linear(h, B)  # (B, T, out)
            scale = getattr(self.base_layer, "embed_scale", None)
            return out if scale is None else out * torch.as_tensor(scale).to(out.dtype)
        p = self.dropout.get(name, 0.0)
        if p and self.training:
            x = F.dropout(x, p)
        x = x.to(A.dtype)
        h = self.hook_rank[name](F.linear(x, A))  # (B, T, r)
        out = F.linear(h, B, self.lora_bias[name] if name in self.lora_bias else None)  # (B, T, out)
        if name in self.magnitude:
            return dora_update(x, self.base_weight(), A, B, self.magnitude[name], self.scaling[name], out)
        return self.scaling[name] * out  # (B, T, out)

    def change(self, name: str, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        """The whole output change of adapter ``name`` at weight 1: its factors' update plus what its
        trained parameters add (``workbench.adapters.params``)."""
        out = self.update(name, x) if name in self.lora_A else torch.zeros_like(result)
        for leaf, d in self.param_deltas.get(name, {}).items():
            out = out + output_change(self.base_layer, leaf, d, x, result)
        return out

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        result = self.base_layer(x, *args, **kwargs)
        comp = self.composition
        held = set(self.held)
        if not comp.names & (held | self.routes.keys()):  # nothing used lives here
            return result
        x = self.hook_in(x)
        # accumulate in float32 at least and round once, as peft does (fp32 adapters on a bf16 base)
        acc = torch.promote_types(result.dtype, torch.float32)
        if comp.rows is None:
            delta = torch.zeros(result.shape, dtype=acc, device=result.device)  # (B, T, out)
            for n, w in comp.weights.items():
                if n in held:
                    delta = delta + w * self.change(n, x, result).to(delta.dtype)
                elif n in self.routes:
                    delta = delta + w * self.routes[n](x, self.base_layer).to(delta.dtype)
        else:
            if len(comp.rows) != x.shape[0]:
                raise WorkbenchError(
                    f"mixed batch: {len(comp.rows)} adapter names for a batch of {x.shape[0]} rows; "
                    "give one name (or None) per row"
                )
            delta = torch.zeros(result.shape, dtype=acc, device=result.device)  # (B, T, out)
            present = [r for r in dict.fromkeys(comp.rows) if r in held]
            # S-LoRA/Punica path (workbench.adapters.segments); the per-adapter loop below serves
            # only what it refuses (DoRA, lora_bias, parameter deltas, dropout while training,
            # gradients to the factors, recorded hook_rank, embeddings) and says why in mixed_path
            why = "input is not (B, T, in)" if x.dim() != 3 else refusal(self, present, x)
            self.mixed_path = "pool" if why is None else f"loop: {why}"
            if why is None:
                delta = mixed_delta(self, x, comp.rows, delta)
            routed = [n for n in dict.fromkeys(comp.rows) if n not in held and n in self.routes]
            if why is not None or routed:
                groups = row_indices(comp.rows, x.device)  # name -> (n,) its rows
                for name in present if why is not None else ():
                    idx = groups[name]
                    delta = delta.index_add(0, idx, self.change(name, x[idx], result[idx]).to(delta.dtype))
                # routers serve their own rows (workbench.routing.rows): Δ[idx] = router(x[idx]), as alone
                for name in routed:
                    part = self.routes[name].serve_rows(name, x, groups[name], self.base_layer)  # (n, T, out)
                    delta = delta.index_add(0, groups[name], part.to(delta.dtype))
                    self.mixed_path += f" + router {name}"
        return (result + self.hook_delta(delta)).to(result.dtype)

    def extra_repr(self) -> str:
        ranks = {n: self.lora_A[n].shape[0] for n in self.names}
        routes = f", routes={list(self.routes)}" if len(self.routes) else ""
        return (f"path={self.path!r}, in={self.in_features}, out={self.out_features}, "
                f"adapters={ranks}{routes}")


def row_indices(rows, device) -> dict:
    """{name: (n,) indices of the rows naming it} in first-seen order (None: the base rows)."""
    groups: dict = {}
    for i, r in enumerate(rows):
        groups.setdefault(r, []).append(i)
    return {name: torch.tensor(idx, device=device) for name, idx in groups.items()}
