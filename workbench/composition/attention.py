"""ConceptAttention: one attention processor for every composition method, steered by a plan.

    plan = AttentionPlan(grid=model.grid, terms=[Term({}, bg), Term({"cat": 1.0}, w_cat)], region=...)
    with planned(model, plan):
        eps = model(x, t, states, mask)

A plan says, for the forward passes inside the block, how each attention layer (``attn1`` self-,
``attn2`` cross-attention of the diffusers UNet) computes its output:

* ``terms``: a list of ``Term(adapters, where)``. Each term computes the whole attention with its own
  projections (q, k, v, out = base + Σ w_c ΔW_c of the lab's ``LoraLayer`` factors), and the outputs are
  summed with per-query weights ``where`` (N-concept masks on the canvas, pooled to the layer's grid).
  ``None`` (the default) runs the projections as the layers' own composition says (``lab.use``).
* ``region``: ``(cells-from masks, token groups)``: cross-attention logits get ``region_bias``
  (concept tokens only inside their box), added before the softmax.
* ``isolate``: canvas masks: self-attention logits get ``isolation_bias``.
* ``token_masks``: {adapter: (B, T)}: in cross-attention key and value projections adapter c's update
  touches only the text positions where its mask is 1 (TARA); the other projections are unmasked.
* ``record``: a list that receives every cross-attention call's head-averaged probabilities (B, Q, T),
  with gradients when they are enabled (CLoRA's and Composer's latent updates need them); a plan
  that records has one term (each term's call is recorded).

Without a region or isolation bias and with one term, the math is diffusers' ``AttnProcessor2_0``
(scaled dot-product attention), so a plan that changes nothing gives the model's own output.

Reference: diffusers ``AttnProcessor2_0`` (the code path); the parts each method uses cite their papers.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from workbench.adapters import LoraLayer
from workbench.composition.regions import cell_masks, isolation_bias, layer_grid, region_bias
from workbench.errors import WorkbenchError


@dataclass
class Term:
    """One computation of an attention layer: ``adapters`` {name: weight} ({}: the base), applied where
    ``where`` says: (H, W) canvas weights (None: everywhere)."""

    adapters: Mapping[str, float]
    where: torch.Tensor | None = None


@dataclass
class AttentionPlan:
    """How attention layers compute inside ``planned`` (see the module docstring).

    Attributes:
        grid: (H, W) of the UNet's input grid (``SceneUNet.grid``); each layer's grid has its aspect.
        terms: None (the layers as they are) or a list of ``Term``.
        region: None or (masks (N, H, W) bool canvas boxes, N token-position lists).
        isolate: None or (N, H, W) bool canvas boxes for region-masked self-attention.
        token_masks: None or {adapter: (B, T) float}: TARA's masks on cross-attention keys and values.
        record: None or a list receiving cross-attention probabilities (B, Q, T).
    """

    grid: tuple[int, int]
    terms: list[Term] | None = None
    region: tuple[torch.Tensor, list[list[int]]] | None = None
    isolate: torch.Tensor | None = None
    token_masks: Mapping[str, torch.Tensor] | None = None
    record: list | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    def pooled(self, key: str, hw: tuple[int, int], make):
        """A per-grid value computed once per plan (masks pooled to a layer's grid)."""
        k = (key, hw)
        if k not in self._cache:
            self._cache[k] = make()
        return self._cache[k]


def _project(module, x: torch.Tensor, adapters: Mapping[str, float] | None,
             token_masks: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
    """A projection's output: as the module is (``adapters`` None), or base + Σ w_c Δ_c (masked per token)."""
    if adapters is None and not token_masks:
        return module(x)
    if not isinstance(module, LoraLayer):
        return module(x)
    base = module.base_layer(x)
    if adapters is None:  # TARA: the layer's own composition, each adapter under its token mask
        adapters = dict(module.composition.weights)
    out = base
    held = set(module.held)
    for name, w in adapters.items():
        if name not in held or w == 0:
            continue
        delta = w * module.change(name, x, base)  # (B, T, out)
        if token_masks and name in token_masks:
            delta = delta * token_masks[name].to(delta.dtype)[..., None]
        out = out + delta
    return out


class ConceptAttention:
    """A diffusers attention processor that follows an ``AttentionPlan`` (see the module docstring)."""

    def __init__(self, plan: AttentionPlan):
        self.plan = plan

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        if attn.spatial_norm is not None or attn.group_norm is not None or hidden_states.ndim != 3 \
                or attn.norm_q is not None or attn.norm_k is not None:
            raise WorkbenchError("ConceptAttention handles plain (B, Q, C) attention layers only, as in "
                                 "SceneUNet; this layer has a spatial/group norm or q/k norms")
        plan = self.plan
        cross = encoder_hidden_states is not None
        B, Q, _ = hidden_states.shape
        context = encoder_hidden_states if cross else hidden_states
        if cross and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        T = context.shape[1]
        hw = layer_grid(Q, plan.grid)
        bias = None
        if attention_mask is not None:
            bias = attn.prepare_attention_mask(attention_mask, T, B).view(B, attn.heads, -1, T)
        extra = None
        if cross and plan.region is not None:
            masks, groups = plan.region
            extra = plan.pooled("region", hw, lambda: region_bias(cell_masks(masks, hw), groups, T))  # (Q, T)
        elif not cross and plan.isolate is not None:
            extra = plan.pooled("isolate", hw, lambda: isolation_bias(cell_masks(plan.isolate, hw)))  # (Q, Q)
        if extra is not None and bool(torch.isinf(extra).any()):  # a bias of zeros changes nothing: skip it
            extra = extra.to(hidden_states.dtype)[None, None]  # (1, 1, Q, T)
            bias = extra if bias is None else bias + extra
        token_masks = plan.token_masks if cross else None
        terms = plan.terms if plan.terms is not None else [Term(None)]  # type: ignore[arg-type]
        out = 0
        for term in terms:
            w = None if term.where is None else \
                plan.pooled(("where", id(term.where)), hw, lambda t=term: _where(t.where, hw))  # (Q,)
            if w is not None and not bool(w.any()):
                continue  # this term acts nowhere on this grid
            o = self._attend(attn, hidden_states, context, bias, term.adapters, token_masks, record=cross)
            out = out + (o if w is None else o * w.to(o.dtype)[None, :, None])
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor

    def _attend(self, attn, hidden, context, bias, adapters, token_masks, record: bool) -> torch.Tensor:
        B = hidden.shape[0]
        q = _project(attn.to_q, hidden, adapters)
        k = _project(attn.to_k, context, adapters, token_masks)
        v = _project(attn.to_v, context, adapters, token_masks)
        d = k.shape[-1] // attn.heads
        q, k, v = (z.view(B, -1, attn.heads, d).transpose(1, 2) for z in (q, k, v))  # (B, heads, ·, d)
        if record and self.plan.record is not None:
            logits = q @ k.transpose(-1, -2) * attn.scale  # (B, heads, Q, T)
            probs = (logits if bias is None else logits + bias).softmax(-1)
            self.plan.record.append(probs.mean(1))  # (B, Q, T)
            o = probs @ v
        else:
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=0.0, is_causal=False)
        o = o.transpose(1, 2).reshape(B, -1, attn.heads * d).to(q.dtype)
        o = _project(attn.to_out[0], o, adapters)
        return attn.to_out[1](o)


def _where(where: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(Q,) weights of a canvas weight map on an (h, w) grid (mean over each cell)."""
    return F.adaptive_avg_pool2d(where.float()[None, None], hw).flatten()


def attention_layers(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Name -> every diffusers attention module (``attn1``, ``attn2``) inside ``model``."""
    return {n: m for n, m in model.named_modules()
            if n.rsplit(".", 1)[-1] in ("attn1", "attn2") and hasattr(m, "set_processor")}


@contextmanager
def planned(model: torch.nn.Module, plan: AttentionPlan):
    """Inside the block every attention layer of ``model`` follows ``plan``; the old processors come back."""
    layers = attention_layers(model)
    if not layers:
        raise WorkbenchError(f"{type(model).__name__} has no attention layers (attn1/attn2) to steer")
    old = {n: m.processor for n, m in layers.items()}
    proc = ConceptAttention(plan)
    try:
        for m in layers.values():
            m.set_processor(proc)
        yield proc
    finally:
        for n, m in layers.items():
            m.set_processor(old[n])


def projection_modules(model: torch.nn.Module) -> set[int]:
    """ids of the q, k, v, out projections of every attention layer (what ``terms`` can steer)."""
    out = set()
    for m in attention_layers(model).values():
        out |= {id(m.to_q), id(m.to_k), id(m.to_v), id(m.to_out[0])}
    return out
