"""QLadder: learned queries that climb a frozen encoder, cross-attending to each stage's features.

    Q_0 = queries (1, n, d)                                              (randn, learned)
    for each stage i (shallow to deep), h_i = the stage's map flattened  (B, H_i·W_i, C_i)
        Q ← Q + CrossAttn(LN0(Q), LN1(h_i))                              (B, n, d)
        Q ← Q + MLP(LN2(Q))                                              (d → 4d → d, GELU)
    ladder tokens = Out(Q)                                               (B, n, out)

The ladder tokens are appended to the encoder's patch tokens as extra visual tokens (the VLM's
projector then maps both into the language model).

Deviations: Arcana climbs CLIP-L's 24 layers of one width (1024); a CNN's stages differ in width and
resolution, so each rung has its own key/value width (``kdim = vdim = C_i``) and there is one rung
per stage, and ``Out`` maps the ladder width to the patch tokens' width (identity in Arcana).

Telemetry: each rung's ``hook_attention`` carries its cross-attention (B, heads, n, H_i·W_i) over
the stage's positions (computed every forward; recorded only when someone listens).

Reference: Arcana, "Improving Multi-modal Large Language Model through Boosting Vision Capabilities"
(arXiv 2410.13733); code github syp2ysy/Arcana @eefd549 arcana/model/multimodal_encoder/clip_qladder.py.
"""

from __future__ import annotations

import torch
from torch import nn

from workbench.errors import WorkbenchError
from workbench.hooks import HookPoint


class Rung(nn.Module):
    """One ladder step: cross-attention of the queries to one stage, then an MLP, both residual."""

    def __init__(self, dim: int, channels: int, heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.ln_q, self.ln_kv, self.ln_mlp = nn.LayerNorm(dim), nn.LayerNorm(channels), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, kdim=channels, vdim=channels, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))
        self.hook_attention = HookPoint()

    def forward(self, q: torch.Tensor, feature_map: torch.Tensor) -> torch.Tensor:
        h = self.ln_kv(feature_map.flatten(2).transpose(1, 2))  # (B, H·W, C)
        attended, weights = self.attn(self.ln_q(q), h, h, need_weights=True, average_attn_weights=False)
        self.hook_attention(weights)  # (B, heads, n, H·W)
        q = q + attended  # (B, n, d)
        return q + self.mlp(self.ln_mlp(q))


class QLadder(nn.Module):
    """Learned queries over the stage maps of a staged encoder.

    Args:
        channels: the width of each stage map the ladder reads (one rung each), shallow to deep.
        queries: number of ladder tokens n (Arcana: 64).
        dim: the ladder width d.
        heads: attention heads (d must be divisible by it).
        out_dim: width of the returned tokens (the patch tokens' width); None keeps d.
        seed: seeds the initialisation without touching the global random state.
    """

    def __init__(self, channels: list[int], *, queries: int = 8, dim: int = 128, heads: int = 4,
                 out_dim: int | None = None, seed: int = 0):
        super().__init__()
        if dim % heads:
            raise WorkbenchError(f"QLadder dim {dim} must be divisible by heads {heads}")
        if not channels or queries < 1:
            raise WorkbenchError("QLadder needs at least one stage and one query")
        self.channels = list(channels)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.queries = nn.Parameter(torch.randn(1, queries, dim))  # (1, n, d)
            self.rungs = nn.ModuleList(Rung(dim, c, heads) for c in channels)
            self.out = nn.Linear(dim, out_dim) if out_dim else nn.Identity()

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """Ladder tokens (B, n, out) from the stage maps [(B, C_i, H_i, W_i)]."""
        if len(maps) != len(self.rungs):
            raise WorkbenchError(f"QLadder has {len(self.rungs)} rungs but got {len(maps)} stage maps")
        for i, (m, c) in enumerate(zip(maps, self.channels, strict=True)):
            if m.dim() != 4 or m.shape[1] != c:
                raise WorkbenchError(f"QLadder stage {i} expects (B, {c}, H, W); got {tuple(m.shape)}")
        q = self.queries.expand(maps[0].shape[0], -1, -1)  # (B, n, d)
        for rung, m in zip(self.rungs, maps, strict=True):
            q = rung(q, m)
        return self.out(q)  # (B, n, out)
