"""The loader reads by allow-list: each config field or tensor it does not apply exactly is refused,
naming the field (or tensor), the value and the fix; the lab is left unchanged."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.conftest import tiny_lab
from workbench.errors import WorkbenchError

Q = "base_model.model.model.layers.0.self_attn.q_proj"


@pytest.fixture
def saved(tmp_path):
    lab = tiny_lab()
    lab.new_adapter("a", r=2, init="random", seed=0)
    return lab.save_adapter("a", tmp_path / "a")


def _edit_config(path, **fields):
    f = path / "adapter_config.json"
    f.write_text(json.dumps({**json.loads(f.read_text()), **fields}))


def _edit_tensors(path, **tensors):
    f = path / "adapter_model.safetensors"
    save_file({**load_file(f), **tensors}, f)


def _refused(path, pattern):
    lab = tiny_lab()
    with pytest.raises(WorkbenchError, match=pattern):
        lab.load_adapter(path)
    assert not lab.adapters and not lab.layers


@pytest.mark.parametrize(("fields", "pattern"), [
    ({"alora_invocation_tokens": [3, 4]},
     r"alora_invocation_tokens=\[3, 4\] is not supported: aLoRA .* peft"),
    ({"layer_replication": [[0, 1]]}, r"layer_replication=\[\[0, 1\]\] is not supported.*merge_and_unload"),
    ({"target_parameters": ["experts.down_proj"]}, r"target_parameters=.* nn.Parameters"),
    ({"use_qalora": True}, r"use_qalora=True is not supported"),
    ({"kasa_config": {"x": 1}}, r"kasa_config=.* KaSA"),
    ({"megatron_config": {"a": 1}}, r"megatron_config=.*Megatron"),
    ({"monteclora_config": {"a": 1}}, r"monteclora_config=.*samples"),
    ({"use_bdlora": {"a": 1}}, r"use_bdlora=.*BD-LoRA"),
    ({"arrow_config": {"a": 1}}, r"arrow_config=.*Arrow"),
    ({"some_future_option": 3}, r"unknown field some_future_option=3\. It may change the forward pass"),
    ({"init_lora_weights": "pissa_niter_4"}, r"init_lora_weights='pissa_niter_4'.*W' = W - s·B₀A₀.*"
                                            r"path_initial_model_for_weight_conversion"),
    ({"init_lora_weights": "corda"}, r"init_lora_weights='corda'.*path_initial_model_for_weight_conversion"),
    ({"init_lora_weights": "lora_ga"}, r"init_lora_weights='lora_ga'"),
    ({"init_lora_weights": "loftq"}, r"init_lora_weights='loftq'.*quantized base"),
    ({"init_lora_weights": "mica"}, r"init_lora_weights='mica'.*MiCA"),
    ({"init_lora_weights": "magic"}, r"init_lora_weights='magic' is unknown"),
    ({"use_dora": True, "lora_bias": True}, r"use_dora and lora_bias are both true"),
    ({"lora_alpha": float("nan")}, r"lora_alpha=nan; it must be a finite number"),
    ({"lora_alpha": "sixteen"}, r"lora_alpha='sixteen'; it must be a finite number"),
    ({"r": 0}, r"r=0; a LoRA rank is a positive integer"),
    ({"rank_pattern": {"q_proj[": 2}}, r"rank_pattern key 'q_proj\[' is not a valid regex"),
    ({"alpha_pattern": ["q_proj"]}, r"alpha_pattern must be a JSON object"),
    ({"bias": "some"}, r"bias='some'"),
    ({"peft_type": "LOHA"}, r"peft_type is LOHA; only LoRA"),
    ({"modules_to_save": "lm_head"}, r"modules_to_save='lm_head'; it must be a list"),
    ({"trainable_token_indices": [1, "x"]}, r"trainable_token_indices=.* list of token ids"),
    ({"modules_to_save": ["lm_head"], "ensure_weight_tying": True}, r"ensure_weight_tying=true"),
])
def test_config_fields_that_change_the_forward_are_refused(saved, fields, pattern):
    _edit_config(saved, **fields)
    _refused(saved, pattern)


def test_neutral_fields_are_accepted(saved):
    _edit_config(saved, lora_dropout=0.3, layers_to_transform=[0, 1], layers_pattern="layers",
                 init_lora_weights="gaussian", velora_config={"rank": 2}, inference_mode=True,
                 revision="main", exclude_modules=["k_proj"])
    assert tiny_lab().load_adapter(saved).name == "a"


@pytest.mark.parametrize(("tensors", "pattern"), [
    ({f"{Q}.lora_magnitude_vector": torch.ones(64)}, r"has a DoRA magnitude .* use_dora is False"),
    ({f"{Q}.lora_B.bias": torch.ones(64)}, r"has a lora_B bias but lora_bias is false"),
    ({f"{Q}.lora_diag": torch.ones(2)}, r"tensor '.*lora_diag' is not a LoRA factor this workbench knows"),
    ({f"{Q}.base_layer.weight": torch.zeros(64, 64)}, r"copy of base parameter .*q_proj.weight' differs"),
    ({"base_model.model.model.nowhere.weight": torch.zeros(3)}, r"'model.nowhere.weight', which is not a"),
    ({"base_model.model.lm_head.weight": torch.zeros(5, 5)}, r"copy of 'lm_head.weight' is \(5, 5\)"),
    ({f"{Q}.base_layer.bias": torch.zeros(64)}, r"not a parameter of this model"),  # Llama: no bias
])
def test_every_tensor_is_a_factor_an_extra_a_checked_copy_or_refused(saved, tensors, pattern):
    _edit_tensors(saved, **tensors)
    _refused(saved, pattern)


def test_an_equal_copy_of_a_base_weight_is_accepted(saved):
    lab = tiny_lab()
    head = lab.model.lm_head.weight.detach().clone()
    _edit_tensors(saved, **{"base_model.model.lm_head.base_layer.weight": head})
    a = lab.load_adapter(saved)
    assert not a.params and not a.base_copies
