"""SGLoRA.generate by hand on a generator fitted for one step (seconds): proximity weights over the
top-k experts, the weighted semantic condition, the proximity-weighted de-normalization stats and the
seeded draws z ~ N(0, I), each written out.

The fitted state is overwritten with hand values: three experts with embeddings e_a = (1, 0, …),
e_b = (0, 1, 0, …), e_c = (0.6, 0.8, 0, …) in D = 8 (condition scale 1) and per-tensor stats (mean, std)
(k, 1), (2k, 2), (−k, 4). The query e* = (1, 0, …) has cosines (1, 0, 0.6).
"""

from __future__ import annotations

import math

import pytest
import torch

from tests.conftest import tiny_lab
from tests.generation.helpers import planted_family
from workbench.generation import HashingEncoder, SGLoRA

EXPERTS = torch.zeros(3, 8)  # D = 8, the hashing encoder's least
EXPERTS[0, 0], EXPERTS[1, 1], EXPERTS[2, :2] = 1.0, 1.0, torch.tensor([0.6, 0.8])
QUERY = torch.eye(8)[0]
COS = (1.0, 0.0, 0.6)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def small():
    torch.set_num_threads(1)
    lab = tiny_lab()
    texts = {"a": "quotes about sports", "b": "german sentences", "c": "quotes about food"}
    families = {t: planted_family(lab, t, seed=30 + i, n=2) for i, t in enumerate(texts)}
    gen = SGLoRA(lab, encoder=HashingEncoder(dim=8), k=1, tau=0.5, channels=(2,), latent=2, kernel=1)
    gen.fit(families, texts, late=1.0, steps=1, lr=1e-3, batch_size=2, seed=0, progress=False)
    gen.conditions, gen.scale = EXPERTS.clone(), 1.0
    k = torch.arange(gen.layout.n_tensors, dtype=torch.float64)
    gen.stats = {"a": torch.stack([k, torch.full_like(k, 1.0)], 1),
                 "b": torch.stack([2 * k, torch.full_like(k, 2.0)], 1),
                 "c": torch.stack([-k, torch.full_like(k, 4.0)], 1)}
    return lab, gen


def _by_hand(gen, w: list[float], n: int, seed: int) -> list[dict]:
    """module -> (A, B) of each sample: dec(z_i, c* − mean of the experts) de-normalized with Σ w_i stats_i,
    z = randn(n, latent) from a generator seeded with ``seed``."""
    w64 = torch.tensor(w, dtype=torch.float64)
    c = sum(wi * e for wi, e in zip(w, EXPERTS, strict=True))  # c* = Σ w_i e_i
    standardized = (c - EXPERTS.mean(0)).float()
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        xs = gen.vae.decode(z, standardized[None].expand(n, -1))[:, :gen.layout.length]
    K = gen.layout.n_tensors
    k = torch.arange(K, dtype=torch.float64)
    mean = w64[0] * k + w64[1] * 2 * k - w64[2] * k
    std = w64[0] * 1 + w64[1] * 2 + w64[2] * 4
    out = []
    for x in xs:
        pieces = torch.split(x.double(), list(gen.layout.lengths))
        modules = {}
        for i, (m, (sa, sb)) in enumerate(zip(gen.layout.modules, gen.layout.shapes, strict=True)):
            a, b = (pieces[j] * std + mean[j] for j in (2 * i, 2 * i + 1))
            modules[m] = (a.float().reshape(sa), b.float().reshape(sb))
        out.append(modules)
    return out


def _assert_factors(adapter, modules: dict) -> None:
    for m, (a, b) in modules.items():
        torch.testing.assert_close(adapter.modules[m].A, a)
        torch.testing.assert_close(adapter.modules[m].B, b)


def test_generate_is_the_decoder_at_the_weighted_condition_with_the_weighted_stats(small):
    _, gen = small
    z = math.exp(COS[0] / 0.25) + math.exp(COS[2] / 0.25)  # k = 2, τ = 0.25: experts a and c
    w = [math.exp(COS[0] / 0.25) / z, 0.0, math.exp(COS[2] / 0.25) / z]
    samples = gen.generate(QUERY, n=2, seed=3, k=2, tau=0.25)
    for adapter, modules in zip(samples, _by_hand(gen, w, 2, 3), strict=True):
        _assert_factors(adapter, modules)
    lin = samples[1].lineage["condition"]
    assert lin["weights"] == {"a": round(w[0], 6), "c": round(w[2], 6)} and lin["nearest_expert"] == "a"
    assert (lin["k"], lin["tau"]) == (2, 0.25) and samples[0].name == "sg_a_s3_0"


def test_generate_defaults_to_the_generators_k_and_tau(small):
    _, gen = small
    one = gen.generate(QUERY, seed=4)  # k = 1: expert a alone, weight 1
    _assert_factors(one, _by_hand(gen, [1.0, 0.0, 0.0], 1, 4)[0])
    z = sum(math.exp(c / 0.5) for c in COS)  # k = 3 with the generator's τ = 0.5
    every = gen.generate(QUERY, seed=4, k=3)
    _assert_factors(every, _by_hand(gen, [math.exp(c / 0.5) / z for c in COS], 1, 4)[0])
    assert every.lineage["condition"]["tau"] == 0.5 and one.lineage["condition"]["k"] == 1


def test_the_nearest_expert_names_the_sample(small):
    _, gen = small
    near_b = torch.tensor([0.1, 1.0, 0, 0, 0, 0, 0, 0])  # cosines ≈ (0.10, 0.99, 0.86): b first
    adapter = gen.generate(near_b, seed=0, k=3)
    assert adapter.name == "sg_b_s0" and adapter.lineage["condition"]["nearest_expert"] == "b"
