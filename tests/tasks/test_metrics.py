"""Metrics on the zoo's tiny random causal LMs: batched (padded) scores equal unpadded references."""

from __future__ import annotations

import copy

import pytest
import torch

from workbench import zoo
from workbench.errors import WorkbenchError
from workbench.tasks import METRICS, Example, Metric, Task, encode_for_training
from workbench.tasks.encoding import prompt_ids
from workbench.tasks.metrics import first_token_ids

CHOICES = ("apple", "banana", "cherry")
PROMPTS = [  # different lengths, so batches need padding
    "which fruit is red ?",
    "what is one plus two plus three plus four ?",
    "answer A B C or D",
    "which colour is a banana : red , green or blue ?",
    "what fruit",
]


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-gpt2"])
def model(request):
    """A private copy of a tiny zoo model (float32: eager attention in float64 turns fully padded
    rows into NaN, which then leak into real rows)."""
    return copy.deepcopy(zoo.load(request.param).model).eval()


def toy_task(metric: str, examples) -> Task:
    return Task("toy", "toy task", metric, train=[], eval=list(examples), max_new_tokens=5)


def last_logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, -1]


def test_metric_registry_holds_the_three_metrics():
    assert {"accuracy", "exact_match", "loss"} <= set(METRICS.names())
    for name in METRICS.names():
        metric = METRICS.get(name)
        assert isinstance(metric, Metric) and metric.name == name
    assert METRICS.get("loss").higher_is_better is False
    assert METRICS.get("accuracy").higher_is_better is True


def test_accuracy_matches_unpadded_argmax(model, tiny_tokenizer):
    ids = first_token_ids(tiny_tokenizer, CHOICES)
    probe = toy_task("accuracy", [Example(p, CHOICES[0], CHOICES) for p in PROMPTS])
    best, worst = [], []
    for e in probe.eval:
        logits = last_logits(model, prompt_ids(tiny_tokenizer, probe, e))[ids]
        best.append(Example(e.prompt, CHOICES[int(logits.argmax())], CHOICES))
        worst.append(Example(e.prompt, CHOICES[int(logits.argmin())], CHOICES))
    fn = METRICS.get("accuracy").fn
    assert fn(model, tiny_tokenizer, toy_task("accuracy", best), best, batch_size=2) == 1.0
    assert fn(model, tiny_tokenizer, toy_task("accuracy", worst), worst, batch_size=3) == 0.0
    mixed = best[:2] + worst[2:]
    assert fn(model, tiny_tokenizer, toy_task("accuracy", mixed), mixed) == pytest.approx(2 / 5)


def test_exact_match_matches_unpadded_greedy_generation(model, tiny_tokenizer):
    probe = toy_task("exact_match", [Example(p, "x") for p in PROMPTS])
    eos = tiny_tokenizer.eos_token_id
    examples = []
    for e in probe.eval:
        ids = torch.tensor([prompt_ids(tiny_tokenizer, probe, e)])
        with torch.no_grad():
            out = model.generate(
                input_ids=ids, max_new_tokens=5, do_sample=False, pad_token_id=eos, eos_token_id=eos
            )
        text = tiny_tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
        examples.append(Example(e.prompt, f"  {text} " if text else "nothing"))
    fn = METRICS.get("exact_match").fn
    task = toy_task("exact_match", examples)
    expected = sum(e.target != "nothing" for e in examples) / len(examples)
    assert fn(model, tiny_tokenizer, task, examples, batch_size=2) == pytest.approx(expected)
    wrong = [Example(e.prompt, "zzz") for e in examples]
    assert fn(model, tiny_tokenizer, toy_task("exact_match", wrong), wrong) == 0.0


def test_loss_is_the_token_weighted_mean_nll(model, tiny_tokenizer):
    targets = ["red", "ten", "A", "yellow banana", "a"]
    examples = [Example(p, t) for p, t in zip(PROMPTS, targets, strict=True)]
    task = toy_task("loss", examples)
    total, count = 0.0, 0
    for f in encode_for_training(tiny_tokenizer, task, examples):
        labels = torch.tensor([f["labels"]])
        with torch.no_grad():
            out = model(torch.tensor([f["input_ids"]]), labels=labels)
        n = int((labels[:, 1:] != -100).sum())
        total, count = total + float(out.loss) * n, count + n
    got = METRICS.get("loss").fn(model, tiny_tokenizer, task, examples, batch_size=2)
    assert got == pytest.approx(total / count, rel=1e-6)


def test_metrics_restore_the_training_flag_and_default_to_eval(model, tiny_tokenizer):
    examples = [Example(p, CHOICES[1], CHOICES) for p in PROMPTS]
    task = toy_task("accuracy", examples)
    model.train()
    try:
        score = METRICS.get("accuracy")(model, tiny_tokenizer, task)  # examples default: task.eval
    finally:
        was_training = model.training
        model.eval()
    assert was_training and 0.0 <= score <= 1.0


def test_colliding_first_tokens_are_refused(tiny_tokenizer):
    with pytest.raises(WorkbenchError, match="'apple banana' and 'apple cherry'"):
        first_token_ids(tiny_tokenizer, ["red", "apple banana", "apple cherry"])
    bad = [Example("what fruit", "apple banana", ("apple banana", "apple cherry"))]
    tiny = zoo.load("tiny-llama").model
    with pytest.raises(WorkbenchError, match="same token"):
        METRICS.get("accuracy").fn(tiny, tiny_tokenizer, toy_task("accuracy", bad), bad)


def test_accuracy_needs_choices_and_metrics_need_examples(tiny_tokenizer):
    tiny = zoo.load("tiny-llama").model
    loose = [Example("what fruit", "apple")]
    with pytest.raises(WorkbenchError, match="needs choices"):
        METRICS.get("accuracy").fn(tiny, tiny_tokenizer, toy_task("loss", loose), loose)
    with pytest.raises(WorkbenchError, match="no examples"):
        METRICS.get("loss").fn(tiny, tiny_tokenizer, toy_task("loss", loose), [])
