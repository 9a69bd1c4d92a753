"""Gemma 3 270M from its five packages (slow): conversion, cache, completion template, known logits.

The first load on a machine joins the chunks and converts the GGUF (about a minute); later loads read
the cached safetensors copy. Skipped with the install command where the packages are absent.
"""

from __future__ import annotations

import pytest
import torch

from workbench.errors import MissingPackageError
from workbench.tasks.base import Example, Task
from workbench.tasks.encoding import chat_prompt, encode_for_training
from workbench.zoo import cache_dir, fingerprint, load
from workbench.zoo.cache import MARKER
from workbench.zoo.gemma3 import COMPLETION

pytestmark = pytest.mark.slow

PROMPT = "What is the capital of France?"


@pytest.fixture(scope="module")
def gemma():
    try:
        return load("gemma3-270m")
    except MissingPackageError as e:
        pytest.skip(str(e))


def test_gemma3_config_and_cache(gemma):
    config = gemma.model.config
    assert type(gemma.model).__name__ == "Gemma3ForCausalLM"
    assert (config.num_hidden_layers, config.hidden_size, config.vocab_size) == (18, 640, 262144)
    assert (config.num_attention_heads, config.num_key_value_heads) == (4, 1)
    assert config.layer_types.count("full_attention") == 3
    assert sum(p.numel() for p in gemma.model.parameters()) == pytest.approx(268e6, rel=0.01)
    assert (cache_dir() / "gemma3-270m" / MARKER).is_file()
    assert not (cache_dir() / "gemma3-270m" / "source").exists()  # the joined GGUF is not kept
    assert all(not p.requires_grad and p.dtype == torch.float32 for p in gemma.model.parameters())


def test_gemma3_reload_is_identical(gemma):
    assert load("gemma3-270m").fingerprint == gemma.fingerprint == fingerprint(gemma.model)


def test_gemma3_gets_the_completion_template(gemma):
    tokenizer = gemma.tokenizer
    assert tokenizer.chat_template == COMPLETION
    example = Example(prompt=PROMPT, target="Paris")
    task = Task("capital", "one question", "exact_match", [example], [example], system="Answer in one word.")
    text = chat_prompt(tokenizer, task, Example(prompt=PROMPT, target="Paris"))
    assert text == f"<bos>Answer in one word.\n\nQuestion: {PROMPT}\nAnswer:\n"
    # the answer tokenized alone is the same tokens as inside the text: training labels line up
    (feature,) = encode_for_training(tokenizer, task, [example])
    whole = tokenizer(text + "Paris", add_special_tokens=False)["input_ids"]
    assert feature["input_ids"][:-1] == whole
    assert feature["input_ids"][-1] == tokenizer.eos_token_id == 1


def test_gemma3_known_prompt_logits(gemma):
    """The pretrained base completes the question with Paris; its logits are pinned to the conversion."""
    tokenizer = gemma.tokenizer
    ids = tokenizer(f"Question: {PROMPT}\nAnswer:", return_tensors="pt")
    with torch.inference_mode():
        logits = gemma.model(**ids).logits[0, -1]  # (V,)
        out = gemma.model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    top = tokenizer.convert_ids_to_tokens(logits.topk(3).indices.tolist())
    assert top[0] == TOP_TOKEN, top
    assert logits.max().item() == pytest.approx(TOP_LOGIT, abs=1e-2)


TOP_TOKEN = "▁Paris"  # then "▁The", "▁", "▁France", "▁It"
TOP_LOGIT = 18.805  # measured on the first conversion here (transformers 5.24, torch 2.13 CPU)


def test_the_lab_trains_evaluates_and_exports_on_gemma(gemma, tmp_path):
    """A LoRA trained on a real task through the one loop, scored, saved, and loaded in peft with the
    lab's logits (to 1e-4: Gemma's logits reach about 20 in float32)."""
    from peft import PeftModel

    from workbench import Workbench, tasks

    lab = Workbench(gemma.model, gemma.tokenizer, name="gemma3-270m", fingerprint=gemma.fingerprint)
    try:
        topic = tasks.load("topic")["topic"]
        adapter, history = lab.train_lora("t", topic, r=4, targets="attention", steps=1, batch_size=1, seed=0,
                                          progress=False)
        assert len(history) == 1 and adapter.base_fingerprint == gemma.fingerprint
        assert any(f.B.abs().max() > 0 for f in adapter.modules.values())
        scores = lab.evaluate([None, "t"], [topic], limit=1, progress=False)
        assert set(scores.adapter) == {"base", "t"} and scores.value.between(0, 1).all()
        lab.use("t")
        x = lab.encode([f"Question: {PROMPT}\nAnswer:"])
        ours = lab.run(x)[0].logits
        lab.save_adapter("t", tmp_path / "t")
    finally:
        lab.detach()  # give peft the plain model
    peft_model = PeftModel.from_pretrained(gemma.model, tmp_path / "t").eval()
    try:
        with torch.no_grad():
            theirs = peft_model(**x).logits
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)
    finally:
        peft_model.unload()
