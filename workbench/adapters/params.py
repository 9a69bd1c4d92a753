"""Trained base parameters that peft saves beside the factors, applied exactly as updates.

peft trains three kinds of whole parameters besides LoRA factors, and writes their trained values:

* biases, with ``bias="all"`` or ``"lora_only"`` (``<module>.bias``, ``<module>.base_layer.bias``);
* full copies of modules, with ``modules_to_save`` (``<module>.<param>``);
* rows of the embedding matrix, with ``trainable_token_indices``
  (``<embedding>.token_adapter.trainable_tokens_delta``: the new rows).

The workbench keeps each as a ``ParamDelta`` Δ = trained − base, so the adapter acts like any other
update: used with weight w, the parameter is P + w·Δ (w = 1 gives peft's trained value), sums and
mixed batches add per row, merging adds w·Δ to the base and unmerging restores it bit for bit.
Every layer type involved computes an output affine in its parameters (Linear, Conv1D, Embedding,
LayerNorm's weight and bias), so the weight scales the output change exactly; a module whose output
is not affine in the parameter is refused.

Geometry and merges: ``Adapter.delta`` and ``factors`` describe the LoRA factors only; a parameter
delta is a dense update of another parameter. Merges refuse adapters with parameter deltas (they do
not fit a low-rank result); ``lab.merge_into_base`` folds them in exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

ORIGINS = ("bias", "module", "tokens")


@dataclass
class ParamDelta:
    """Δ of one base parameter: dense (same shape as the parameter) or some rows of it (tokens).

    Attributes:
        delta: Δ = trained − base; the parameter's shape, or (n, dim) when ``rows`` is given.
        rows: (n,) token ids whose embedding rows change (``trainable_token_indices``), else None.
        origin: "bias" (peft ``bias``), "module" (``modules_to_save``) or "tokens".
        group: the peft name this came from: the ``modules_to_save`` entry, or the token module.
    """

    delta: torch.Tensor
    rows: torch.Tensor | None = None
    origin: str = "bias"
    group: str = ""

    def dense(self, like: torch.Tensor) -> torch.Tensor:
        """Δ as a tensor of ``like``'s shape (zeros outside the rows), in float32."""
        d = self.delta.to(device=like.device, dtype=torch.float32)
        if self.rows is None:
            return d
        return torch.zeros(like.shape, dtype=torch.float32, device=like.device).index_add_(
            0, self.rows.to(like.device), d)

    def clone(self) -> ParamDelta:
        return ParamDelta(self.delta.detach().clone(), None if self.rows is None else self.rows.clone(),
                          self.origin, self.group)


def split_path(path: str) -> tuple[str, str]:
    """``"model.norm.weight"`` -> (``"model.norm"``, ``"weight"``)."""
    module, _, leaf = path.rpartition(".")
    return module, leaf


def output_change(module: nn.Module, leaf: str, d: ParamDelta, x: torch.Tensor,
                  result: torch.Tensor) -> torch.Tensor:
    """How much ``module``'s output changes for input x when its parameter ``leaf`` gains Δ.

    Exact because the output is affine in the parameter: Linear xΔᵀ, Conv1D xΔ, Embedding Δ[ids],
    any bias Δb. ``result`` (the base output) gives the shape and dtype.
    """
    from transformers.pytorch_utils import Conv1D

    if leaf == "bias":
        return d.delta.to(result.device, result.dtype).expand_as(result)
    if isinstance(module, nn.Embedding):
        if d.rows is None:
            out = nn.functional.embedding(x, d.delta.to(result.device, torch.float32))
        else:  # look the changed rows up: ids outside ``rows`` get 0
            lut = torch.full((module.num_embeddings,), -1, dtype=torch.long, device=x.device)
            lut[d.rows.to(x.device)] = torch.arange(len(d.rows), device=x.device)
            pos = lut[x]
            out = d.delta.to(result.device, torch.float32)[pos.clamp(min=0)] * (pos >= 0).unsqueeze(-1)
        scale = getattr(module, "embed_scale", None)
        out = out if scale is None else out * torch.as_tensor(scale).to(out.dtype)
        return out.to(result.dtype)
    xf = x.to(torch.float32)
    if isinstance(module, nn.Linear):
        if d.rows is None:
            return nn.functional.linear(xf, d.delta.to(x.device, torch.float32)).to(result.dtype)
        out = torch.zeros(result.shape, dtype=torch.float32, device=result.device)
        part = nn.functional.linear(xf, d.delta.to(x.device, torch.float32))  # (..., n)
        return out.index_add_(-1, d.rows.to(x.device), part).to(result.dtype)
    if isinstance(module, Conv1D) and d.rows is None:
        return (xf @ d.delta.to(x.device, torch.float32)).to(result.dtype)
    raise NotImplementedError(type(module).__name__)  # callers check ``applies_to`` first


def applies_to(module: nn.Module, leaf: str, d: ParamDelta) -> bool:
    """Whether ``output_change`` is exact for this module and parameter (else the layer patches it)."""
    from transformers.pytorch_utils import Conv1D

    if leaf == "bias":
        return True
    if leaf != "weight":
        return False
    return isinstance(module, nn.Embedding | nn.Linear) or (isinstance(module, Conv1D) and d.rows is None)


@dataclass
class SavedParam:
    """A base parameter as peft saved it, before it is compared with the base (``base_copies``).

    ``role``: "copy" (must equal the base), "bias" (a trained bias), "module" (a modules_to_save
    parameter) or "tokens" (new rows ``rows`` of an embedding).
    """

    value: torch.Tensor
    role: str = "copy"
    rows: torch.Tensor | None = None
    group: str = ""


def holders(model: nn.Module, path: str, d: ParamDelta) -> list[str]:
    """Module paths that apply ``d``: its own module, and for token rows every module tied to it.

    peft ties trainable tokens to a head that shares the embedding matrix; a ``modules_to_save``
    copy is the module's own (peft unties it), and biases are never shared.
    """
    module, leaf = split_path(path)
    if d.origin != "tokens":
        return [module]
    target = model.get_submodule(module)
    target = getattr(target, "base_layer", target)
    weight = getattr(target, leaf)
    out = [module]
    for name, m in model.named_modules():
        base = getattr(m, "base_layer", None)
        if name != module and not name.endswith(".base_layer") and \
                getattr(base if base is not None else m, "weight", None) is weight:
            out.append(name)
    return out
