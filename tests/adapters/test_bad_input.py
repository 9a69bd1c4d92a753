"""Bad input gets a clear error naming the file or module, the shapes and the fix; nothing changes."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.conftest import tiny_lab
from workbench import Workbench, zoo
from workbench.errors import WorkbenchError


@pytest.fixture
def saved(tmp_path):
    lab = tiny_lab()
    lab.new_adapter("a", r=2, init="random", seed=0)
    return lab.save_adapter("a", tmp_path / "a")


def _unchanged(lab: Workbench) -> bool:
    return not lab.adapters and not lab.layers


def test_adapter_for_another_base_is_refused(saved):
    other = tiny_lab()
    with torch.no_grad():
        other.model.model.layers[0].self_attn.q_proj.weight.mul_(1.5)
    other.fingerprint = zoo.fingerprint(other.model)
    with pytest.raises(WorkbenchError, match="made for a base with fingerprint .* check_base=False"):
        other.load_adapter(saved)
    assert _unchanged(other)


def test_adapter_with_other_shapes_names_module_and_both_shapes(saved):
    gpt2 = tiny_lab("tiny-gpt2")
    with pytest.raises(WorkbenchError, match="does not have as a linear layer"):
        gpt2.load_adapter(saved, check_base=False)
    llama = tiny_lab()
    cfg = llama.model.config
    cfg2 = type(cfg)(**{**cfg.to_dict(), "hidden_size": cfg.hidden_size * 2})
    from transformers import LlamaForCausalLM

    wide = Workbench(LlamaForCausalLM(cfg2), fingerprint="sha256:other")
    with pytest.raises(WorkbenchError, match=r"self_attn\.\w_proj.*\(out=\d+, in=\d+\).*\(out=\d+, in=\d+\)"):
        wide.load_adapter(saved, check_base=False)
    assert not wide.adapters and not wide.layers


def test_missing_weights_file(saved):
    (saved / "adapter_model.safetensors").unlink()
    lab = tiny_lab()
    with pytest.raises(WorkbenchError, match="adapter_model.safetensors is missing"):
        lab.load_adapter(saved)
    assert _unchanged(lab)


def test_missing_directory_and_config(tmp_path):
    lab = tiny_lab()
    with pytest.raises(WorkbenchError, match="not a directory"):
        lab.load_adapter(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WorkbenchError, match="adapter_config.json is missing"):
        lab.load_adapter(tmp_path / "empty")


def test_truncated_weights_file(saved):
    f = saved / "adapter_model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    lab = tiny_lab()
    with pytest.raises(WorkbenchError, match="truncated or corrupt"):
        lab.load_adapter(saved)
    assert _unchanged(lab)


def test_truncated_config(saved):
    f = saved / "adapter_config.json"
    f.write_text(f.read_text()[:40])
    with pytest.raises(WorkbenchError, match="not valid JSON"):
        tiny_lab().load_adapter(saved)


def test_pickle_weights_are_refused(saved):
    tensors = load_file(saved / "adapter_model.safetensors")
    (saved / "adapter_model.safetensors").unlink()
    torch.save(tensors, saved / "adapter_model.bin")
    lab = tiny_lab()
    with pytest.raises(WorkbenchError, match="pickle weights .*adapter_model.bin.* refused"):
        lab.load_adapter(saved)
    assert _unchanged(lab)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_weights_are_refused(saved, bad):
    f = saved / "adapter_model.safetensors"
    tensors = load_file(f)
    key = next(k for k in tensors if "layers.1.self_attn.k_proj.lora_B" in k)
    tensors[key][0, 0] = bad
    save_file(tensors, f)
    lab = tiny_lab()
    with pytest.raises(WorkbenchError, match=r"layers.1.self_attn.k_proj.* factor B holds 1 NaN/Inf"):
        lab.load_adapter(saved)
    assert _unchanged(lab)


def test_dora_config_without_magnitudes_is_refused(saved):
    f = saved / "adapter_config.json"
    f.write_text(json.dumps({**json.loads(f.read_text()), "use_dora": True}))
    with pytest.raises(WorkbenchError, match="lacks a DoRA magnitude .* but use_dora is True"):
        tiny_lab().load_adapter(saved)


def test_rank_mismatch_between_config_and_weights(saved):
    f = saved / "adapter_config.json"
    f.write_text(json.dumps({**json.loads(f.read_text()), "r": 5}))
    with pytest.raises(WorkbenchError, match=r"rank 2 \(lora_A \(2, 64\)\) in its weights but 5"):
        tiny_lab().load_adapter(saved)


def test_unknown_target_modules():
    lab = tiny_lab()
    with pytest.raises(WorkbenchError, match="target 'qkv_proj' matches no linear module.*q_proj"):
        lab.new_adapter("a", targets=["qkv_proj"])
    assert _unchanged(lab)


def test_save_never_clobbers_without_overwrite(saved):
    lab = tiny_lab()
    lab.new_adapter("b", r=3, init="random")
    before = (saved / "adapter_model.safetensors").read_bytes()
    with pytest.raises(WorkbenchError, match="already exists; pass overwrite=True"):
        lab.save_adapter("b", saved)
    assert (saved / "adapter_model.safetensors").read_bytes() == before
    lab.save_adapter("b", saved, overwrite=True)
    assert load_file(saved / "adapter_model.safetensors")[
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"].shape[0] == 3
    assert [p.name for p in saved.parent.iterdir()] == ["a"]  # no temp or backup left behind


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    lab = tiny_lab()
    lab.new_adapter("a", r=2, init="random")
    import workbench.adapters.peft_format as pf

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(pf, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        lab.save_adapter("a", tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_duplicate_names_and_unknown_names():
    lab = tiny_lab()
    lab.new_adapter("a", r=2)
    with pytest.raises(WorkbenchError, match="already in this lab"):
        lab.new_adapter("a", r=2)
    with pytest.raises(WorkbenchError, match=r"unknown adapter\(s\) \['zz'\]; this lab has: \['a'\]"):
        lab.use("zz")
    with pytest.raises(WorkbenchError, match="not a Python identifier"):
        lab.new_adapter("my adapter")
