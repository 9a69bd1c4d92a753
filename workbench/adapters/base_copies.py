"""Base parameters inside a PEFT file: equal copies are dropped, declared trained ones kept, others refused.

peft writes the embedding and output-head weights beside the factors when they are targeted
(``save_embedding_layers``), the base biases with ``bias="all"`` / ``"lora_only"``, whole modules
with ``modules_to_save`` and new embedding rows with ``trainable_token_indices``. An untouched copy
carries no information; a trained parameter the config declares becomes a ``ParamDelta``; a copy
that differs without being declared is refused, naming the tensor, rather than loaded with the
change lost.
"""

from __future__ import annotations

import torch
from torch import nn

from workbench.adapters.adapter import Adapter
from workbench.adapters.params import ParamDelta
from workbench.errors import WorkbenchError


def base_parameter(model: nn.Module, path: str) -> torch.Tensor | None:
    """The model's parameter at ``path`` as it was before anything was merged into it, or None.

    A module wrapped by the workbench keeps the original under ``base_layer``; a merged one keeps a
    backup of the unmerged weight and bias, which is what the copy must equal.
    """
    module_path, _, leaf = path.rpartition(".")
    try:
        module = model.get_submodule(module_path) if module_path else model
    except AttributeError:
        return None
    backup = getattr(module, "_base_backup", None)
    if hasattr(module, "base_layer"):
        module = module.base_layer
    if backup is not None and leaf in ("weight", "bias"):
        return backup[0] if leaf == "weight" else backup[1]
    t = getattr(module, leaf, None)
    return t if isinstance(t, torch.Tensor) else None


def check_base_copies(adapter: Adapter, model: nn.Module) -> None:
    """Compare the adapter's saved base parameters with ``model``'s: drop equal copies, keep trained
    biases, ``modules_to_save`` parameters and token rows as ``adapter.params`` (deltas), refuse the rest.

    Nothing on the adapter changes when it raises.

    Raises:
        WorkbenchError: a saved tensor names a parameter the model lacks, has another shape, or
            differs from the base without being a trained parameter peft's config declares.
    """
    params: dict[str, ParamDelta] = {}
    for path, saved in adapter.base_copies.items():
        base = base_parameter(model, path)
        if base is None:
            raise WorkbenchError(
                f"adapter {adapter.name!r} holds a tensor for {path!r}, which is not a parameter of this "
                "model; it was made for another base (or holds modules this workbench does not apply)")
        value = saved.value
        if saved.role == "tokens":
            if value.dim() != 2 or value.shape[1] != base.shape[1] or int(saved.rows.max()) >= base.shape[0]:
                raise WorkbenchError(
                    f"adapter {adapter.name!r}: its token rows for {path!r} are {tuple(value.shape)} with "
                    f"ids up to {int(saved.rows.max())}, but the embedding is {tuple(base.shape)}")
            rows = saved.rows.to(base.device)
            params[path] = ParamDelta(value.float() - base.detach()[rows].float().cpu(), saved.rows,
                                      "tokens", saved.group)
            continue
        if tuple(value.shape) != tuple(base.shape):
            raise WorkbenchError(
                f"adapter {adapter.name!r}: its copy of {path!r} is {tuple(value.shape)} but the base "
                f"has {tuple(base.shape)}; it was made for another base model (or a resized vocabulary)")
        if saved.role == "module":
            params[path] = ParamDelta(value.float() - base.detach().float().cpu(), None, "module",
                                      saved.group)
            continue
        if torch.equal(value.to(device=base.device, dtype=base.dtype), base.detach()):
            continue
        if saved.role == "bias":
            params[path] = ParamDelta(value.float() - base.detach().float().cpu(), None, "bias")
            continue
        diff = (value.float() - base.detach().float().cpu()).abs().max().item()
        raise WorkbenchError(
            f"adapter {adapter.name!r}: its copy of base parameter {path!r} differs from this base "
            f"(max |difference| {diff:.3g}), and its config declares no trained parameter there "
            "(bias, modules_to_save, trainable_token_indices); loading it would change the outputs "
            "silently. Load it on the base it was saved with, or merge it with peft "
            "(`merge_and_unload()`) and load the merged model"
        )
    for path, d in params.items():
        if not torch.isfinite(d.delta).all():
            raise WorkbenchError(f"adapter {adapter.name!r}: its trained {path!r} holds NaN/Inf values; "
                                 "the adapter is corrupt")
    adapter.params = {**adapter.params, **params}
    adapter.base_copies = {}


def check_not_tied(model: nn.Module, layer: nn.Module) -> None:
    """Refuse to merge into a weight that another module shares (a head tied to the embeddings).

    Folding ΔW into a tied weight changes every module that shares it: merging LoRA on ``lm_head``
    would also change the input embeddings, so the merged model would not compute what the adapter
    does. peft merges anyway (in place); the workbench refuses.
    """
    weight = layer.base_layer.weight
    sharing = [name for name, p in model.named_parameters(remove_duplicate=False)
               if p is weight and not name.startswith(layer.path + ".")]
    if sharing:
        raise WorkbenchError(
            f"{layer.path!r} shares its weight with {sharing[0]!r} (tied embeddings); merging into it "
            "would change both, so the merged model would not compute what the adapter does. Use the "
            "adapter instead (lab.use), or untie the weights first"
        )
