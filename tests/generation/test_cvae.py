"""CVAE1D: the authors' architecture scaled by parameters, padding, and the loss MSE + 0.005·KL."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from workbench.errors import WorkbenchError
from workbench.generation import CVAE1D, kl_standard_normal
from workbench.generation.cvae import AUTHORS_CHANNELS


def test_kl_is_summed_over_latent_dims_and_averaged_over_the_batch():
    g = torch.Generator().manual_seed(0)
    mu, log_var = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    q = torch.distributions.Normal(mu, (0.5 * log_var).exp())
    p = torch.distributions.Normal(torch.zeros(3, 5), torch.ones(3, 5))
    expected = torch.distributions.kl_divergence(q, p).sum(1).mean()
    torch.testing.assert_close(kl_standard_normal(mu, log_var), expected)
    assert kl_standard_normal(torch.zeros(2, 4), torch.zeros(2, 4)) == 0


def test_the_loss_is_mse_on_the_padded_vector_plus_the_weighted_kl():
    torch.manual_seed(0)
    vae = CVAE1D(100, 6, channels=(3, 5, 3), latent=4, kl_weight=0.005).eval()
    assert vae.padded == 104 and vae.last == 13  # padded to a multiple of 2^3
    x, c = torch.randn(2, 100), torch.randn(2, 6)
    torch.manual_seed(1)
    out = vae.loss(x, c)
    torch.manual_seed(1)
    mu, log_var = vae.encode(x, c)
    z = mu + (0.5 * log_var).exp() * torch.randn_like(mu)
    recon = F.mse_loss(vae.decode(z, c), F.pad(x, (0, 4)))  # the zeros of the padding count
    torch.testing.assert_close(out.recon, recon)
    torch.testing.assert_close(out.kl, kl_standard_normal(mu, log_var))
    torch.testing.assert_close(out.total, recon + 0.005 * out.kl)


def test_the_default_is_the_authors_network():
    vae = CVAE1D(5000, 768)
    assert vae.channels == AUTHORS_CHANNELS and vae.latent == 256 and vae.kernel == 7
    assert vae.padded == 8192 and vae.last == 2  # 4096 = 2^12 divides the padded length
    assert len(vae.encoder) == 12 and len(vae.decoder) == 11
    assert vae.fc_mu.in_features == 256 + 768 and vae.to_decode.out_features == 8 * 2


def test_the_condition_enters_the_decoder():
    torch.manual_seed(0)
    vae = CVAE1D(64, 3, channels=(2, 4), latent=2).eval()
    z = torch.zeros(1, 2)
    assert (vae.decode(z, torch.ones(1, 3)) - vae.decode(z, -torch.ones(1, 3))).abs().max() > 1e-4
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    one = torch.ones(3)
    torch.testing.assert_close(vae.sample(one, 2, generator=g1), vae.sample(one, 2, generator=g2))
    assert vae.sample(torch.ones(3), 2).shape == (2, 64)


def test_bad_shapes_and_options_are_refused():
    vae = CVAE1D(64, 3, channels=(2, 4), latent=2)
    with pytest.raises(WorkbenchError, match="condition"):
        vae.encode(torch.zeros(2, 64), torch.zeros(2, 4))
    with pytest.raises(WorkbenchError, match="flat vectors"):
        vae.encode(torch.zeros(2, 63), torch.zeros(2, 3))
    with pytest.raises(WorkbenchError, match="multiple"):
        CVAE1D(64, 3, channels=(2, 4), slice_length=6)
    with pytest.raises(WorkbenchError, match="odd"):
        CVAE1D(64, 3, kernel=4)
