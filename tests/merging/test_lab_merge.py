"""lab.merge adds the merged adapter; lab.save_adapter exports it as PEFT, peft loads it and gives
the lab's logits; the lineage rides in the config."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel

from tests.conftest import tiny_inputs, tiny_lab
from workbench import WorkbenchError, zoo
from workbench.adapters import read_peft


def _lab_with_sources(scaling: str = "standard"):
    lab = tiny_lab("tiny-llama")
    for i, name in enumerate(["a", "b", "c"]):
        a = lab.new_adapter(name, r=4, targets="all-linear", init="random", seed=i, scaling=scaling)
        for f in a.modules.values():
            f.B.mul_(10.0)
    return lab


@pytest.mark.parametrize("method,params", [("ties", {"density": 0.3}), ("svd", {"rank": 6}), ("cat", {}),
                                           ("dare_ties", {"density": 0.5})])
def test_merged_adapter_exports_to_peft_with_the_same_logits(method, params, tmp_path):
    lab = _lab_with_sources()
    m = lab.merge(["a", "b", "c"], method=method, weights=[1.0, 0.5, -0.7], name="m", seed=3, **params)
    assert lab.adapters["m"] is m
    assert lab.last_merge.adapter is m and len(lab.last_merge.error) == len(m.modules)
    x = tiny_inputs(lab.model)
    with lab.using("m"):
        ours = lab.run(x)[0].logits
    with lab.using(None):
        base = lab.run(x)[0].logits
    assert (ours - base).abs().max() > 1e-3

    lab.save_adapter("m", tmp_path / "m")
    peft_model = PeftModel.from_pretrained(zoo.load("tiny-llama").model, tmp_path / "m").eval()
    with torch.no_grad():
        theirs = peft_model(**x).logits
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)

    cfg = json.loads((tmp_path / "m" / "adapter_config.json").read_text())
    lineage = cfg["lora_workbench"]["lineage"]["merge"]
    assert lineage["method"] == method and lineage["weights"] == [1.0, 0.5, -0.7] and lineage["seed"] == 3
    assert [s["name"] for s in lineage["sources"]] == ["a", "b", "c"]
    assert all(s["fingerprint"].startswith("sha256:") for s in lineage["sources"])
    assert lineage["error"] == pytest.approx(lab.last_merge.total_error)
    assert all(lineage["params"][k] == v for k, v in params.items())
    back = read_peft(tmp_path / "m")
    assert back.lineage == m.lineage


def test_merging_rslora_sources_exports_a_standard_adapter(tmp_path):
    """peft's merged adapter inherits use_rslora and is then over-scaled (PR #3449); ours has s = 1."""
    lab = _lab_with_sources("rslora")
    m = lab.merge(["a", "b"], method="svd", name="m")
    assert m.scaling == "standard" and all(f.alpha == f.r for f in m.modules.values())
    lab.save_adapter("m", tmp_path / "m")
    assert json.loads((tmp_path / "m" / "adapter_config.json").read_text())["use_rslora"] is False
    x = tiny_inputs(lab.model)
    with lab.using("m"):
        ours = lab.run(x)[0].logits
    peft_model = PeftModel.from_pretrained(zoo.load("tiny-llama").model, tmp_path / "m").eval()
    with torch.no_grad():
        torch.testing.assert_close(ours, peft_model(**x).logits, atol=1e-5, rtol=0)


def test_lab_merge_refuses_a_taken_name_and_unknown_adapters():
    lab = _lab_with_sources()
    with pytest.raises(WorkbenchError, match="taken"):
        lab.merge(["a", "b"], name="c")
    with pytest.raises(WorkbenchError, match="no adapter 'zz'"):
        lab.merge(["a", "zz"])
    with pytest.raises(WorkbenchError, match="list of adapter names"):
        lab.merge("a")
    assert list(lab.adapters) == ["a", "b", "c"] and lab.last_merge is None


def test_lab_merge_default_is_task_arithmetic_and_exact():
    lab = _lab_with_sources()
    m = lab.merge(["a", "b"])
    assert m.name == "task_arithmetic_a_b" and lab.last_merge.total_error < 1e-6


def test_lab_merge_cat_learned_gets_the_lab_and_records_the_learned_weights(tmp_path):
    from tests.merging.soup_data import soup_inputs

    lab = _lab_with_sources()
    data = soup_inputs(steps=4)
    m = lab.merge(["a", "b"], method="cat_learned", name="soup", features=data["features"], steps=4,
                  progress=False)
    learned = m.lineage["merge"]["learned"]
    assert learned["examples"] == len(data["features"]) and learned["steps"] == 4
    for path, shares in learned["weights"].items():
        assert set(shares) == {"a", "b"} and sum(shares.values()) == pytest.approx(1.0)
        p = shares["a"]  # the export is p_a·ΔW_a + p_b·ΔW_b exactly
        exact = p * lab.adapters["a"].delta(path) + (1 - p) * lab.adapters["b"].delta(path)
        torch.testing.assert_close(m.delta(path), exact, atol=1e-5, rtol=1e-4)
    assert m.lineage["merge"]["params"]["lab"] == "tiny-llama"
    assert m.lineage["merge"]["params"]["features"] == f"<{len(data['features'])} items>"
    lab.save_adapter("soup", tmp_path / "soup")
    cfg = json.loads((tmp_path / "soup" / "adapter_config.json").read_text())
    assert cfg["lora_workbench"]["lineage"]["merge"]["learned"]["weights"] == learned["weights"]


def test_cat_learned_training_moves_the_weights_and_lowers_the_loss():
    """Trained on data that adapter a fits and b does not, the soup shifts its weight towards a."""
    from tests.merging.soup_data import soup_inputs

    lab = _lab_with_sources()
    data = soup_inputs()
    with lab.using("a"):  # labels = what lab+a predicts greedily: a's own behaviour
        for f in data["features"]:
            ids = torch.tensor([f["input_ids"]])
            f["labels"] = [-100] + lab.run({"input_ids": ids})[0].logits[0, :-1].argmax(-1).tolist()
    short = lab.merge(["a", "b"], method="cat_learned", features=data["features"], steps=1, lr=0.0,
                      progress=False, init="uniform", name="s0")
    long = lab.merge(["a", "b"], method="cat_learned", features=data["features"], steps=40, lr=0.1,
                     progress=False, init="uniform", name="s1")
    share = [sum(s["a"] for s in m.lineage["merge"]["learned"]["weights"].values()) / len(m.modules)
             for m in (short, long)]
    assert share[0] == pytest.approx(0.5) and share[1] > 0.6
