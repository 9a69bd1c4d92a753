"""Chat prompts, training encodings (prompt masked, target kept) and right-padded batches."""

from __future__ import annotations

import pytest
import torch

from tests.tasks.helpers import build_tokenizer
from workbench.errors import WorkbenchError
from workbench.tasks import DEFAULT_SYSTEM, Example, Task, chat_prompt, collate, encode_for_training
from workbench.tasks.encoding import IGNORE_INDEX, left_pad

EXAMPLES = [
    Example("what is one plus two ?", "three"),
    Example("which colour is a banana ?", "the answer is red"),
]


def toy_task(**kwargs) -> Task:
    return Task("toy", "toy task", "loss", train=list(EXAMPLES), eval=list(EXAMPLES), **kwargs)


def test_chat_prompt_uses_the_template_and_a_short_system_prompt(tiny_tokenizer):
    text = chat_prompt(tiny_tokenizer, toy_task(), EXAMPLES[0])
    assert text == (
        f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n"
        "<|im_start|>user\nwhat is one plus two ?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert "system\nyou are a<|im_end|>" in chat_prompt(
        tiny_tokenizer, toy_task(system="you are a"), EXAMPLES[0]
    )


def test_chat_prompt_falls_back_to_chatml_without_a_template():
    tok = build_tokenizer(chat_template=None)
    with_template = chat_prompt(build_tokenizer(), toy_task(), EXAMPLES[0])
    assert chat_prompt(tok, toy_task(), EXAMPLES[0]) == with_template


def test_encoding_masks_the_prompt_and_keeps_target_and_end_token(tiny_tokenizer):
    task = toy_task()
    features = encode_for_training(tiny_tokenizer, task, EXAMPLES)
    eos = tiny_tokenizer.eos_token_id
    for f, example in zip(features, EXAMPLES, strict=True):
        ids, labels = f["input_ids"], f["labels"]
        assert len(ids) == len(labels)
        prompt = tiny_tokenizer(chat_prompt(tiny_tokenizer, task, example))["input_ids"]
        target = tiny_tokenizer(example.target)["input_ids"]
        assert ids == prompt + target + [eos]
        assert labels == [IGNORE_INDEX] * len(prompt) + target + [eos]


def test_long_prompts_are_cut_from_the_left_never_the_target(tiny_tokenizer):
    task = toy_task()
    full = encode_for_training(tiny_tokenizer, task, EXAMPLES)
    short = encode_for_training(tiny_tokenizer, task, EXAMPLES, max_length=10)
    for f, s in zip(full, short, strict=True):
        assert len(s["input_ids"]) == 10
        assert s["input_ids"] == f["input_ids"][-10:]  # the prompt lost its start
        assert s["labels"] == f["labels"][-10:]
        n_target = sum(v != IGNORE_INDEX for v in f["labels"])
        assert sum(v != IGNORE_INDEX for v in s["labels"]) == n_target
    # the task's own max_length is the default
    assert encode_for_training(tiny_tokenizer, toy_task(max_length=10), EXAMPLES) == short


def test_a_target_longer_than_max_length_is_cut_with_a_warning(tiny_tokenizer):
    with pytest.warns(UserWarning, match="does not fit"):
        (f,) = encode_for_training(tiny_tokenizer, toy_task(), EXAMPLES[1:], max_length=3)
    assert len(f["input_ids"]) == 3
    assert f["labels"][0] == IGNORE_INDEX and IGNORE_INDEX not in f["labels"][1:]


def test_collate_right_pads(tiny_tokenizer):
    features = encode_for_training(tiny_tokenizer, toy_task(), EXAMPLES)
    batch = collate(features, pad_id=99)
    lengths = [len(f["input_ids"]) for f in features]
    assert batch["input_ids"].shape == batch["labels"].shape == (2, max(lengths))
    assert batch["input_ids"].dtype == torch.long
    for row, n in enumerate(lengths):
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (max(lengths) - n)
        assert batch["input_ids"][row, :n].tolist() == features[row]["input_ids"]
        assert set(batch["input_ids"][row, n:].tolist()) <= {99}
        assert set(batch["labels"][row, n:].tolist()) <= {IGNORE_INDEX}
    with pytest.raises(WorkbenchError, match="labels"):
        collate([{"input_ids": [1, 2], "labels": [1]}], 0)
    with pytest.raises(WorkbenchError):
        collate([], 0)


def test_left_pad_counts_positions_from_the_first_real_token():
    batch = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert batch["position_ids"].tolist() == [[0, 1, 2], [0, 0, 0]]
