"""Copies of base parameters inside a PEFT file: accepted when they equal the base, else refused.

peft writes the embedding and output-head weights beside the factors when they are targeted
(``save_embedding_layers``), and the base biases with ``bias="all"`` / ``"lora_only"``. An untouched
copy carries no information; a copy that differs is a trained parameter that this workbench does not
apply, so the adapter is refused, naming the tensor, rather than loaded with the change lost.
"""

from __future__ import annotations

import torch
from torch import nn

from workbench.adapters.adapter import Adapter
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
    """Refuse an adapter whose saved base parameters differ from ``model``'s; drop equal copies.

    Raises:
        WorkbenchError: a copy names a parameter the model lacks, has another shape, or holds
            other values (a trained bias, a trained embedding ...): the message names it and the fix.
    """
    for path, saved in adapter.base_copies.items():
        base = base_parameter(model, path)
        if base is None:
            raise WorkbenchError(
                f"adapter {adapter.name!r} holds a tensor for {path!r}, which is not a parameter of this "
                "model; it was made for another base (or holds modules this workbench does not apply)")
        if tuple(saved.shape) != tuple(base.shape):
            raise WorkbenchError(
                f"adapter {adapter.name!r}: its copy of {path!r} is {tuple(saved.shape)} but the base "
                f"has {tuple(base.shape)}; it was made for another base model (or a resized vocabulary)")
        same = saved.to(device=base.device, dtype=base.dtype)
        if not torch.equal(same, base.detach()):
            diff = (saved.float() - base.detach().float().cpu()).abs().max().item()
            what = ("a trained bias (peft bias='all' or 'lora_only')" if path.endswith("bias")
                    else "a trained full parameter")
            raise WorkbenchError(
                f"adapter {adapter.name!r}: its copy of base parameter {path!r} differs from this base "
                f"(max |difference| {diff:.3g}): it is {what}, which this workbench does not apply "
                "yet, and loading without it would change the outputs silently. Merge the adapter "
                "with peft (`merge_and_unload()`) and load the merged model, or load it on the base "
                "it was saved with"
            )
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
