"""The tasks with the real SmolLM2-135M-Instruct tokenizer and model (slow: loads the model)."""

from __future__ import annotations

import math
import warnings

import pytest

from tests.tasks.helpers import load_or_skip
from workbench.tasks import METRICS, TASKS, encode_for_training
from workbench.tasks.encoding import IGNORE_INDEX
from workbench.tasks.metrics import first_token_ids

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", TASKS.names())
def test_choices_start_with_distinct_tokens(smollm2, name):
    task = load_or_skip(name)
    if task.metric != "accuracy":
        pytest.skip("not a choice task")
    for choices in {e.choices for e in task.train + task.eval}:
        first_token_ids(smollm2.tokenizer, choices)  # raises on a collision


@pytest.mark.parametrize("name", TASKS.names())
def test_every_example_fits_with_its_target_whole(smollm2, name):
    task = load_or_skip(name)
    tok = smollm2.tokenizer
    examples = task.train + task.eval
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a cut target warns
        features = encode_for_training(tok, task, examples)
    lengths = [len(f["input_ids"]) for f in features]
    assert max(lengths) <= task.max_length
    if name != "code":
        assert sum(lengths) / len(lengths) <= 100  # short prompts keep training cheap
    for f, e in zip(features[:50], examples[:50], strict=True):
        answer = [t for t in f["labels"] if t != IGNORE_INDEX]
        assert tok.decode(answer) == tok.decode(tok(e.target)["input_ids"]) + tok.eos_token
        assert tok.eos_token == "<|im_end|>"


@pytest.mark.parametrize(
    ("name", "n"), [("topic", 8), ("trivia", 8), ("language", 8), ("arithmetic", 4), ("code", 2)]
)
def test_metrics_run_on_the_real_model(smollm2, name, n):
    task = load_or_skip(name)
    metric = METRICS.get(task.metric)
    score = metric.fn(smollm2.model, smollm2.tokenizer, task, task.eval[:n], batch_size=4)
    assert math.isfinite(score)
    if metric.higher_is_better:
        assert 0.0 <= score <= 1.0
    else:
        assert score > 0.0
