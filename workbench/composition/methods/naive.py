"""Naive composition: every concept LoRA summed into the model, one pass per step.

Reference: the "merge" baseline of Zhong et al., "Multi-LoRA Composition for Image Generation", TMLR
2024 (arXiv 2402.16843), and of LoRA-Composer and CLoRA: W = W0 + Σ_i w ΔW_i (peft's multi-adapter
sum, ``lab.use({...})``). Deviation: none (the weights are one shared ``weight``).
"""

from __future__ import annotations

import torch

from workbench.composition.base import COMPOSERS, Composer, CompositionRequest, CompositionResult
from workbench.composition.sampling import Sampler, check_adapters, denoise


@COMPOSERS.register("naive", bounds={"weight": (0.0, None)})
class Naive(Composer):
    """Sum of the concept LoRAs, each at ``weight``, applied everywhere at every step.

    Args:
        weight: the weight of each concept LoRA in the sum.
    """

    def __init__(self, weight: float = 1.0):
        self.weight = float(weight)

    @torch.no_grad()
    def sample(self, model, request: CompositionRequest, *, steps: int = 20,
               seed: int = 0) -> CompositionResult:
        check_adapters(model, request.names)
        sampler = Sampler(steps)
        weights = dict.fromkeys(request.names, self.weight)
        x = sampler.latent(request, seed)
        return CompositionResult(denoise(model, request, sampler, x, lambda i: weights))
