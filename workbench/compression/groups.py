"""Dependency groups of Llama-style and Gemma-style decoder blocks, written by hand.

A group is the set of weight slices that must be removed together so the block still computes:

- **neuron** (MLP): row i of ``gate_proj`` and ``up_proj`` and column i of ``down_proj``.
- **query head** (attention, ``attention="query"``): the ``head_dim`` rows of head h in ``q_proj`` and the
  same ``head_dim`` columns of ``o_proj``. ``q_norm`` (Gemma) normalises each head over ``head_dim`` with
  one shared weight, so it is unaffected. The key/value heads stay: every KV group keeps the same number
  of query heads (the balance ``repeat_kv`` needs), so this works with one KV head (Gemma 3 270M).
- **KV group** (attention, ``attention="kv"``): KV head j with the ``g = n_heads / n_kv`` query heads that
  share it: ``k_proj``/``v_proj`` rows ``[j·d, (j+1)·d)``, ``q_proj`` rows and ``o_proj`` columns
  ``[j·g·d, (j+1)·g·d)``. This is LoRAM's choice (it drops KV heads and their Q/O heads); a model with a
  single KV head cannot lose it, so ``"kv"`` is refused there.

The default is ``"query"``: LLM-Pruner prunes heads (its root is ``q_proj`` with
``consecutive_groups = head_dim``), and it is the one choice that works on every GQA layout.

Reference: Ma et al., "LLM-Pruner: On the Structural Pruning of Large Language Models", NeurIPS 2023
(horseee/LLM-Pruner @128a07d, ``hf_prune.py``); Zhang et al., "Train Small, Infer Large: Memory-Efficient
LoRA Training for Large Language Models" (LoRAM), ICLR 2025 (junzhang-zj/LoRAM @ce64e68).
Deviations: the authors build the groups with torch_pruning's DependencyGraph; here they are written by
hand for the two block layouts (the same couplings), and a head group in ``"query"`` mode leaves k/v
alone (LLM-Pruner's LLaMA-1 had one KV head per query head, so it pruned q/k/v together).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from workbench.errors import WorkbenchError

ATTENTION_MODES = ("query", "kv")
ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Block:
    """The sizes of one decoder block, read from its weights (so a pruned block reads true)."""

    layer: int
    prefix: str  # "model.layers.3"
    n_heads: int
    n_kv: int
    head_dim: int
    d_ff: int

    @property
    def group_size(self) -> int:
        """Query heads per KV head, g."""
        return self.n_heads // self.n_kv


@dataclass(frozen=True)
class Member:
    """One coupled slice of a group set: ``channels[k]`` are group k's rows (dim 0) or columns (dim 1)."""

    module: str  # full module path
    dim: int  # 0: output rows of the (out, in) weight; 1: input columns
    channels: torch.Tensor  # (n_groups, width) long


@dataclass(frozen=True)
class GroupSet:
    """All groups of one kind in one layer."""

    layer: int
    kind: str  # "neuron" | "query" | "kv"
    members: tuple[Member, ...]

    @property
    def n(self) -> int:
        return self.members[0].channels.shape[0]


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks of a Llama/Gemma causal LM (``model.model.layers``)."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if not isinstance(layers, nn.ModuleList) or not len(layers):
        raise WorkbenchError(
            f"{type(model).__name__} has no model.layers: structural pruning knows Llama-style and "
            "Gemma-style causal LMs (LlamaForCausalLM, Gemma3ForCausalLM ...); pass one of those")
    return layers


def blocks(model: nn.Module) -> list[Block]:
    """Every decoder block's sizes; refuses a block without the seven plain Linear projections."""
    out = []
    for i, layer in enumerate(decoder_layers(model)):
        attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
        for owner, names in ((attn, ATTN), (mlp, MLP)):
            for n in names:
                if not isinstance(getattr(owner, n, None), nn.Linear):
                    raise WorkbenchError(
                        f"layer {i} has no plain nn.Linear {n!r} (is the model inside a lab or peft?): "
                        "prune the plain transformers model, then build a lab on the pruned one")
        d = attn.head_dim
        out.append(Block(i, f"model.layers.{i}", attn.q_proj.out_features // d,
                         attn.k_proj.out_features // d, d, mlp.gate_proj.out_features))
    return out


def _heads(first: torch.Tensor, width: int) -> torch.Tensor:
    """(n, width) channel matrix: row k holds ``first[k] .. first[k] + width - 1``."""
    return first[:, None] + torch.arange(width)[None, :]


def neuron_groups(block: Block) -> GroupSet:
    """One group per MLP neuron: gate/up rows and the down column."""
    ch = torch.arange(block.d_ff)[:, None]  # (d_ff, 1)
    p = f"{block.prefix}.mlp"
    return GroupSet(block.layer, "neuron", (Member(f"{p}.gate_proj", 0, ch), Member(f"{p}.up_proj", 0, ch),
                                            Member(f"{p}.down_proj", 1, ch)))


def head_groups(block: Block, attention: str = "query") -> GroupSet:
    """One group per query head (``"query"``) or per KV head with its query heads (``"kv"``)."""
    p, d, g = f"{block.prefix}.self_attn", block.head_dim, block.group_size
    if attention == "query":
        q = _heads(torch.arange(block.n_heads) * d, d)  # (n_heads, d)
        return GroupSet(block.layer, "query", (Member(f"{p}.q_proj", 0, q), Member(f"{p}.o_proj", 1, q)))
    if attention == "kv":
        if block.n_kv < 2:
            raise WorkbenchError(
                f"layer {block.layer} has one key/value head: pruning whole KV groups would remove all its "
                "attention; use attention='query' (prunes query heads within the group)")
        q = _heads(torch.arange(block.n_kv) * g * d, g * d)  # (n_kv, g·d)
        kv = _heads(torch.arange(block.n_kv) * d, d)  # (n_kv, d)
        return GroupSet(block.layer, "kv", (Member(f"{p}.q_proj", 0, q), Member(f"{p}.k_proj", 0, kv),
                                            Member(f"{p}.v_proj", 0, kv), Member(f"{p}.o_proj", 1, q)))
    raise WorkbenchError(f"attention={attention!r} is unknown; use one of {ATTENTION_MODES}")


def group_sets(model: nn.Module, layers=None, attention: str = "query",
               parts=("attention", "mlp")) -> list[GroupSet]:
    """The group sets of the chosen layers (None: all) and parts ("attention", "mlp")."""
    bs = blocks(model)
    chosen = range(len(bs)) if layers is None else list(layers)
    bad = [i for i in chosen if not 0 <= i < len(bs)]
    if bad:
        raise WorkbenchError(f"layers {bad} do not exist; the model has layers 0..{len(bs) - 1}")
    unknown = set(parts) - {"attention", "mlp"}
    if unknown or not parts:
        raise WorkbenchError(f"parts={parts!r}: choose from 'attention' and 'mlp'")
    out = []
    for i in chosen:
        if "attention" in parts:
            out.append(head_groups(bs[i], attention))
        if "mlp" in parts:
            out.append(neuron_groups(bs[i]))
    return out
