"""The noise schedule, the denoising loss and a DDIM sampler for SceneUNet.

    loss = denoising_loss(model, images, states, mask)        # one training batch
    images = ddim_sample(model, states, mask, steps=20, seed=0)   # (B, 1, 28, 56) in [-1, 1]
    images, maps = sample_with_attention(model, states, mask, steps=20, seed=0)  # + (B, steps, T, h, w)

Epsilon prediction with the cosine schedule over 1000 training timesteps; DDIM with ``eta=0`` is
deterministic for a seed (the seed draws only the initial noise). Classifier-free guidance: with
``guidance > 1`` and ``uncond`` states, eps = eps_u + g (eps_c − eps_u).

Reference: Ho et al., "Denoising Diffusion Probabilistic Models", NeurIPS 2020 (the loss); Song et
al., "Denoising Diffusion Implicit Models", ICLR 2021 (the sampler, diffusers' DDIMScheduler);
Nichol & Dhariwal, ICML 2021 (the cosine schedule); Ho & Salimans, 2022 (classifier-free guidance).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from workbench.errors import WorkbenchError

TRAIN_STEPS = 1000


def noise_schedule():
    """A fresh ``DDIMScheduler`` (cosine betas, 1000 steps, clipped x0): used to train and to sample."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=TRAIN_STEPS, beta_schedule="squaredcos_cap_v2", clip_sample=True,
                         set_alpha_to_one=True, prediction_type="epsilon")


def denoising_loss(model, images: torch.Tensor, states: torch.Tensor, mask: torch.Tensor,
                   scheduler=None) -> torch.Tensor:
    """MSE between the true and the predicted noise at uniform random timesteps (torch's global RNG).

    Args:
        model: ``model(x_t, t, states, mask) -> eps``; images: (B, 1, H, W) in [-1, 1];
        states: (B, T, D) caption token states; mask: (B, T) bool.
    """
    scheduler = scheduler or noise_schedule()
    noise = torch.randn_like(images)
    t = torch.randint(0, TRAIN_STEPS, (images.shape[0],))
    noisy = scheduler.add_noise(images, noise, t)
    return F.mse_loss(model(noisy, t, states, mask), noise)


@torch.no_grad()
def ddim_sample(model, states: torch.Tensor, mask: torch.Tensor, *, steps: int = 20, seed: int = 0,
                guidance: float = 1.0, uncond: tuple[torch.Tensor, torch.Tensor] | None = None,
                shape: tuple[int, int, int] = (1, 28, 56)) -> torch.Tensor:
    """Sample images for a batch of captions with DDIM (eta = 0).

    Args:
        model: the denoiser; states: (B, T, D), mask: (B, T) caption token states.
        steps: denoising steps; seed: draws the initial noise (same seed, same images).
        guidance: classifier-free guidance scale (1: none); uncond: (states (1, T, D), mask (1, T))
            of the empty caption, needed when guidance != 1.
        shape: (C, H, W) of one image.

    Returns:
        (B, C, H, W) images in [-1, 1].
    """
    scheduler = noise_schedule()
    scheduler.set_timesteps(steps)
    B = states.shape[0]
    x = torch.randn((B, *shape), generator=torch.Generator().manual_seed(seed))
    cfg = guidance != 1.0
    if cfg:
        if uncond is None:
            raise WorkbenchError("ddim_sample: guidance != 1 needs the empty caption's states: "
                                 "pass uncond=(states, mask)")
        states = torch.cat([uncond[0].expand(B, -1, -1), states])
        mask = torch.cat([uncond[1].expand(B, -1), mask])
    for t in scheduler.timesteps:
        inp = torch.cat([x, x]) if cfg else x
        eps = model(inp, t.expand(inp.shape[0]), states, mask)
        if cfg:
            eps_u, eps_c = eps.chunk(2)
            eps = eps_u + guidance * (eps_c - eps_u)
        x = scheduler.step(eps, t, x).prev_sample
    return x.clamp(-1, 1)


def sample_with_attention(model, states: torch.Tensor, mask: torch.Tensor, *, steps: int = 20, seed: int = 0,
                          guidance: float = 1.0, uncond: tuple[torch.Tensor, torch.Tensor] | None = None):
    """``ddim_sample`` that also returns every caption token's cross-attention map at every step.

    Returns:
        images (B, 1, 28, 56) in [-1, 1]; maps (B, steps, T, h, w): for scene i, ``maps[i]`` is its
        [steps, tokens, h, w] tensor, averaged over heads and layers, at the finest cross-attention grid
        (7×14 for SceneUNet), the conditional pass only under guidance.
    """
    from workbench.zoo.diffusion.attention import capture_cross_attention

    with capture_cross_attention(model) as rec:
        images = ddim_sample(model, states, mask, steps=steps, seed=seed, guidance=guidance, uncond=uncond)
    grid = getattr(model, "grid", None)
    if grid is None:
        raise WorkbenchError(f"{type(model).__name__} has no .grid (the UNet's input H, W); use a SceneUNet")
    return images, rec.maps(steps, grid=grid, keep="last" if guidance != 1.0 else "all")
