"""The denoising loop the composition methods share, and the adapter switches they use.

    sampler = Sampler(steps=20)
    x = sampler.noise((1, 1, 28, 56), seed=0)        # the same initial noise as ``ddim_sample``
    for i, t in enumerate(sampler.timesteps):
        x = sampler.step(eps_fn(x, t), t, x)
    with applying(model, {"cat": 1.0}):              # every LoraLayer of the model applies cat
        eps = model(x, t, states, mask)

``Sampler`` is ``workbench.zoo.diffusion.ddim_sample`` taken apart (the same scheduler, noise and
steps), so a method that predicts the same noise gives bit-identical images. DDIM's step reads only
the scheduler's fixed tables, so a trajectory can stop and another continue from its latent (LoRA-
Composer's latent re-initialization does).

Reference: Song et al., "Denoising Diffusion Implicit Models", ICLR 2021 (diffusers' DDIMScheduler, eta=0).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager

import torch

from workbench.adapters import Composition, LoraLayer
from workbench.composition.attention import projection_modules
from workbench.errors import WorkbenchError
from workbench.zoo.diffusion import AttentionRecord, noise_schedule


class Sampler:
    """DDIM (eta = 0) over ``steps`` of the 1000 training timesteps, as ``ddim_sample`` runs it."""

    def __init__(self, steps: int):
        if steps < 1:
            raise WorkbenchError(f"steps={steps}: sample with at least one denoising step")
        self.scheduler = noise_schedule()
        self.scheduler.set_timesteps(steps)
        self.timesteps = list(self.scheduler.timesteps)

    @staticmethod
    def noise(shape: tuple[int, ...], seed: int) -> torch.Tensor:
        """The initial latent for ``seed`` (``ddim_sample``'s draw)."""
        return torch.randn(shape, generator=torch.Generator().manual_seed(seed))

    def latent(self, request, seed: int) -> torch.Tensor:
        """(B, 1, H, W) initial latent of ``request`` (a ``CompositionRequest``) for ``seed``."""
        return self.noise((request.states.shape[0], 1, *request.canvas), seed)

    def step(self, eps: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """x_t -> x_{t-1} given the predicted noise."""
        return self.scheduler.step(eps, t, x).prev_sample


def denoise(model: torch.nn.Module, request, sampler: Sampler, x: torch.Tensor,
            weights_at: Callable[[int], Mapping[str, float]]) -> torch.Tensor:
    """The plain loop from latent ``x``: at step i every LoraLayer applies ``weights_at(i)``, the model
    predicts the noise of the request's captions, DDIM steps; returns the images clamped to [-1, 1]."""
    for i, t in enumerate(sampler.timesteps):
        with applying(model, weights_at(i)):
            x = sampler.step(model(x, t.expand(x.shape[0]), request.states, request.mask), t, x)
    return x.clamp(-1, 1)


def lora_layers(model: torch.nn.Module) -> list[LoraLayer]:
    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def check_adapters(model: torch.nn.Module, names: Iterable[str]) -> None:
    """Every name is an adapter held by some ``LoraLayer`` of ``model``.

    Raises:
        WorkbenchError: naming the missing adapters and the ones the model holds.
    """
    held = {n for layer in lora_layers(model) for n in layer.held}
    missing = sorted(set(names) - held)
    if missing:
        raise WorkbenchError(f"adapters {missing} are not on this model; add them to the lab first "
                             f"(lab.load_adapter / lab.train_lora); it holds {sorted(held) or '(none)'}")


@contextmanager
def applying(model: torch.nn.Module, weights: Mapping[str, float]):
    """Inside the block every ``LoraLayer`` of ``model`` applies Σ w_c ΔW_c (``lab.use(weights)``); each
    layer's previous composition comes back after it."""
    layers = lora_layers(model)
    old = [layer.composition for layer in layers]
    comp = Composition(dict(weights))
    try:
        for layer in layers:
            layer.composition = comp
        yield
    finally:
        for layer, c in zip(layers, old, strict=True):
            layer.composition = c


def layer_mean(calls: list[torch.Tensor], grid: tuple[int, int]) -> torch.Tensor:
    """(B, T, h, w) mean over layers of one forward's recorded cross-attention calls (B, Q, T)."""
    rec = AttentionRecord(len(calls))
    rec.calls = list(calls)
    return rec.maps(steps=1, grid=grid)[:, 0]


def check_attention_only(model: torch.nn.Module, names: Iterable[str]) -> None:
    """The adapters ``names`` sit only on attention projections (what a per-region method can steer).

    Raises:
        WorkbenchError: naming the other modules an adapter sits on and the targets to use.
    """
    steerable = projection_modules(model)
    names = set(names)
    outside = sorted({f"{n} @ {layer.path}" for layer in lora_layers(model) if id(layer) not in steerable
                      for n in names & set(layer.held)})
    if outside:
        raise WorkbenchError(f"this method applies concept LoRAs inside attention only; {outside[:3]} "
                             f"({len(outside)} in all) sit elsewhere: train concept LoRAs with "
                             "targets=['to_q', 'to_k', 'to_v', 'to_out.0'] or use naive/switching/clora")
