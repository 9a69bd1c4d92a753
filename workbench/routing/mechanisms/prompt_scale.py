"""Prompt-conditioned scale (WavLLM): a LoRA whose constant α/r is replaced by a per-output-channel σ.

    y = W x + ((dropout(x) A) B) ⊙ σ[:, None, :]        σ (B, out), one vector per sample

σ comes from the routing context key ``prompt_scale``; ``workbench.routing.prompt_scaler.PromptScaler``
computes it from the prompt alone (a base-only pass, pooled and clamped to [0, 3]) and returns the
context to run with::

    scaler = PromptScaler.for_routed(lab, "wav")
    with routing_context(**scaler.context(lab, input_ids, attention_mask, prompt_lengths=lengths)):
        lab.model(input_ids=input_ids, attention_mask=attention_mask)

``prompt_scale`` is either one tensor (B, out) (or (1, out) / (out,), shared by the batch), or a dict
keyed by module path or by output width, the module path winning. Keyed by width is what the scaler
gives. Deviation: in WavLLM (LLaMA-7B, multi-head attention) q, k, v, o all have 4096 outputs and share
one σ; SmolLM2 (and tiny-llama) use grouped-query attention, so k/v have fewer outputs (192) than q/o
(576) and need their own σ: the scaler has one head per distinct output width.

``alpha`` is not used in the forward (σ replaces α/r). It is the stage-1 LoRA's α: σ ≡ α/r everywhere
(``constant_scale``) is exactly a plain LoRA, which is how WavLLM's stage 1 trains. ``freeze_lora``
is the code's ``second_stage_fix_lora`` (stage 2 trains the scaler only).

Telemetry: the RoutingRecord's experts are the output channels: ``scores`` and ``weights`` are σ
broadcast over the tokens (B, T, out).

Reference: Hu et al., "WavLLM: Towards Robust and Adaptive Speech Large Language Model" (arXiv
2404.00656); code github microsoft/SpeechT5 @5d66cf5, WavLLM/wavllm/models/llama.py (Attention_LoRA).
Defaults r=8, α=32, dropout 0.1, targets q,k,v,o (⚠ the released checkpoint's r/α were not inspected).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from workbench.adapters.init import INITS
from workbench.errors import WorkbenchError
from workbench.routing.base import INIT_NAMES, ROUTERS, Router
from workbench.routing.context import context_value
from workbench.routing.routed import Routed


def lookup_scale(value, path: str, out: int, batch: int) -> torch.Tensor:
    """σ (B or 1, out) for the module at ``path`` with ``out`` outputs, from a ``prompt_scale`` value."""
    if isinstance(value, Mapping):
        key = path if path in value else out if out in value else None
        if key is None:
            raise WorkbenchError(
                f"prompt-scaled LoRA at {path!r} (out={out}): prompt_scale has keys {list(value)}, "
                f"neither its path nor its output width {out}; PromptScaler.for_routed makes a head per width"
            )
        value = value[key]
    if not torch.is_tensor(value):
        raise WorkbenchError(f"prompt-scaled LoRA at {path!r}: prompt_scale must be a tensor (B, out), "
                             f"got {type(value).__name__}")
    sigma = value[None] if value.dim() == 1 else value
    if sigma.dim() != 2 or sigma.shape[-1] != out or sigma.shape[0] not in (1, batch):
        raise WorkbenchError(
            f"prompt-scaled LoRA at {path!r}: prompt_scale has shape {tuple(value.shape)} but this module "
            f"needs ({batch}, {out}) (batch, output width); k/v projections of a grouped-query model are "
            "narrower than q/o: pass a dict keyed by width"
        )
    return sigma


@ROUTERS.register("prompt-scale", flags=("exportable", "needs_prompt_scale"),
                  bounds={"r": (1, None), "alpha": (0.0, None), "dropout": (0.0, 1.0)},
                  choices={"init": INIT_NAMES})
class PromptScaledLoRA(Router):
    """Prompt-scaled LoRA (WavLLM): the constant α/r is replaced by a per-output-channel σ from the prompt.

    Args:
        r: rank of the LoRA.
        alpha: the stage-1 scale numerator (σ ≡ α / r is the plain LoRA); unused once σ is given.
        dropout: dropout probability on the LoRA branch's input.
        freeze_lora: keep A and B frozen (stage 2 trains the scaler only).
        init: how the factors start (``workbench.adapters.INITS``): ``"lora"`` B = 0, ``"random"`` B ≠ 0.
    """

    default_targets = "attention"
    reference = "WavLLM, arXiv 2404.00656; github microsoft/SpeechT5 @5d66cf5 WavLLM/wavllm/models/llama.py"

    def __init__(self, in_features: int, out_features: int, *, generator: torch.Generator, r: int = 8,
                 alpha: float = 32.0, dropout: float = 0.1, freeze_lora: bool = False, init: str = "lora"):
        super().__init__()
        self.r, self.alpha, self.dropout, self.path = r, float(alpha), dropout, ""
        A, B = INITS.get(init)(out_features, in_features, r, generator)
        self.A = nn.Parameter(A, requires_grad=not freeze_lora)  # (r, in)
        self.B = nn.Parameter(B, requires_grad=not freeze_lora)  # (out, r)

    @classmethod
    def build(cls, *, path: str, module: nn.Module, lab, generator: torch.Generator, **params) -> Router:
        router = cls(module.in_features, module.out_features, generator=generator, **params)
        router.path = path  # dict-valued prompt_scale may be keyed by module path
        return router

    def forward(self, x: torch.Tensor, base: nn.Module) -> torch.Tensor:
        value = context_value("prompt_scale", needed_by="prompt-scaled LoRA (WavLLM)")
        sigma = lookup_scale(value, self.path, self.B.shape[0], x.shape[0]).to(x.dtype)  # (B|1, out)
        z = F.dropout(x, self.dropout, self.training) if self.dropout else x
        delta = F.linear(F.linear(z, self.A), self.B) * sigma[:, None, :]  # (B, T, out)
        shown = sigma[:, None, :].expand(x.shape[0], x.shape[1], -1)
        self.emit(shown, shown)
        return delta


def constant_scale(routed: Routed, value: float | None = None) -> dict:
    """The routing context with σ ≡ ``value`` (default α/r) for every width: the plain LoRA (stage 1)."""
    routers = list(routed.modules.values())
    if not routers or not all(isinstance(r, PromptScaledLoRA) for r in routers):
        raise WorkbenchError(f"{routed.name!r} is a {routed.mechanism!r} router, not 'prompt-scale'")
    scale = {r.B.shape[0]: (r.alpha / r.r if value is None else value) for r in routers}
    return {"prompt_scale": {w: torch.full((1, w), s, device=routers[0].B.device) for w, s in scale.items()}}
