"""Balanced accuracy (Menta's metric): the mean per-class recall, checked by hand and on a tiny model."""

from __future__ import annotations

import copy

import pytest
import torch

from workbench import zoo
from workbench.errors import WorkbenchError
from workbench.tasks import METRICS, Example, Task
from workbench.tasks.encoding import prompt_ids
from workbench.tasks.metrics import balanced_accuracy_of, choice_predictions, first_token_ids

CHOICES = ("apple", "banana", "cherry")
PROMPTS = ["which fruit is red ?", "what is one plus two ?", "answer A B C or D", "what fruit",
           "which colour is a banana : red , green or blue ?", "name a fruit please"]


def test_balanced_accuracy_is_the_mean_per_class_recall_by_hand():
    # 8 of class a (6 right), 2 of class b (1 right), none of c: recalls 6/8 and 1/2
    targets = ["a"] * 8 + ["b"] * 2
    preds = ["a"] * 6 + ["b", "b"] + ["a", "b"]
    assert balanced_accuracy_of(targets, preds) == pytest.approx((6 / 8 + 1 / 2) / 2)  # 0.625
    assert sum(p == t for p, t in zip(preds, targets, strict=True)) / 10 == 0.7  # plain accuracy differs
    # the majority guess: accuracy 0.8, balanced accuracy 0.5 (one class of two fully recalled)
    assert balanced_accuracy_of(targets, ["a"] * 10) == 0.5
    # a predicted class that is never a target does not count as a class
    assert balanced_accuracy_of(["a", "a"], ["c", "a"]) == 0.5
    with pytest.raises(WorkbenchError, match="as many predictions"):
        balanced_accuracy_of(["a"], [])


def test_balanced_accuracy_metric_scores_the_choice_predictions(tiny_tokenizer):
    model = copy.deepcopy(zoo.load("tiny-llama").model).eval()
    probe = Task("toy", "toy", "balanced_accuracy", train=[],
                 eval=[Example(p, CHOICES[0], CHOICES) for p in PROMPTS])
    preds = choice_predictions(model, tiny_tokenizer, probe, probe.eval, batch_size=4)
    ids = first_token_ids(tiny_tokenizer, CHOICES)
    for e, p in zip(probe.eval, preds, strict=True):  # the batched predictions are the unpadded argmax
        with torch.no_grad():
            logits = model(torch.tensor([prompt_ids(tiny_tokenizer, probe, e)])).logits[0, -1][ids]
        assert p == CHOICES[int(logits.argmax())]
    # targets: the prediction for the first 4 prompts (right), a wrong choice for the last 2 (class x)
    wrong = {c: next(o for o in CHOICES if o != c) for c in CHOICES}
    examples = [Example(e.prompt, p if i < 4 else wrong[p], CHOICES)
                for i, (e, p) in enumerate(zip(probe.eval, preds, strict=True))]
    targets = [e.target for e in examples]
    expected = balanced_accuracy_of(targets, preds)
    fn = METRICS.get("balanced_accuracy").fn
    assert fn(model, tiny_tokenizer, probe, examples, batch_size=3) == pytest.approx(expected)
    assert METRICS.get("balanced_accuracy").higher_is_better is True
