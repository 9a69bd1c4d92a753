"""Labelling: the teacher is the source model WITH its adapter. On planted adapters, the labels are the
answers the task's own metric reads from that adapter (exact match / accuracy 1.0 under it) and change
when the adapter changes."""

from __future__ import annotations

import dataclasses

import pytest

from tests.transfer.helpers import FRUITS, colour_task, llama_lab
from workbench.errors import WorkbenchError
from workbench.tasks import METRICS, Example
from workbench.transfer import label

INPUTS = [Example(f"what colour is the {f} fruit", "") for f in FRUITS]


def _score(lab, adapter, task, examples):
    with lab.using(adapter):
        return METRICS.get(task.metric).fn(lab.model, lab.tokenizer, task, examples)


@pytest.fixture(scope="module")
def planted():
    lab = llama_lab()
    for name, seed in (("a", 1), ("b", 2)):  # two strong random adapters: different teachers
        lab.new_adapter(name, r=4, alpha=64, targets="all-linear", init="random", seed=seed)
    return lab


def test_generation_labels_are_the_adapters_greedy_answers(planted):
    task = colour_task()
    by_a, by_b = label(planted, "a", task, INPUTS), label(planted, "b", task, INPUTS)
    assert by_a and all(e.target for e in by_a) and all(e.prompt in {i.prompt for i in INPUTS} for e in by_a)
    assert _score(planted, "a", task, by_a) == 1.0  # exactly what exact_match reads from the teacher
    assert [e.target for e in by_a] != [e.target for e in by_b[:len(by_a)]] or len(by_a) != len(by_b)
    assert _score(planted, "b", task, by_a) < 1.0
    assert label(planted, "a", task, INPUTS) == by_a  # greedy: the same labels again
    assert planted.active.names == set()


def test_choice_labels_are_the_adapters_first_token_choices(planted):
    colours = tuple(sorted(set(FRUITS.values())))
    rows = [Example(f"what colour is the {f}", c, colours) for f, c in FRUITS.items()]
    task = dataclasses.replace(colour_task(), metric="accuracy", train=rows[:6], eval=rows[6:])
    by_a, by_b = label(planted, "a", task, INPUTS), label(planted, "b", task, INPUTS)
    assert all(e.choices == colours and e.target in colours for e in by_a)
    assert _score(planted, "a", task, by_a) == 1.0
    assert [e.target for e in by_a] != [e.target for e in by_b]
    mixed = dataclasses.replace(task, eval=[Example("what colour is the kiwi", "green", ("green", "red"))])
    with pytest.raises(WorkbenchError, match="different choices"):
        label(planted, "a", mixed, INPUTS)
