"""LoRA Switch: one concept LoRA at a time, switching to the next every ``every`` denoising steps.

Reference: Zhong et al., "Multi-LoRA Composition for Image Generation", TMLR 2024 (arXiv 2402.16843),
LoRA Switch: at step k the active LoRA is i = ⌊k / τ⌋ mod N [R: recalled from the paper; code
github maszhongming/Multi-LoRA-Composition not read]. Deviation: the paper's τ default (5, over 50
steps) is scaled to our short schedules: ``every`` defaults to 1.
"""

from __future__ import annotations

import torch

from workbench.composition.base import COMPOSERS, Composer, CompositionRequest, CompositionResult
from workbench.composition.sampling import Sampler, check_adapters, denoise


@COMPOSERS.register("switching", bounds={"every": (1, None), "weight": (0.0, None)})
class Switching(Composer):
    """Alternate the concept LoRAs across denoising steps (LoRA Switch).

    Args:
        every: denoising steps each LoRA stays active before the next takes over.
        weight: the weight of the active LoRA.
    """

    def __init__(self, every: int = 1, weight: float = 1.0):
        self.every, self.weight = int(every), float(weight)

    def active(self, step: int, names: list[str]) -> str:
        """The LoRA active at denoising step ``step`` (0-based)."""
        return names[(step // self.every) % len(names)]

    @torch.no_grad()
    def sample(self, model, request: CompositionRequest, *, steps: int = 20,
               seed: int = 0) -> CompositionResult:
        check_adapters(model, request.names)
        sampler = Sampler(steps)
        active = [self.active(i, request.names) for i in range(len(sampler.timesteps))]
        x = sampler.latent(request, seed)
        images = denoise(model, request, sampler, x, lambda i: {active[i]: self.weight})
        return CompositionResult(images, steps=[{"step": i, "active": n} for i, n in enumerate(active)])
