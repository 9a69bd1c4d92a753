"""Helpers for task tests: a tiny word-level chat tokenizer and a loader that skips on missing data."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from workbench.errors import MissingPackageError
from workbench.tasks import TASKS, Task

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
WORDS = (
    "system user assistant you are a helpful what is one two three four five six plus minus "
    "which colour red green blue answer the letter A B C D apple banana cherry fruit"
).split()


def build_tokenizer(chat_template: str | None = CHAT_TEMPLATE) -> PreTrainedTokenizerFast:
    """A word-level tokenizer (< 64 ids, fits the zoo's tiny models) with a ChatML template."""
    specials = ["[UNK]", "<|im_start|>", "<|im_end|>"]
    vocab = {w: i for i, w in enumerate(specials + sorted(set(WORDS)) + list(".,?!:"))}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="[UNK]",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        additional_special_tokens=["<|im_start|>"],
    )
    tok.chat_template = chat_template
    return tok


def load_or_skip(name: str, **kwargs) -> Task:
    """Build a registered task; skip (with the install command) when its data is not installed."""
    try:
        return TASKS.get(name)(**kwargs)
    except MissingPackageError as e:
        pytest.skip(str(e))
