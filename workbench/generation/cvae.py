"""CVAE1D: the 1-D convolutional conditional VAE of ICM-LoRA, with channels and latent size as parameters.

    vae = CVAE1D(length=L, cond_dim=H, channels=(8, 16, 32, 16, 8), latent=64)
    out = vae.loss(x, c)              # x (B, L) normalized weights, c (B, H) -> total, recon, kl
    x_hat = vae.sample(c, n=3, generator=g)   # z ~ N(0, I) -> (n, L)

Encoder: ``len(channels)`` × [Conv1d(k, stride 2, pad k//2) + BatchNorm + LeakyReLU], flatten,
``Linear(channels[-1]·last → latent)``, concatenate c, then ``μ, log σ² = Linear(latent + H → latent)``
each. Decoder: concatenate z and c, ``Linear(latent + H → channels[-1]·last)``, ``len(channels) - 1`` ×
[ConvTranspose1d(k, stride 2, pad k//2, output pad 1) + BatchNorm + ELU] over the channels reversed,
then ConvTranspose1d + BatchNorm + ELU and a Conv1d to one channel. The input is zero-padded at the end
to a multiple of ``slice_length`` (a multiple of 2^len(channels), so the strides divide it); ``last``
is the padded length over 2^len(channels). Loss: ``MSE(x̂, x_pad) + kl_weight · KL`` with the KL summed
over latent dimensions and averaged over the batch.

Reference: Shao et al., "In-Context Meta LoRA Generation" (ICM-LoRA), IJCAI 2025, arXiv 2501.17635;
authors' code ``model/CVAE_design.py`` (channels [8, 16, 32, 64, 128, 256, 256, 128, 64, 32, 16, 8],
latent 256, kernel 7, slice 4096, kld_weight 0.005; ``F.mse_loss(recons, padded_x)`` and
``mean(-0.5 · sum(1 + log σ² − μ² − σ², dim=1))``).
Deviations: channels, latent and slice length are parameters (the defaults are the authors'); the
decoder's first view uses ``channels[-1]`` channels (the authors reverse their list in place and view
with its new last entry, which is the same number only for their symmetric list).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from workbench.errors import WorkbenchError

AUTHORS_CHANNELS = (8, 16, 32, 64, 128, 256, 256, 128, 64, 32, 16, 8)


class VAELoss(NamedTuple):
    """The loss of one batch: ``total = recon + kl_weight · kl`` (tensors with grad)."""

    total: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor


def kl_standard_normal(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) summed over latent dimensions, averaged over the batch: a scalar.

    ``-0.5 · Σ_j (1 + log σ²_j − μ_j² − σ²_j)`` per row; mu, log_var (B, latent).
    """
    return torch.mean(-0.5 * torch.sum(1 + log_var - mu ** 2 - log_var.exp(), dim=1), dim=0)


class CVAE1D(nn.Module):
    """The ICM-LoRA conditional VAE over flat normalized LoRA weights.

    Args:
        length: L, the flat vector's length (before padding).
        cond_dim: H, the condition's size (the model's hidden size for task vectors).
        channels: the encoder's channels, one stride-2 block each (the decoder mirrors them).
        latent: the latent size.
        kernel: the convolutions' kernel size (odd).
        slice_length: the padded length is a multiple of it (default 2^len(channels)).
        kl_weight: the KL term's weight.
    """

    def __init__(self, length: int, cond_dim: int, *, channels: Sequence[int] = AUTHORS_CHANNELS,
                 latent: int = 256, kernel: int = 7, slice_length: int | None = None,
                 kl_weight: float = 0.005):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if not channels or min(channels) < 1 or latent < 1 or length < 1 or cond_dim < 1:
            raise WorkbenchError(f"CVAE1D needs length, cond_dim, latent ≥ 1 and at least one channel "
                                 f"≥ 1; got length={length}, cond_dim={cond_dim}, latent={latent}, "
                                 f"channels={channels}")
        if kernel < 1 or kernel % 2 == 0:
            raise WorkbenchError(f"kernel must be odd (same-length convolutions); got {kernel}")
        unit = 2 ** len(channels)
        slice_length = unit if slice_length is None else int(slice_length)
        if slice_length % unit:
            raise WorkbenchError(f"slice_length={slice_length} must be a multiple of 2^len(channels)={unit}")
        self.length, self.cond_dim, self.latent = int(length), int(cond_dim), int(latent)
        self.channels, self.kernel, self.kl_weight = channels, kernel, float(kl_weight)
        self.slice_length = slice_length
        self.padded = math.ceil(self.length / slice_length) * slice_length
        self.last = self.padded // unit
        pad = kernel // 2
        blocks, c_in = [], 1
        for c in channels:
            blocks.append(nn.Sequential(nn.Conv1d(c_in, c, kernel, 2, pad), nn.BatchNorm1d(c),
                                        nn.LeakyReLU()))
            c_in = c
        self.encoder = nn.Sequential(*blocks)
        self.to_latent = nn.Linear(self.last * channels[-1], latent)
        self.fc_mu = nn.Linear(latent + cond_dim, latent)
        self.fc_var = nn.Linear(latent + cond_dim, latent)
        self.to_decode = nn.Linear(latent + cond_dim, self.last * channels[-1])
        back = channels[::-1]
        self.decoder = nn.Sequential(*[
            nn.Sequential(nn.ConvTranspose1d(back[i], back[i + 1], kernel, 2, pad, output_padding=1),
                          nn.BatchNorm1d(back[i + 1]), nn.ELU())
            for i in range(len(back) - 1)])
        self.final_layer = nn.Sequential(
            nn.ConvTranspose1d(back[-1], back[-1], kernel, 2, pad, output_padding=1),
            nn.BatchNorm1d(back[-1]), nn.ELU(), nn.Conv1d(back[-1], 1, kernel, 1, pad))

    def config(self) -> dict:
        """The constructor's arguments (JSON-serializable), to rebuild the same network."""
        return {"length": self.length, "cond_dim": self.cond_dim, "channels": list(self.channels),
                "latent": self.latent, "kernel": self.kernel, "slice_length": self.slice_length,
                "kl_weight": self.kl_weight}

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, L_pad): zeros appended."""
        if x.dim() != 2 or x.shape[1] != self.length:
            raise WorkbenchError(f"this CVAE takes (batch, {self.length}) flat vectors; got {tuple(x.shape)}")
        return F.pad(x, (0, self.padded - self.length))

    def _check_condition(self, c: torch.Tensor, batch: int) -> None:
        if c.dim() != 2 or c.shape != (batch, self.cond_dim):
            raise WorkbenchError(f"the condition must be ({batch}, {self.cond_dim}); got {tuple(c.shape)}")

    def encode(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, L), c (B, H) -> μ, log σ² (B, latent)."""
        self._check_condition(c, x.shape[0])
        h = self.encoder(self.pad(x)[:, None, :])  # (B, channels[-1], last)
        h = self.to_latent(h.flatten(1))  # (B, latent)
        h = torch.cat([h, c], dim=-1)  # (B, latent + H)
        return self.fc_mu(h), self.fc_var(h)

    def decode(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """z (B, latent), c (B, H) -> x̂ (B, L_pad)."""
        self._check_condition(c, z.shape[0])
        h = self.to_decode(torch.cat([z, c], dim=-1))  # (B, channels[-1]·last)
        h = h.view(-1, self.channels[-1], self.last)  # (B, channels[-1], last)
        return self.final_layer(self.decoder(h))[:, 0, :]  # (B, L_pad)

    def loss(self, x: torch.Tensor, c: torch.Tensor) -> VAELoss:
        """``MSE(x̂, x_pad) + kl_weight · KL`` with z = μ + σ·ε (ε from torch's global generator)."""
        mu, log_var = self.encode(x, c)
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)  # reparameterization
        recon = F.mse_loss(self.decode(z, c), self.pad(x))
        kl = kl_standard_normal(mu, log_var)
        return VAELoss(recon + self.kl_weight * kl, recon, kl)

    @torch.no_grad()
    def sample(self, c: torch.Tensor, n: int = 1, *,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws ``dec(z, c)`` with z ~ N(0, I) for one condition c (H,): (n, L), cropped to L."""
        z = torch.randn(n, self.latent, generator=generator).to(c.device)
        return self.decode(z, c.reshape(1, -1).expand(n, -1))[:, :self.length]

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """dec(μ(x, c), c): the posterior mean decoded, (B, L)."""
        mu, _ = self.encode(x, c)
        return self.decode(mu, c)[:, :self.length]
