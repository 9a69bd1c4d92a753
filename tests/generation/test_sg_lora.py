"""SGLoRA: proximity weights on hand-made embeddings, the semantic condition, and generation from a
description on a tiny model (planted expert families, the hashing encoder: no hub)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tests.conftest import tiny_lab
from tests.generation.helpers import planted_family
from workbench.errors import WorkbenchError
from workbench.generation import HashingEncoder, SGLoRA, flatten, proximity_weights, semantic_condition

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_proximity_weights_by_hand():
    experts = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.6, 0.8]])  # unit rows
    query = torch.tensor([1.0, 0.0])
    cos = [1.0, 0.0, -1.0, 0.6]
    w = proximity_weights(query, experts, k=2, tau=0.5)  # top-2: experts 0 (cos 1) and 3 (cos 0.6)
    z = math.exp(1.0 / 0.5) + math.exp(0.6 / 0.5)
    torch.testing.assert_close(w, torch.tensor([math.exp(2.0) / z, 0.0, 0.0, math.exp(1.2) / z]))
    # τ matters: a hotter softmax spreads the same two experts' weight
    w_hot = proximity_weights(query, experts, k=2, tau=5.0)
    z = math.exp(cos[0] / 5) + math.exp(cos[3] / 5)
    assert w_hot[0] == pytest.approx(math.exp(0.2) / z) and w_hot[3] == pytest.approx(math.exp(0.12) / z)
    # k matters: with k = 4 every expert has a share, in cosine order
    w_all = proximity_weights(query, experts, k=4, tau=0.5)
    z = sum(math.exp(c / 0.5) for c in cos)
    torch.testing.assert_close(w_all, torch.tensor([math.exp(c / 0.5) / z for c in cos]))
    # k = 1: the nearest expert only; k beyond N is clipped
    assert proximity_weights(query, experts, k=1, tau=0.5).tolist() == [1.0, 0.0, 0.0, 0.0]
    assert proximity_weights(query, experts, k=9, tau=0.5).sum() == pytest.approx(1.0)
    # the condition is the weighted sum of the expert embeddings
    torch.testing.assert_close(semantic_condition(w, experts), w[0] * experts[0] + w[3] * experts[3])
    for bad in ({"k": 0, "tau": 1.0}, {"k": 1, "tau": 0.0}):
        with pytest.raises(WorkbenchError):
            proximity_weights(query, experts, **bad)


def test_hashing_encoder_is_deterministic_and_word_based():
    enc = HashingEncoder(dim=64)
    a, b, c = enc.embed(["quotes about sports", "quotes about sports", "german sentences"])
    assert torch.equal(a, b) and a.norm() == pytest.approx(1.0)
    assert float(a @ c) < float(a @ enc.embed(["classify quotes about sports or food"])[0])
    with pytest.raises(WorkbenchError, match="list of strings"):
        enc.embed("one string")


DESCRIPTIONS = {"sports": "classify quotes about sports and games",
                "food": "classify quotes about food and cooking",
                "german": "identify german language sentences",
                "dutch": "identify dutch language sentences"}


@pytest.fixture(scope="module")
def fitted():
    torch.set_num_threads(1)
    lab = tiny_lab()
    families = {t: planted_family(lab, t, seed=20 + i, n=6) for i, t in enumerate(DESCRIPTIONS)}
    gen = SGLoRA(lab, encoder=HashingEncoder(dim=64), k=2, tau=0.1, channels=(4, 8, 8, 4), latent=8)
    gen.fit(families, DESCRIPTIONS, late=1.0, steps=200, lr=2e-3, batch_size=4, seed=0, progress=False)
    means = {t: torch.stack([flatten(c).x for c in cks]).mean(0) for t, cks in families.items()}
    return lab, gen, families, means


def _dist(adapter, mean) -> float:
    return float((flatten(adapter).x - mean).pow(2).mean())


def test_a_description_generates_near_its_experts(fitted):
    _, gen, _, means = fitted
    w = gen.proximity("classify quotes about sports")
    assert w.idxmax() == "sports" and (w > 0).sum() == 2 and w.sum() == pytest.approx(1.0)
    for text, own in (("classify quotes about sports and games", "sports"),
                      ("identify dutch language sentences", "dutch")):
        for adapter in gen.generate(text, n=2, seed=3, k=1):  # k = 1: the nearest expert's condition
            d = {t: _dist(adapter, m) for t, m in means.items()}
            # with the condition ignored every description would give the same samples
            assert min(d, key=d.get) == own, d


def test_generation_lineage_seed_and_samples(fitted):
    lab, gen, *_ = fitted
    text = "classify a quote as being about computers or sports"
    a, b = gen.generate(text, n=2, seed=5)
    again = gen.generate(text, n=2, seed=5)[1]
    m = next(iter(a.modules))
    assert torch.equal(b.modules[m].A, again.modules[m].A) and not torch.equal(a.modules[m].A, b.modules[m].A)
    lin = b.lineage
    assert lin["generator"]["name"] == "sg_lora" and lin["generator"]["encoder"] == "hashing"
    assert (lin["seed"], lin["sample"], lin["condition"]["text"]) == (5, 1, text)
    assert lin["condition"]["kind"] == "description" and sum(lin["condition"]["weights"].values()) == \
        pytest.approx(1.0, abs=1e-5)
    json.dumps(lin)
    assert a.base_fingerprint == lab.fingerprint and a.name == f"sg_{lin['condition']['nearest_expert']}_s5_0"


def test_tau_and_k_change_what_is_generated(fitted):
    _, gen, *_ = fitted
    text = "classify quotes about sports"
    one = gen.generate(text, seed=0, k=1)
    two = gen.generate(text, seed=0, k=4, tau=10.0)  # nearly the uniform average condition
    m = next(iter(one.modules))
    assert not torch.allclose(one.modules[m].A, two.modules[m].A)


def test_save_and_load_keeps_the_generator(fitted, tmp_path):
    lab, gen, *_ = fitted
    path = gen.save(tmp_path / "sg")
    back = SGLoRA.load(lab, path)
    assert back.encoder.name == "hashing" and back.encoder.dim == 64 and (back.k, back.tau) == (2, 0.1)
    assert back.descriptions == gen.descriptions
    text = "identify german sentences"
    x, y = gen.generate(text, seed=1), back.generate(text, seed=1)
    assert all(torch.equal(x.modules[m].A, y.modules[m].A) for m in x.modules)
    from workbench.generation import ICMLoRA

    with pytest.raises(WorkbenchError, match="sg_lora"):
        ICMLoRA.load(lab, path)


def test_bad_input_is_refused(fitted):
    lab, gen, families, _ = fitted
    with pytest.raises(WorkbenchError, match="description"):
        gen.generate(["a list"])
    with pytest.raises(WorkbenchError, match="no description"):
        SGLoRA(lab, encoder=HashingEncoder(16)).fit(families, {**DESCRIPTIONS, "food": " "}, steps=1,
                                                     progress=False)
    with pytest.raises(WorkbenchError, match="not fitted"):
        SGLoRA(lab, encoder=HashingEncoder(16)).proximity("x")
