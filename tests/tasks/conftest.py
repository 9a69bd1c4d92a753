"""Fixtures for task tests."""

from __future__ import annotations

import pytest
from transformers import PreTrainedTokenizerFast

from tests.tasks.helpers import build_tokenizer


@pytest.fixture(scope="session")
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer with a ChatML chat template, small enough for the tiny zoo models."""
    return build_tokenizer()
