"""PromptScaler: WavLLM's prompt-aware weight adapter, the network that turns a prompt into σ.

    H = base model on the prompt ALONE, adapters off, last layer before the final norm   (B, Lp, d)
    U_w = W2_w · GELU(W1 · H)                       W1: d→inner, W2_w: inner→w (with bias)  (B, Lp, w)
    a_w = softmax over real prompt tokens of (w_a,w · U_w)                                 (B, Lp)
    σ_w = clamp(ReLU(Σ_t a_t U_t), max=3)                                                   (B, w)

One head (W2_w, w_a,w) per distinct output width w of the prompt-scaled modules, sharing W1: with a
multi-head-attention base (WavLLM's LLaMA-7B, every width 4096) there is one head and this is the
authors' network; grouped-query bases (SmolLM2: q/o 576, k/v 192) get a second head for k/v.

Deviations: the pooling softmax is masked to the real prompt tokens (the code has none: batch-1
inference); ``inner`` is configurable (the code's 1024 for a 4096 base; SmolLM2's hidden is 576).
H is read at the input of the final norm through a forward pre-hook: transformers' ``hidden_states[-1]``
is taken AFTER the final norm, so it is only the fallback for models without a recognisable final norm.

Reference: WavLLM (arXiv 2404.00656); code github microsoft/SpeechT5 @5d66cf5, WavLLM/wavllm/models/
llama.py (Transformer.__init__ scale_fc_1/2, scale_weight_attention, forward_generate).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from workbench.errors import WorkbenchError
from workbench.hooks import hooks, module_paths
from workbench.routing.base import ROUTERS

FINAL_NORMS = ("norm", "ln_f", "final_layernorm", "final_layer_norm")


class PromptScaler(nn.Module):
    """σ per output width from prompt states.

    Args:
        hidden: the base model's hidden width d.
        widths: the output widths of the prompt-scaled modules (one head each).
        inner: W1's output width (1024 in WavLLM).
        max_scale: the clamp's upper bound (3 in WavLLM).
        seed: seeds the (nn.Linear default) initialisation without touching the global RNG.
    """

    def __init__(self, hidden: int, widths: Iterable[int], *, inner: int = 1024, max_scale: float = 3.0,
                 seed: int = 0):
        super().__init__()
        self.widths = sorted({int(w) for w in widths})
        if not self.widths:
            raise WorkbenchError("PromptScaler needs at least one output width")
        self.max_scale = max_scale
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.W1 = nn.Linear(hidden, inner)
            self.W2 = nn.ModuleDict({str(w): nn.Linear(inner, w) for w in self.widths})
            self.w_a = nn.ModuleDict({str(w): nn.Linear(w, 1) for w in self.widths})

    @classmethod
    def for_routed(cls, lab, name: str, **kwargs) -> PromptScaler:
        """A scaler for the prompt-scaled router ``name`` of ``lab`` (its hidden width and output widths)."""
        if name not in lab.routers:
            raise WorkbenchError(f"no router {name!r} in this lab; add one with "
                                 f"lab.add_router({name!r}, 'prompt-scale')")
        if not lab.routers[name].has("needs_prompt_scale"):
            raise WorkbenchError(f"router {name!r} is {lab.routers[name].mechanism!r}; PromptScaler serves "
                                 "routers that read a prompt scale: "
                                 f"{', '.join(ROUTERS.names(flag='needs_prompt_scale'))}")
        widths = {r.B.shape[0] for r in lab.routers[name].modules.values()}
        return cls(lab.model.config.hidden_size, widths, **kwargs).to(lab.device)

    def forward(self, H: torch.Tensor, mask: torch.Tensor | None = None, *,
                with_pooling: bool = False):
        """σ {width: (B, w)} from prompt states H (B, Lp, d); ``mask`` (B, Lp) marks real prompt tokens.

        With ``with_pooling``, also the pooling weights {width: (B, Lp)}.
        """
        mask = torch.ones(H.shape[:2], dtype=torch.bool, device=H.device) if mask is None else mask.bool()
        hidden = F.gelu(self.W1(H))  # (B, Lp, inner)
        sigma, pooling = {}, {}
        for w in self.widths:
            U = self.W2[str(w)](hidden)  # (B, Lp, w)
            logits = self.w_a[str(w)](U).squeeze(-1).masked_fill(~mask, float("-inf"))  # (B, Lp)
            a = logits.softmax(-1)
            sigma[w] = torch.einsum("bt,btw->bw", a, U).relu().clamp(max=self.max_scale)
            pooling[w] = a
        return (sigma, pooling) if with_pooling else sigma

    def context(self, lab, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                prompt_lengths=None) -> dict:
        """``{"prompt_scale": {width: σ}}`` for ``routing_context``, computed from the prompts alone.

        The prompt of row i is its first ``prompt_lengths[i]`` real tokens (all of them by default):
        whatever follows (the answer) never reaches σ. Gradients flow into the scaler, not the base.
        """
        ids, mask = prompt_batch(input_ids.to(lab.device), attention_mask, prompt_lengths)
        return {"prompt_scale": self(prompt_states(lab, ids, mask), mask)}


def prompt_batch(input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 prompt_lengths=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The prompts alone, right-padded: (ids (B, Lp), mask (B, Lp)), Lp the longest prompt."""
    real = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    real = real.to(input_ids.device)
    n_real = real.sum(1)
    lengths = n_real if prompt_lengths is None else torch.as_tensor(prompt_lengths, device=input_ids.device)
    if lengths.shape != n_real.shape or (lengths < 1).any() or (lengths > n_real).any():
        raise WorkbenchError(
            f"prompt_lengths {lengths.tolist()} must give one length per row, each in 1..the row's real "
            f"tokens {n_real.tolist()}"
        )
    rows = [ids[keep][: int(n)] for ids, keep, n in zip(input_ids, real, lengths, strict=True)]
    longest = max(len(r) for r in rows)
    ids = input_ids.new_zeros(len(rows), longest)
    mask = torch.zeros(len(rows), longest, dtype=torch.long, device=input_ids.device)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = r, 1
    return ids, mask


@torch.no_grad()
def prompt_states(lab, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Last-layer states (B, Lp, d) of the base model alone (nothing the lab uses applied), before
    the final norm when the model has one we recognise (else transformers' post-norm last state).

    Runs the backbone (``base_model``: no LM head) inside ``lab.using(None)``, without gradients.
    """
    inner = getattr(lab.model, "base_model", lab.model)
    norm = next((m for n in FINAL_NORMS if isinstance(m := getattr(inner, n, None), nn.Module)), None)
    seen = []
    take = {} if norm is None else dict.fromkeys(module_paths(lab.model, [norm]),
                                                  lambda _path, _m, args: seen.append(args[0]))
    with lab.using(None), hooks(lab.model, take, pre=True):
        out = inner(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=norm is None)
    return seen[-1] if norm is not None else out.hidden_states[-1]
