"""Which modules an adapter targets: presets, suffixes, regexes, resolved against a real model."""

from __future__ import annotations

import re

from torch import nn

from workbench.adapters.layer import EMBEDDINGS, WRAPPABLE, LoraLayer
from workbench.errors import WorkbenchError

# Module-name suffixes per preset, across the architectures of the zoo (Llama, GPT-2, BERT).
PRESETS: dict[str, tuple[str, ...]] = {
    "attention": (
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",  # Llama
        "attn.c_attn", "attn.c_proj",  # GPT-2
        "attention.self.query", "attention.self.key", "attention.self.value",  # BERT
        "attention.output.dense",
    ),
    "attention-qv": ("self_attn.q_proj", "self_attn.v_proj", "attn.c_attn",
                     "attention.self.query", "attention.self.value"),
    "mlp": (
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",  # Llama
        "mlp.c_fc", "mlp.c_proj",  # GPT-2
        "intermediate.dense", "output.dense",  # BERT (attention.output.dense excluded below)
    ),
}
# Modules never adapted by "all-linear": the output head (tied to the embeddings in many models).
EXCLUDED_FROM_ALL = ("lm_head", "score", "classifier", "pooler.dense")


def linear_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every wrappable module by path (a LoraLayer counts under its own path)."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, LoraLayer):
            out[name] = m
        elif isinstance(m, WRAPPABLE) and not name.endswith(".base_layer"):
            out[name] = m
    return out


def adaptable_modules(model: nn.Module) -> dict[str, nn.Module]:
    """What an adapter may hold factors for: the linear modules and the embeddings, by path."""
    out = linear_modules(model)
    for name, m in model.named_modules():
        if isinstance(m, EMBEDDINGS) and not name.endswith(".base_layer"):
            out[name] = m
    return out


def resolve_targets(model: nn.Module, targets: str | list[str]) -> list[str]:
    """Module paths matched by ``targets``.

    Args:
        targets: a preset (``"attention"``, ``"attention-qv"``, ``"mlp"``, ``"all-linear"``), or a
            list whose items are presets, module-name suffixes (``"q_proj"`` matches
            ``model.layers.0.self_attn.q_proj``) or regexes matched against full paths.

    Raises:
        WorkbenchError: an item matches nothing; the message lists module names that exist.
    """
    items = [targets] if isinstance(targets, str) else list(targets)
    modules = linear_modules(model)
    chosen: list[str] = []
    for item in items:
        found = [n for n in modules if _matches(item, n)]
        if not found:
            sample = sorted({n.split(".")[-1] for n in modules})
            raise WorkbenchError(
                f"target {item!r} matches no linear module of this model; use a preset "
                f"({', '.join([*PRESETS, 'all-linear'])}), a suffix such as {sample[:8]}, or a regex"
            )
        chosen += [n for n in found if n not in chosen]
    return [n for n in modules if n in chosen]  # model order


def _matches(item: str, name: str) -> bool:
    if item == "all-linear":
        return not any(name == e or name.endswith("." + e) for e in EXCLUDED_FROM_ALL)
    if item in PRESETS:
        return any(_suffix(s, name) for s in PRESETS[item]) and not (
            item == "mlp" and ".attention." in name
        )
    if _suffix(item, name):
        return True
    try:
        return re.fullmatch(item, name) is not None
    except re.error:
        return False


def _suffix(suffix: str, name: str) -> bool:
    return name == suffix or name.endswith("." + suffix)
