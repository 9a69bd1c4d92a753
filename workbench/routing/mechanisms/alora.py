"""ALoRA: a causal multi-head attention over the LoRA representation.  ⚠ RECONSTRUCTED ⚠

!! No public code exists for this paper. Everything below except the one-sentence idea ("a multi-head
!! attention module placed upon LoRA lets the current token's LoRA representation draw on preceding
!! tokens") is a RECONSTRUCTION: the placement (over z = A x, not over the update Δ), the residual, the
!! projections, the initialisation and every default are our choices, unverified against the paper.

    z = A dropout(x)                                     (B, T, r)
    ẑ = z + MHA_h(z)     Q, K, V, O: r → r, no bias, h heads of r/h, causal (token t sees 1..t),
                         padded keys (routing context ``attention_mask``, if present) masked out,
                         padded queries' attention output zeroed
    Δ = s · B ẑ,         s = α / r

With O = 0, ẑ = z and ALoRA is exactly the plain LoRA (s B A x). A is Kaiming-uniform and B zero
(``init="lora"``: Δ = 0 at the start); Q, K, V, O have nn.Linear's default initialisation (a standard
attention block; ``init="random"`` also makes B non-zero, for tests).

Incremental decoding is NOT supported: each token's update needs the z of every earlier token, and a
cached generation step passes only the new token. There is no z cache: the router computes the full
sequence path. Generate with ``use_cache=False`` (every step recomputes the whole sequence, which is
exact). A cached step cannot be told apart from a 1-token input in general; when the routing
context's ``attention_mask`` is longer than the input, the router raises instead of guessing.

Telemetry: the RoutingRecord's experts are the source tokens: ``scores``/``weights`` (B, T, T) are
the attention over earlier tokens averaged over heads; ``hook_attn`` carries the per-head maps
(B, h, T, T), computed only when recorded.

Reference: Liu et al., "More Than Catastrophic Forgetting: Integrating General Capabilities For
Domain-Specific LLMs" (ALoRA, arXiv 2405.17830, EMNLP'24); no code released. ⚠ Defaults r=8, α=16,
heads=2, dropout 0, targets q,k,v,o are ours (the paper's are unknown).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from workbench.adapters.init import INITS
from workbench.errors import WorkbenchError
from workbench.hooks import HookPoint
from workbench.routing.base import INIT_NAMES, ROUTERS, Router
from workbench.routing.context import token_mask
from workbench.routing.factors import linear_weight


def causal_allowed(real: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, T) bool: query t may attend key u iff u <= t and u is real (and always itself, so that
    no row is empty)."""
    T = real.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=real.device).tril()
    eye = torch.eye(T, dtype=torch.bool, device=real.device)
    return ((causal & real[:, None, None, :]) | eye)  # broadcast (B, 1, T, T)


@ROUTERS.register("alora", choices={"init": INIT_NAMES},
                  flags=("exportable",),
                  bounds={"r": (1, None), "alpha": (0.0, None), "heads": (1, None), "dropout": (0.0, 1.0)})
class ALoRA(Router):
    """ALoRA: plain LoRA whose rank-r code z = A x also attends causally over the earlier tokens' codes.

    Args:
        r: rank of A and B (the attention works in this r-dimensional space).
        alpha: the LoRA scale numerator: s = α / r.
        heads: attention heads over z (r must be divisible by it).
        dropout: dropout probability on the LoRA branch's input.
        init: how the factors start (``workbench.adapters.INITS``): ``"lora"`` B = 0, ``"random"`` B ≠ 0.
    """

    default_targets = "attention"
    full_sequence = True  # no cache of earlier z: generation must recompute the sequence
    reference = "ALoRA, arXiv 2405.17830 (no public code: reconstructed)"

    def __init__(self, in_features: int, out_features: int, *, generator: torch.Generator, r: int = 8,
                 alpha: float = 16.0, heads: int = 2, dropout: float = 0.0, init: str = "lora"):
        super().__init__()
        if heads < 1 or r % heads:
            raise WorkbenchError(f"ALoRA needs heads dividing r: got heads={heads}, r={r} (try heads=1 or 2)")
        self.r, self.heads, self.scaling, self.dropout = r, heads, alpha / r, dropout
        A, B = INITS.get(init)(out_features, in_features, r, generator)
        self.A, self.B = nn.Parameter(A), nn.Parameter(B)  # (r, in), (out, r)
        self.W_q, self.W_k, self.W_v, self.W_o = (linear_weight(r, r, generator) for _ in range(4))  # (r, r)
        self.hook_attn = HookPoint()

    def attend(self, z: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(MHA(z) (B, T, r) with padded queries zeroed, attention (B, h, T, T))."""
        b, t, r = z.shape
        q, k, v = (F.linear(z, W).view(b, t, self.heads, r // self.heads).transpose(1, 2)
                   for W in (self.W_q, self.W_k, self.W_v))  # (B, h, T, r/h)
        logits = q @ k.transpose(-1, -2) / math.sqrt(r // self.heads)  # (B, h, T, T)
        probs = logits.masked_fill(~causal_allowed(real), float("-inf")).softmax(-1)
        out = (probs @ v).transpose(1, 2).reshape(b, t, r)
        return F.linear(out, self.W_o) * real[..., None].to(z.dtype), probs

    def forward(self, x: torch.Tensor, base: nn.Module) -> torch.Tensor:
        real = self.real_tokens(x)
        z = F.linear(F.dropout(x, self.dropout, self.training) if self.dropout else x, self.A)  # (B, T, r)
        mixed, probs = self.attend(z, real)
        if self.hook_attn._forward_hooks:
            self.hook_attn(probs)
        avg = probs.mean(1)  # (B, T, T): experts = source tokens
        self.emit(avg, avg)
        return self.scaling * F.linear(z + mixed, self.B)

    @staticmethod
    def real_tokens(x: torch.Tensor) -> torch.Tensor:
        """(B, T) bool from the context's ``attention_mask`` (all real when there is none)."""
        mask = token_mask(x, needed_by="ALoRA", hint="if this is a cached generation step: ALoRA has no "
                          "z cache, generate with use_cache=False; else pass the mask of this batch")
        return torch.ones(x.shape[:-1], dtype=torch.bool, device=x.device) if mask is None else mask.bool()
