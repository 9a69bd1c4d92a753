"""An adapter's trained base parameters as peft writes them: tensors (base + Δ) and config fields."""

from __future__ import annotations

import torch
from torch import nn

from workbench.adapters.adapter import Adapter
from workbench.adapters.base_copies import base_parameter
from workbench.adapters.params import split_path


def peft_extras(adapter: Adapter, model: nn.Module) -> tuple[dict[str, torch.Tensor], dict]:
    """({key without ``base_model.model.``: tensor}, {LoraConfig field: value}) for ``adapter.params``.

    Biases of LoRA-targeted modules go under ``<module>.base_layer.bias`` (``bias="lora_only"`` when
    all are there, else ``"all"``); ``modules_to_save`` parameters under their own path; token rows
    under ``<embedding>.token_adapter.trainable_tokens_delta`` (their new values), as peft saves them.
    """
    tensors: dict[str, torch.Tensor] = {}
    saved: list[str] = []
    tokens: dict[str, list[int]] = {}
    biases: list[str] = []
    for path, d in adapter.params.items():
        module, leaf = split_path(path)
        base = base_parameter(model, path).detach()
        if d.origin == "tokens":
            rows = d.rows.to(base.device)
            tensors[f"{module}.token_adapter.trainable_tokens_delta"] = \
                base[rows].float().cpu() + d.delta.float().cpu()
            tokens[module] = d.rows.tolist()
            continue
        value = base.float().cpu() + d.delta.float().cpu()
        if d.origin == "module":
            saved.append(d.group)
            tensors[path] = value
        else:
            biases.append(module)
            tensors[f"{module}.base_layer.{leaf}" if module in adapter.modules else path] = value
    config = {"bias": "none" if not biases else
              "lora_only" if all(m in adapter.modules for m in biases) else "all"}
    if saved:
        config["modules_to_save"] = sorted(set(saved))
    if tokens:
        config["trainable_token_indices"] = tokens
    return tensors, config
