"""LoRA-Composer: concept LoRAs injected inside their boxes, kept apart, latents re-initialised.

Three parts, each switchable for ablation:

* **concept injection** (``injection``): in every attention layer, concept i's output is computed with
  LoRA_i's projections (q, k, v, out) and used only inside box_i (the base model's output outside every
  box), and cross-attention is region-restricted: concept i's caption tokens are attended only by the
  queries inside box_i (a −inf logit bias before the softmax, ``regions.region_bias``). Off: the LoRAs
  summed everywhere (naive), no restriction.
* **concept isolation** (``isolation``): region-masked self-attention (a query in box_i sees only keys in
  box_i, ``regions.isolation_bias``) and a latent-guidance loss: ``guidance_steps`` gradient steps per
  denoising step (in the first ``guidance_until`` of them) on the latent, lowering
  ``box_attention_loss`` of the base model's cross-attention maps (each concept's attention inside its box).
* **latent re-initialisation** (``reinit``): the first ``reinit_steps`` steps run each concept's own
  trajectory (LoRA_i alone, the whole caption) and the background's (the base model) from the same
  noise; the latent is then put together box by box and the composed sampling continues from it.

With one concept whose box is the whole canvas every part reduces to plain sampling with that LoRA
(tested to match ``ddim_sample`` under ``lab.use(name)``).

Reference: Yang et al., "LoRA-Composer: Leveraging Low-Rank Adaptation for Multi-Concept Customization
in Training-Free Diffusion Models", arXiv 2403.11627 [R: recalled from the paper; the authors' code
(github Young98CN/LoRA_Composer) was not read]. Deviations (our reconstruction): the guidance loss is the
layout-guidance box energy (Chen et al., WACV 2024) on the base model's maps, not the paper's exact
concept-enhancement / isolation constraints; re-initialisation pastes each concept's own early
trajectory into its box (the paper derives the initial latent from a layout prior); pixel space on a
28×56 canvas instead of SD's latent; no text-encoder LoRAs (the captions' MiniLM states are fixed).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from workbench.composition.attention import AttentionPlan, Term, planned
from workbench.composition.base import COMPOSERS, Composer, CompositionRequest, CompositionResult
from workbench.composition.losses import box_attention_loss
from workbench.composition.regions import pixel_weights
from workbench.composition.sampling import Sampler, applying, check_adapters, check_attention_only, layer_mean


@COMPOSERS.register("composer", flags=("uses_boxes", "uses_tokens", "latent_update"),
                    bounds={"reinit_steps": (0, None), "guidance_steps": (0, None),
                            "guidance_lr": (0.0, None), "guidance_until": (0.0, 1.0)})
class LoRAComposer(Composer):
    """LoRA-Composer: region-restricted concept injection, concept isolation, latent re-initialisation.

    Args:
        injection: concept injection: LoRA_i acts, and concept i's tokens are attended, only inside box_i.
        isolation: concept isolation: region-masked self-attention and the box guidance of the latent.
        reinit: latent re-initialisation from each concept's own early trajectory, pasted into its box.
        reinit_steps: denoising steps of those own trajectories.
        guidance_steps: gradient steps on the latent per denoising step (with isolation; 0: none).
        guidance_lr: step size of each latent update.
        guidance_until: share of the denoising steps (from the first) that get guidance.
    """

    def __init__(self, injection: bool = True, isolation: bool = True, reinit: bool = True,
                 reinit_steps: int = 2, guidance_steps: int = 1, guidance_lr: float = 1.0,
                 guidance_until: float = 0.5):
        self.injection, self.isolation, self.reinit = bool(injection), bool(isolation), bool(reinit)
        self.reinit_steps, self.guidance_steps = int(reinit_steps), int(guidance_steps)
        self.guidance_lr, self.guidance_until = float(guidance_lr), float(guidance_until)

    def plan(self, model, request: CompositionRequest) -> AttentionPlan:
        """The attention plan of the composed passes (injection and isolation as switched)."""
        boxes = request.boxes()  # (N, H, W)
        if self.injection:
            w, bg = pixel_weights(boxes)
            terms = [Term({}, bg)] + [Term({n: 1.0}, w[i]) for i, n in enumerate(request.names)]
            region = (boxes, request.groups)
        else:
            terms, region = [Term(dict.fromkeys(request.names, 1.0))], None
        return AttentionPlan(model.grid, terms=terms, region=region,
                             isolate=boxes if self.isolation else None)

    def sample(self, model, request: CompositionRequest, *, steps: int = 20,
               seed: int = 0) -> CompositionResult:
        check_adapters(model, request.names)
        check_attention_only(model, request.names)
        groups = request.groups if self.injection or self.isolation else None
        sampler = Sampler(steps)
        x = sampler.latent(request, seed)
        boxes = request.boxes()
        with applying(model, {}):  # the attention plans apply the concepts; every other layer is the base
            return self._sample(model, request, sampler, x, boxes, groups)

    def _sample(self, model, request, sampler: Sampler, x, boxes, groups) -> CompositionResult:
        B, states, mask, steps = x.shape[0], request.states, request.mask, len(sampler.timesteps)
        records: list[dict] = []
        start = 0
        if self.reinit and self.reinit_steps > 0:
            start = min(self.reinit_steps, steps)
            x = self._reinit(model, request, sampler, x, start)
        plan = self.plan(model, request)
        guided = int(round(self.guidance_until * steps)) if self.isolation and self.guidance_steps else 0
        for i, t in enumerate(sampler.timesteps):
            if i < start:
                continue
            tt = t.expand(B)
            rec: dict = {"step": i}
            if i < guided:
                for _ in range(self.guidance_steps):
                    x, rec["guidance_loss"] = self._guide(model, x, tt, states, mask, groups, boxes)
            with torch.no_grad(), planned(model, plan):
                eps = model(x, tt, states, mask)
            x = sampler.step(eps, t, x)
            records.append(rec)
        return CompositionResult(x.clamp(-1, 1), masks=boxes.float(), steps=records)

    @torch.no_grad()
    def _reinit(self, model, request, sampler: Sampler, x: torch.Tensor, k: int) -> torch.Tensor:
        w, bg = pixel_weights(request.boxes())  # (N, H, W), (H, W)
        runs = [({n: 1.0}, w[i]) for i, n in enumerate(request.names)] + [({}, bg)]
        out = torch.zeros_like(x)
        for adapters, where in runs:
            if not bool(where.any()):
                continue
            z = x
            with planned(model, AttentionPlan(model.grid, terms=[Term(adapters)])):
                for t in sampler.timesteps[:k]:
                    z = sampler.step(model(z, t.expand(z.shape[0]), request.states, request.mask), t, z)
            out = out + where * z
        return out

    def _guide(self, model, x, tt, states, mask, groups, boxes):
        """One gradient step on the latent lowering the box loss of the base model's attention maps."""
        with torch.enable_grad():
            z = x.detach().requires_grad_(True)
            calls: list = []
            with planned(model, AttentionPlan(model.grid, terms=[Term({})], record=calls)):
                model(z, tt, states, mask)
            maps = layer_mean(calls, model.grid)  # (B, T, h, w)
            cells = F.adaptive_avg_pool2d(boxes.float()[None], maps.shape[-2:])[0]  # (N, h, w)
            loss = box_attention_loss(maps, groups, cells)
            (grad,) = torch.autograd.grad(loss, z)
        return (x - self.guidance_lr * grad).detach(), float(loss.detach())
