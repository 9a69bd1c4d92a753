"""Tiny random zoo models: deterministic, frozen, float32, and the shapes adapter tests rely on."""

import pytest
import torch
from transformers.pytorch_utils import Conv1D

from workbench.zoo import ZOO, fingerprint, load
from workbench.zoo.tiny import VOCAB

TINY = ["tiny-llama", "tiny-gemma3", "tiny-gpt2", "tiny-bert"]


@pytest.mark.parametrize("name", TINY)
def test_loads_deterministically(name):
    first, second = load(name), load(name)
    assert first.fingerprint == second.fingerprint == fingerprint(second.model)
    for (n1, p1), (n2, p2) in zip(
        first.model.state_dict().items(), second.model.state_dict().items(), strict=True
    ):
        assert n1 == n2 and torch.equal(p1, p2), n1


@pytest.mark.parametrize("name", TINY)
def test_leaves_global_rng_alone(name):
    state = torch.get_rng_state()
    load(name)
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("name", TINY)
def test_frozen_float32_eval(name):
    zoo_model = load(name)
    assert zoo_model.name == name and zoo_model.tokenizer is None
    assert not zoo_model.model.training
    for param in zoo_model.model.parameters():
        assert param.dtype == torch.float32 and not param.requires_grad


@pytest.mark.parametrize("name", TINY)
def test_forward(name):
    zoo_model = load(name)
    ids = torch.randint(0, VOCAB, (2, 5), generator=torch.Generator().manual_seed(1))  # (B, T)
    out = zoo_model.model(input_ids=ids)
    if zoo_model.kind == "causal-lm":
        assert out.logits.shape == (2, 5, VOCAB)
    else:
        assert zoo_model.kind == "encoder"
        assert out.last_hidden_state.shape == (2, 5, zoo_model.model.config.hidden_size)


def test_tiny_llama_uses_gqa_and_untied_head():
    model = load("tiny-llama").model
    assert model.config.num_attention_heads == 4 and model.config.num_key_value_heads == 2
    attn = model.model.layers[0].self_attn
    assert attn.k_proj.out_features == attn.q_proj.out_features // 2
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()


def test_tiny_gpt2_uses_conv1d():
    model = load("tiny-gpt2").model
    assert isinstance(model.transformer.h[0].attn.c_attn, Conv1D)


def test_different_models_have_different_fingerprints():
    assert len({load(name).fingerprint for name in TINY}) == len(TINY)


def test_zoo_lists_every_model():
    assert set(ZOO.names()) == {"smollm2-135m", "gemma3-270m", "minilm-l6", *TINY,
                                "efficientnet-lite0", "whisper-tiny-en", "tiny-cnn", "tiny-whisper"}


def test_tiny_gemma3_is_shaped_like_gemma3_270m():
    model = load("tiny-gemma3").model
    config = model.config
    assert config.layer_types == ["sliding_attention", "full_attention"]
    attn = model.model.layers[0].self_attn
    assert attn.k_proj.out_features == config.head_dim  # one key/value head for 4 query heads
    assert attn.q_proj.out_features == config.num_attention_heads * config.head_dim
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # tied
