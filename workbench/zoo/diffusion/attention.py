"""Cross-attention maps of a diffusers UNet, captured by an attention processor.

    with capture_cross_attention(model) as rec:
        images = ddim_sample(model, states, mask, steps=20, seed=0)
    maps = rec.maps(steps=20, grid=(14, 28))     # (B, steps, T, h, w)

``CaptureProcessor`` is diffusers' ``AttnProcessor`` (the plain softmax path) that also keeps the
attention probabilities of cross-attention calls (``attn2``, where the keys are caption tokens),
averaged over heads. The recorder groups the calls by denoising step (every forward of the UNet
calls each cross-attention layer once), averages over layers (maps of coarser layers are repeated
up to the finest one, which keeps each token's mass fractions) and returns a tidy tensor. With
classifier-free guidance the UNet sees ``[uncond; cond]``; ``keep="last"`` keeps the conditional half.
The original processors are put back when the block ends, even on an error.

Reference: Hertz et al., "Prompt-to-Prompt Image Editing with Cross Attention Control", ICLR 2023
(per-token cross-attention maps over the denoising steps); diffusers ``AttnProcessor`` (the code path).
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from diffusers.models.attention_processor import AttnProcessor
from torch.nn import functional as F

from workbench.errors import WorkbenchError


class CaptureProcessor(AttnProcessor):
    """``AttnProcessor`` that appends each cross-attention call's head-averaged probabilities to ``store``.

    Args:
        store: a list that receives (B, Q, T) tensors, one per call.
    """

    def __init__(self, store: list):
        super().__init__()
        self.store = store

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        if encoder_hidden_states is None or attn.spatial_norm is not None or attn.group_norm is not None \
                or hidden_states.ndim != 3:
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        residual = hidden_states
        B, Q, _ = hidden_states.shape
        T = encoder_hidden_states.shape[1]
        attention_mask = attn.prepare_attention_mask(attention_mask, T, B)
        if attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))  # (B·heads, Q, d)
        key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))  # (B·heads, T, d)
        value = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))
        probs = attn.get_attention_scores(query, key, attention_mask)  # (B·heads, Q, T)
        self.store.append(probs.detach().view(B, attn.heads, Q, T).mean(1).cpu())  # (B, Q, T)
        out = attn.batch_to_head_dim(torch.bmm(probs, value))
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


class AttentionRecord:
    """What ``capture_cross_attention`` recorded: ``calls`` (B, Q, T) tensors in call order."""

    def __init__(self, n_layers: int):
        self.calls: list[torch.Tensor] = []
        self.n_layers = n_layers

    def maps(self, steps: int, grid: tuple[int, int], keep: str = "all") -> torch.Tensor:
        """The recorded maps as (B, steps, T, h, w), averaged over heads and layers.

        Args:
            steps: forwards of the UNet recorded (denoising steps).
            grid: (H, W) of the UNet's input grid; each layer's Q = h·w has the same aspect.
            keep: ``"all"`` rows of each call, or ``"last"`` half (the conditional half under CFG).

        Raises:
            WorkbenchError: when the number of calls is not steps × layers.
        """
        if len(self.calls) != steps * self.n_layers:
            raise WorkbenchError(f"recorded {len(self.calls)} cross-attention calls, expected steps × layers "
                                 f"= {steps} × {self.n_layers}; pass the number of UNet forwards as steps")
        shapes = [_grid(c.shape[1], grid) for c in self.calls[:self.n_layers]]
        h, w = max(shapes)
        out = []
        for s in range(steps):
            layers = []
            calls = self.calls[s * self.n_layers:(s + 1) * self.n_layers]
            for (lh, lw), c in zip(shapes, calls, strict=True):
                c = c[c.shape[0] // 2:] if keep == "last" else c
                m = c.transpose(1, 2).reshape(c.shape[0], c.shape[2], lh, lw)  # (B, T, lh, lw)
                if (lh, lw) != (h, w):  # repeat each cell: every token keeps its mass fractions
                    m = F.interpolate(m, size=(h, w), mode="nearest") * (lh * lw) / (h * w)
                layers.append(m)
            out.append(torch.stack(layers).mean(0))
        return torch.stack(out, dim=1)  # (B, steps, T, h, w)


def _grid(q: int, grid: tuple[int, int]) -> tuple[int, int]:
    H, W = grid
    h = round(math.sqrt(q * H / W))
    if h * (q // max(h, 1)) != q:
        raise WorkbenchError(f"a cross-attention layer has {q} queries, not a grid with the aspect {H}:{W}")
    return h, q // h


def cross_attention_layers(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Name -> every cross-attention module (``attn2``) of a diffusers UNet inside ``model``."""
    return {n: m for n, m in model.named_modules() if n.endswith("attn2") and hasattr(m, "set_processor")}


@contextmanager
def capture_cross_attention(model: torch.nn.Module):
    """Record the cross-attention maps of every forward of ``model`` inside the block.

    Yields:
        An ``AttentionRecord``; call ``.maps(steps, grid)`` after the block.
    """
    layers = cross_attention_layers(model)
    if not layers:
        raise WorkbenchError(f"{type(model).__name__} has no cross-attention (attn2) layers to record")
    record = AttentionRecord(len(layers))
    old = {n: m.processor for n, m in layers.items()}
    try:
        for m in layers.values():
            m.set_processor(CaptureProcessor(record.calls))
        yield record
    finally:
        for n, m in layers.items():
            m.set_processor(old[n])
