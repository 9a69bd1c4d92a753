"""LoRAM recovery: a LoRA trained on the pruned model, put back onto the full model.

Each factor grows back to the full size with zeros at the pruned indices, so the recovered ΔW equals
the pruned ΔW on the kept rows/columns and is zero elsewhere:

- ``gate_proj``/``up_proj``: ``lora_B`` (d_ff'×r → d_ff×r), zero rows at the pruned neurons;
- ``down_proj``: ``lora_A`` (r×d_ff' → r×d_ff), zero columns;
- ``q_proj``: ``lora_B`` rows at the kept query channels. Under GQA a kept KV head h stands for the
  query channels ``[h·g·d, (h+1)·g·d)`` (g = n_heads/n_kv): the index map stores the kept query heads
  already expanded that way (``attention="kv"``), or the kept query heads themselves (``"query"``);
- ``k_proj``/``v_proj``: ``lora_B`` rows at the kept KV channels;
- ``o_proj``: ``lora_A`` columns at the kept query channels.

Other modules (unpruned layers, or a module of no pruned dimension) are copied as they are.
``fill="zero"`` is the authors' default ``zeroA``; ``fill="normal"`` is their ``normA`` (the missing A
columns drawn from N(0, 1/r)), which adds noise on the full model, kept for comparison.

Reference: Zhang et al., "Train Small, Infer Large: Memory-Efficient LoRA Training for Large Language
Models" (LoRAM), ICLR 2025 (junzhang-zj/LoRAM @ce64e68, ``loram/3_recovered_low_rank_matrix_generation.py``).
Deviations: works on the lab's Adapter (PEFT layout) rather than a PEFT state dict; the alignment step
(continued pretraining of the pruned model) is the caller's: train on the pruned model's lab first.
"""

from __future__ import annotations

import torch

from workbench.adapters.adapter import Adapter, LoraFactors
from workbench.compression.index_map import PruneMap
from workbench.errors import WorkbenchError

FILLS = ("zero", "normal")
_B_ROWS = {"q_proj": "q", "k_proj": "kv", "v_proj": "kv", "gate_proj": "neuron", "up_proj": "neuron"}
_A_COLS = {"o_proj": "q", "down_proj": "neuron"}


def _layer_of(module: str) -> int | None:
    parts = module.split(".")
    for i, p in enumerate(parts[:-1]):
        if p == "layers" and parts[i + 1].isdigit():
            return int(parts[i + 1])
    return None


def _grow(t: torch.Tensor, dim: int, index: torch.Tensor, full: int,
          fill: torch.Tensor | None) -> torch.Tensor:
    """``t`` with its dimension ``dim`` scattered to positions ``index`` of a size-``full`` tensor."""
    shape = list(t.shape)
    if shape[dim] != len(index):
        raise WorkbenchError(f"a factor has {shape[dim]} entries along the pruned dimension but the index "
                             f"map kept {len(index)}: the adapter was not trained on this pruned model")
    shape[dim] = full
    out = torch.zeros(shape, dtype=t.dtype) if fill is None else fill.to(t.dtype)
    out.index_copy_(dim, index, t)
    return out


def recover(adapter: Adapter, index_map: PruneMap, *, name: str | None = None, fill: str = "zero",
            base_fingerprint: str | None = None, seed: int = 0) -> Adapter:
    """The adapter for the FULL model: every factor grown back to full size, zeros at pruned indices.

    Args:
        adapter: a plain LoRA trained on the pruned model.
        index_map: the pruned model's ``PruneMap``.
        name: the new adapter's name (default ``<name>_recovered``).
        fill: "zero" (LoRAM's default zeroA) or "normal" (normA: pruned A columns ~ N(0, 1/r)).
        base_fingerprint: the full model's fingerprint.
        seed: for ``fill="normal"``.
    """
    if fill not in FILLS:
        raise WorkbenchError(f"fill={fill!r} is unknown; use one of {FILLS}")
    adapter.require_plain("LoRAM recovery")
    g = torch.Generator().manual_seed(seed)
    modules = {}
    for path, f in adapter.modules.items():
        layer, suffix = _layer_of(path), path.rsplit(".", 1)[-1]
        m = index_map.layers.get(layer)
        A, B = f.A.detach().clone(), f.B.detach().clone()
        if m is not None and suffix in _B_ROWS:
            kind = _B_ROWS[suffix]
            index, full = {"q": (m.q_channels, m.n_heads * m.head_dim),
                           "kv": (m.kv_channels, m.n_kv * m.head_dim),
                           "neuron": (m.neuron_index, m.d_ff)}[kind]
            B = _grow(B, 0, index, full, None)  # zero rows: B is (out, r)
        elif m is not None and suffix in _A_COLS:
            index, full = (m.q_channels, m.n_heads * m.head_dim) if _A_COLS[suffix] == "q" \
                else (m.neuron_index, m.d_ff)
            noise = None if fill == "zero" else torch.randn(A.shape[0], full, generator=g) / A.shape[0] ** 0.5
            A = _grow(A, 1, index, full, noise)  # columns: A is (r, in)
        modules[path] = LoraFactors(A.contiguous(), B.contiguous(), f.alpha)
    return Adapter(
        name=name or f"{adapter.name}_recovered", modules=modules, scaling=adapter.scaling,
        base_fingerprint=base_fingerprint, metadata=dict(adapter.metadata),
        lineage={"method": "loram-recover", "loram": {
            "source": adapter.name, "source_base_fingerprint": adapter.base_fingerprint,
            "source_lineage": adapter.lineage, "fill": fill, "seed": seed,
            "pruning": index_map.settings, "kept": index_map.kept_fraction()}})
