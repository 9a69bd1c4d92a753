"""TARA in its native cross-attention form: each concept LoRA's key/value update only at its own tokens.

All concept LoRAs are summed (as ``naive``), except in the cross-attention key and value projections,
which read the caption's token states e: there concept c's update is masked per text position,
Δ_c(e) ⊙ m_c, with m_c = 1 at c's caption tokens and 0 elsewhere, so a LoRA cannot change how the other
concepts' words (or the shared words) are read. Queries, outputs and every self-attention projection
apply the plain sum, as in the reference.

Reference: Peng et al., "TARA: Token-Aware LoRA for Composable Personalization in Diffusion Models",
arXiv 2508.08812; code github YuqiPeng77/TARA @cbd5dd5, tara.py (TARALinearLayer: the mask on attn2
to_k/to_v) and utils.py (build_token_masks) [C, per the project's spec routing.md §10]. Deviations: the
masks come from the request's concept tokens (the reference finds each rare word's sub-tokens in
input_ids); training with masks and the token alignment loss are the training lab's (the LM router
``tara`` in workbench.routing); concept LoRAs trained without masks are composed all the same.
"""

from __future__ import annotations

import torch

from workbench.composition.attention import AttentionPlan, planned
from workbench.composition.base import COMPOSERS, Composer, CompositionRequest, CompositionResult
from workbench.composition.sampling import Sampler, check_adapters, denoise


@COMPOSERS.register("tara", flags=("uses_tokens",), bounds={"weight": (0.0, None)})
class TokenAware(Composer):
    """TARA: concept LoRAs summed, each masked to its own caption tokens in cross-attention keys and values.

    Args:
        weight: the weight of each concept LoRA in the sum.
    """

    def __init__(self, weight: float = 1.0):
        self.weight = float(weight)

    def plan(self, model, request: CompositionRequest) -> AttentionPlan:
        """The attention plan: the layers' own sum, token masks on cross-attention keys and values."""
        request.groups  # noqa: B018  (a clear error when a concept names no tokens)
        masks = {n: request.token_mask(i) for i, n in enumerate(request.names)}
        return AttentionPlan(model.grid, token_masks=masks)

    @torch.no_grad()
    def sample(self, model, request: CompositionRequest, *, steps: int = 20,
               seed: int = 0) -> CompositionResult:
        check_adapters(model, request.names)
        sampler = Sampler(steps)
        weights = dict.fromkeys(request.names, self.weight)
        with planned(model, self.plan(model, request)):
            return CompositionResult(denoise(model, request, sampler, sampler.latent(request, seed),
                                             lambda i: weights))
