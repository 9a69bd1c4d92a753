"""Saving and loading a generator: safetensors + JSON, the same samples back, bad input named."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import tiny_lab
from tests.generation.helpers import EXAMPLES, planted_family
from workbench.errors import WorkbenchError
from workbench.generation import ICMLoRA


@pytest.fixture(scope="module")
def fitted():
    lab = tiny_lab()
    families = {"left": planted_family(lab, "left", seed=1, n=3),
                "right": planted_family(lab, "right", seed=2, n=3)}
    gen = ICMLoRA(lab, channels=(2, 4, 2), latent=4)
    gen.fit(families, EXAMPLES, late=1.0, steps=3, batch_size=2, progress=False)
    return lab, gen


def test_round_trip_gives_the_same_adapters(fitted, tmp_path):
    lab, gen = fitted
    path = gen.save(tmp_path / "g")
    assert sorted(p.name for p in path.iterdir()) == ["generator.json", "generator.safetensors"]
    back = ICMLoRA.load(lab, path)
    assert back.tasks == gen.tasks and back.layout == gen.layout and back.layer == gen.layer
    a, b = gen.generate(EXAMPLES["left"], seed=3), back.generate(EXAMPLES["left"], seed=3)
    assert all(torch.equal(a.modules[m].A, b.modules[m].A) and torch.equal(a.modules[m].B, b.modules[m].B)
               for m in a.modules)
    assert a.lineage["generator"]["cvae"] == b.lineage["generator"]["cvae"]


def test_bad_folders_are_refused_with_the_reason(fitted, tmp_path):
    lab, gen = fitted
    path = gen.save(tmp_path / "g")
    with pytest.raises(WorkbenchError, match="already exists"):
        gen.save(path)
    with pytest.raises(WorkbenchError, match="no generator.json"):
        ICMLoRA.load(lab, tmp_path)
    config = json.loads((path / "generator.json").read_text())
    (path / "generator.json").write_text(json.dumps(config | {"format": "other"}))
    with pytest.raises(WorkbenchError, match="not a workbench generator"):
        ICMLoRA.load(lab, path)
    config["layout"]["base_fingerprint"] = "elsewhere"
    (path / "generator.json").write_text(json.dumps(config))
    with pytest.raises(WorkbenchError, match="fingerprint"):
        ICMLoRA.load(lab, path)
    config["layout"]["base_fingerprint"] = None
    (path / "generator.json").write_text(json.dumps(config))
    (path / "generator.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(WorkbenchError, match="safetensors"):
        ICMLoRA.load(lab, path)
    (path / "generator.json").write_text("{truncated")
    with pytest.raises(WorkbenchError, match="not valid JSON"):
        ICMLoRA.load(lab, path)


def test_an_unfitted_generator_is_not_saved(tmp_path):
    with pytest.raises(WorkbenchError, match="not fitted"):
        ICMLoRA(tiny_lab(), channels=(2, 2), latent=2).save(tmp_path / "g")


def test_the_same_seed_fits_the_same_generator_bit_for_bit():
    lab = tiny_lab()
    families = {"left": planted_family(lab, "left", seed=1, n=3),
                "right": planted_family(lab, "right", seed=2, n=3)}
    states = []
    for _ in range(2):
        gen = ICMLoRA(lab, channels=(2, 4, 2), latent=4)
        history = gen.fit(families, EXAMPLES, late=1.0, steps=3, batch_size=2, seed=5, progress=False)
        states.append((gen.vae.state_dict(), history))
    (a, ha), (b, hb) = states
    assert all(torch.equal(a[k], b[k]) for k in a) and ha.equals(hb)


def test_sg_lora_and_fusion_folders_with_bad_extras_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    from workbench.generation import HashingEncoder, ICMFusion, SGLoRA

    lab = tiny_lab()
    families = {"left": planted_family(lab, "left", seed=1, n=3),
                "right": planted_family(lab, "right", seed=2, n=3)}
    sg = SGLoRA(lab, encoder=HashingEncoder(16), channels=(2, 4, 2), latent=4)
    sg.fit(families, {"left": "quotes about food", "right": "german sentences"}, late=1.0, steps=2,
           batch_size=2, progress=False)
    path = sg.save(tmp_path / "sg")
    config = json.loads((path / "generator.json").read_text())
    (path / "generator.json").write_text(json.dumps(config | {"extra": {"k": 2}}))
    with pytest.raises(WorkbenchError, match="incomplete"):
        SGLoRA.load(lab, path)
    config["extra"]["encoder"] = "clip-text"
    (path / "generator.json").write_text(json.dumps(config))
    with pytest.raises(WorkbenchError, match="no built-in text encoder"):
        SGLoRA.load(lab, path)
    with pytest.raises(WorkbenchError, match="dimensions"):  # the right name, another size
        config["extra"]["encoder"] = "hashing"
        (path / "generator.json").write_text(json.dumps(config))
        SGLoRA.load(lab, path, encoder=HashingEncoder(32))

    fusion = ICMFusion(lab, proj_dim=2, channels=(2, 4, 2), latent=4)
    fusion.fit(families, EXAMPLES, late=1.0, steps=2, batch_size=2, progress=False)
    path = fusion.save(tmp_path / "fusion")
    tensors = load_file(str(path / "generator.safetensors"))
    tensors["extra.fusion_logits"] = torch.zeros(5)
    save_file(tensors, str(path / "generator.safetensors"))
    with pytest.raises(WorkbenchError, match="fusion logits"):
        ICMFusion.load(lab, path)
