"""CLoRA: a contrastive attention update of the latent, attention-derived masks, masked fusion.

At each denoising step the UNet runs once per pass: the base model (no LoRA) and base + LoRA_i for each
concept i, all on the same caption. In the first ``update_until`` of the steps the latent first takes
``update_steps`` gradient steps lowering ``contrastive_attention_loss``: concept i's group holds its
tokens' cross-attention maps from the base pass and from LoRA_i's pass; the other concepts' maps are its
negatives, so each concept's attention is pulled together and pushed off the others'. Then each
concept's map in its own pass (its tokens summed, min-max normalised) is kept above ``threshold`` and
every cell goes to the concept with the highest map (``losses.attention_masks``); the noise prediction
is ε = Σ_i M_i ε_i + (1 − Σ_i M_i) ε_base, masks upsampled to the canvas.

Reference: Meral et al., "CLoRA: A Contrastive Approach to Compose Multiple LoRA Models", arXiv
2403.19776 [R: recalled from the paper; the authors' code was not read]. Deviations (our reconstruction):
one caption for every pass (the paper gives each LoRA its own prompt with its trigger tokens, so its
positive pairs are a concept's word in the base prompt and in the LoRA prompt: here the same tokens
in the base pass and the LoRA pass); the InfoNCE form with cosine similarity and τ = 0.5; a plain
gradient step of size ``update_lr`` (no step-size schedule); masks from the current step's maps only.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from workbench.composition.attention import AttentionPlan, planned
from workbench.composition.base import COMPOSERS, Composer, CompositionRequest, CompositionResult
from workbench.composition.losses import attention_masks, contrastive_attention_loss
from workbench.composition.sampling import Sampler, applying, check_adapters, layer_mean


def masked_fusion(base: torch.Tensor, concepts: list[torch.Tensor], masks: torch.Tensor) -> torch.Tensor:
    """ε = Σ_i M_i ε_i + (1 − Σ_i M_i) ε_base.

    Args:
        base: (B, C, H, W) the base pass's noise; concepts: N such tensors (base + LoRA_i);
        masks: (B, N, H, W) in [0, 1], at most 1 summed over N.
    """
    eps = base * (1 - masks.sum(1, keepdim=True))
    for k, e in enumerate(concepts):
        eps = eps + masks[:, k:k + 1] * e
    return eps


@COMPOSERS.register("clora", flags=("uses_tokens", "latent_update", "fuses_predictions"),
                    bounds={"update_steps": (0, None), "update_lr": (0.0, None), "update_until": (0.0, 1.0),
                            "temperature": (1e-6, None), "threshold": (0.0, 1.0)})
class CLoRA(Composer):
    """CLoRA: contrastive cross-attention update of the latent, then attention masks fuse the LoRA passes.

    Args:
        update_steps: gradient steps on the latent per denoising step (0: no update).
        update_lr: step size of each latent update.
        update_until: share of the denoising steps (from the first) that get the update.
        temperature: τ of the contrastive loss.
        threshold: a concept's normalised attention above this joins its mask.
    """

    def __init__(self, update_steps: int = 1, update_lr: float = 1.0, update_until: float = 0.5,
                 temperature: float = 0.5, threshold: float = 0.5):
        self.update_steps, self.update_lr = int(update_steps), float(update_lr)
        self.update_until, self.temperature, self.threshold = float(update_until), float(temperature), \
            float(threshold)

    def _passes(self, model, request, x, tt):
        """(eps, maps (B, T, h, w)) of the base pass and each concept's pass, in that order."""
        out = []
        for adapters in [{}] + [{n: 1.0} for n in request.names]:
            calls: list = []
            with applying(model, adapters), planned(model, AttentionPlan(model.grid, record=calls)):
                eps = model(x, tt, request.states, request.mask)
            out.append((eps, layer_mean(calls, model.grid)))
        return out

    def loss(self, passes, groups) -> torch.Tensor:
        """The contrastive loss of one step's passes (base first, then one per concept)."""
        base_maps = passes[0][1]
        sets = [torch.cat([base_maps[:, g], passes[1 + i][1][:, g]], dim=1) for i, g in enumerate(groups)]
        return contrastive_attention_loss(sets, self.temperature)  # each set (B, 2·|g|, h, w)

    def sample(self, model, request: CompositionRequest, *, steps: int = 20,
               seed: int = 0) -> CompositionResult:
        check_adapters(model, request.names)
        groups = request.groups
        sampler = Sampler(steps)
        B = request.states.shape[0]
        x = sampler.latent(request, seed)
        updated = int(round(self.update_until * steps)) if self.update_steps else 0
        records, masks = [], None
        for i, t in enumerate(sampler.timesteps):
            tt = t.expand(B)
            rec: dict = {"step": i}
            for _ in range(self.update_steps if i < updated else 0):
                with torch.enable_grad():
                    z = x.detach().requires_grad_(True)
                    loss = self.loss(self._passes(model, request, z, tt), groups)
                    (grad,) = torch.autograd.grad(loss, z)
                x, rec["contrastive_loss"] = (x - self.update_lr * grad).detach(), float(loss.detach())
            with torch.no_grad():
                passes = self._passes(model, request, x, tt)
                cells = attention_masks([passes[1 + k][1][:, g].sum(1) for k, g in enumerate(groups)],
                                        self.threshold)  # (B, N, h, w)
                masks = F.interpolate(cells, size=request.canvas, mode="nearest")  # (B, N, H, W)
                eps = masked_fusion(passes[0][0], [p[0] for p in passes[1:]], masks)
            rec["masks"] = masks.mean(0)  # (N, H, W)
            x = sampler.step(eps, t, x)
            records.append(rec)
        return CompositionResult(x.clamp(-1, 1), masks=masks.mean(0), steps=records)
