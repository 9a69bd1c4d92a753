"""Structural pruning of a Llama/Gemma causal LM: score the coupled groups, keep the best, slice the
Linear weights, and keep the index map.

``prune(model, 0.25, method="taylor", batch=calib)`` returns a ``Pruned`` (a pruned COPY, its index
map and the group scores); the model given is left as it was (LoRAM needs it). The attention modules'
``num_key_value_groups`` follow the kept heads, so a pruned model runs as soon as it is sliced, even
when layers differ. The config is rewritten (``num_attention_heads``, ``num_key_value_heads``,
``head_dim``, ``intermediate_size``) only when every layer kept the same numbers: transformers' Llama
and Gemma 3 configs hold one value for all layers, so only such a model saves as a normal model
directory (``workbench.compression.saving``). Prune every layer locally to get one.

Reference: Ma et al., "LLM-Pruner: On the Structural Pruning of Large Language Models", NeurIPS 2023
(horseee/LLM-Pruner @128a07d, ``hf_prune.py``: afterwards ``num_heads = q_out / head_dim``).
Deviations: pruning is one shot (``iterative_steps 1``, as the paper's runs); the authors save the whole
pickled model with ``torch.save``, here a uniform model saves with ``save_pretrained``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from workbench.compression.groups import GroupSet, blocks, decoder_layers, group_sets
from workbench.compression.importance import element_scores, group_scores
from workbench.compression.index_map import LayerMap, PruneMap
from workbench.compression.select import keep


@dataclass
class Pruned:
    """A pruned model with its index map and the group scores it was pruned by."""

    model: nn.Module
    map: PruneMap
    scores: dict[tuple[int, str], torch.Tensor]  # (layer, kind) -> (n_groups,)


def _slice(linear: nn.Linear, dim: int, index: torch.Tensor) -> None:
    """Keep rows (dim 0) or columns (dim 1) ``index`` of a Linear, in place."""
    index = index.to(linear.weight.device)
    with torch.no_grad():
        linear.weight = nn.Parameter(linear.weight.index_select(dim, index).contiguous(),
                                     requires_grad=linear.weight.requires_grad)
        if dim == 0 and linear.bias is not None:
            linear.bias = nn.Parameter(linear.bias.index_select(0, index).contiguous(),
                                       requires_grad=linear.bias.requires_grad)
    linear.out_features, linear.in_features = linear.weight.shape


def apply(model: nn.Module, sets: list[GroupSet], kept: Mapping[tuple[int, str], list[int]]) -> None:
    """Slice every member of every set to its kept groups, in place, and fix the attention bookkeeping."""
    named = dict(model.named_modules())
    for s in sets:
        idx = torch.tensor(kept[(s.layer, s.kind)], dtype=torch.long)
        for m in s.members:
            _slice(named[m.module], m.dim, m.channels[idx].flatten())
    for b, layer in zip(blocks(model), decoder_layers(model), strict=True):
        layer.self_attn.num_key_value_groups = b.n_heads // b.n_kv
    _update_config(model)


def _update_config(model: nn.Module) -> None:
    """Write the per-layer sizes into the config when all layers agree (else leave it: see module doc)."""
    sizes = {(b.n_heads, b.n_kv, b.head_dim, b.d_ff) for b in blocks(model)}
    if len(sizes) == 1:
        n_heads, n_kv, d, d_ff = sizes.pop()
        cfg = model.config
        cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim = n_heads, n_kv, d
        cfg.intermediate_size = d_ff


def prune(model: nn.Module, ratio: float, *, method: str = "taylor",
          batch: Mapping[str, torch.Tensor] | None = None, layers: Sequence[int] | None = None,
          parts: Sequence[str] = ("attention", "mlp"), attention: str = "query", scope: str = "local",
          aggregation: str = "sum", seed: int = 0) -> Pruned:
    """Prune ``ratio`` of the head and neuron groups of the chosen layers; return a pruned copy.

    Args:
        model: a plain Llama-style or Gemma-style causal LM (not wrapped by a lab or peft); not modified.
        ratio: share of each kind of group to remove, in [0, 1) (LLM-Pruner: 0.25 in layers 4–29).
        method: an ``IMPORTANCE`` name: taylor (default, LLM-Pruner's), taylor2, taylor-mix, l1, l2, random.
        batch: calibration token ids ``{"input_ids": (n, T), "attention_mask": ...}`` for gradient methods.
        layers: decoder layers to prune (None: all).
        parts: "attention" and/or "mlp".
        attention: "query" (query heads within each KV group) or "kv" (whole KV groups); see groups.py.
        scope: "local" (each layer loses the ratio) or "global" (ranked across layers per kind).
        aggregation: reduction of a group's members: sum (default), mean or max.
        seed: for ``random``.
    """
    sets = group_sets(model, layers, attention, tuple(parts))
    scores = group_scores(sets, element_scores(model, sets, method, batch, seed), aggregation)
    before = blocks(model)
    kept = keep(sets, scores, ratio, scope, {b.layer: b.n_kv for b in before})
    maps = {}
    for b in before:
        m = LayerMap.full(b.n_heads, b.n_kv, b.head_dim, b.d_ff)
        if (b.layer, "neuron") in kept:
            m.neurons = kept[(b.layer, "neuron")]
        if (b.layer, "query") in kept:
            m.heads = kept[(b.layer, "query")]
        if (b.layer, "kv") in kept:
            m.kv = kept[(b.layer, "kv")]
            g = b.group_size
            m.heads = [j * g + h for j in m.kv for h in range(g)]
        maps[b.layer] = m
    pruned = copy.deepcopy(model)
    apply(pruned, sets, kept)
    settings = {"method": method, "ratio": ratio, "scope": scope, "attention": attention,
                "aggregation": aggregation, "layers": None if layers is None else list(layers),
                "parts": list(parts), "seed": seed}
    return Pruned(pruned, PruneMap(maps, settings), scores)
