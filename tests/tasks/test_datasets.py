"""Every registered task: deterministic, disjoint, sized as documented, valid choices."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from tests.tasks.helpers import load_or_skip
from workbench.errors import MissingPackageError, WorkbenchError
from workbench.tasks import METRICS, TASKS, Example, Task, load
from workbench.tasks import topic as topic_module

NAMES = TASKS.names()
DEFAULT_SIZES = {  # name: (train, eval)
    "arithmetic": (1000, 64),
    "code": (97, 64),
    "language": (600, 96),
    "qa": (400, 64),
    "topic": (320, 64),
    "trivia": (384, 64),
}


def question_of(task: Task, example: Example) -> str:
    """What must not leak from train to eval: the prompt, or for trivia the question line."""
    return example.prompt.split("\n")[0] if task.name == "trivia" else example.prompt


def test_the_five_required_tasks_are_registered():
    assert {"arithmetic", "topic", "trivia", "code", "language"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_task_is_deterministic_for_a_seed(name):
    a, b = load_or_skip(name), load_or_skip(name)
    assert a.train == b.train and a.eval == b.eval
    c = load_or_skip(name, seed=1)
    assert c.eval != a.eval


@pytest.mark.parametrize("name", NAMES)
def test_train_and_eval_are_disjoint(name):
    task = load_or_skip(name)
    train = {question_of(task, e) for e in task.train}
    assert not train & {question_of(task, e) for e in task.eval}
    assert len(set(task.eval)) == len(task.eval)  # no repeated example


@pytest.mark.parametrize("name", NAMES)
def test_default_sizes_and_fields(name):
    task = load_or_skip(name)
    assert (len(task.train), len(task.eval)) == DEFAULT_SIZES[name]
    assert 64 <= len(task.eval) <= 100
    assert task.name == name and task.metric in METRICS and task.description
    assert task.max_length >= 32 and task.max_new_tokens >= 1
    assert all(isinstance(e, Example) and e.prompt and e.target for e in task.train + task.eval)


@pytest.mark.parametrize("name", NAMES)
def test_choice_targets_are_among_choices(name):
    task = load_or_skip(name)
    if task.metric != "accuracy":
        pytest.skip("not a choice task")
    for e in task.train + task.eval:
        assert e.choices is not None and e.target in e.choices
        assert len(set(e.choices)) == len(e.choices)


@pytest.mark.parametrize("name", ["topic", "language"])
def test_classification_eval_is_balanced(name):
    task = load_or_skip(name)
    counts = Counter(e.target for e in task.eval)
    assert set(counts) == set(task.eval[0].choices)
    assert max(counts.values()) - min(counts.values()) <= 1


@pytest.mark.parametrize("style", ["text", "letter"])
def test_trivia_answer_positions_are_balanced_in_eval(style):
    task = load_or_skip("trivia", style=style)
    counts = Counter(e.choices.index(e.target) for e in task.eval)
    assert sorted(counts) == [0, 1, 2, 3] and max(counts.values()) - min(counts.values()) <= 1


def test_trivia_letter_style_letters_the_options():
    example = load_or_skip("trivia", style="letter").eval[0]
    assert example.choices == ("A", "B", "C", "D")
    assert [line[:3] for line in example.prompt.split("\n")[1:5]] == ["A. ", "B. ", "C. ", "D. "]


def test_trivia_text_style_options_start_with_distinct_characters():
    task = load_or_skip("trivia")
    for e in task.train + task.eval:
        assert len({c[0].casefold() for c in e.choices}) == 4
        assert all(f"- {c}" in e.prompt for c in e.choices)
    with pytest.raises(ValueError, match="style"):
        TASKS.get("trivia")(style="essay")


def test_eval_split_does_not_depend_on_n_train():
    for name, small in [("topic", 40), ("language", 60), ("arithmetic", 10), ("code", 5)]:
        full = load_or_skip(name)
        assert TASKS.get(name)(n_train=small).eval == full.eval
        assert len(TASKS.get(name)(n_train=small).train) == small


def test_arithmetic_leaves_global_random_state_alone():
    random.seed(123)
    np.random.seed(123)
    py_state, np_state = random.getstate(), np.random.get_state()
    TASKS.get("arithmetic")(seed=5, n_train=20, n_eval=8)
    assert random.getstate() == py_state
    after = np.random.get_state()
    assert np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]


def test_arithmetic_is_real_mathematics_dataset_data():
    task = load_or_skip("arithmetic")
    first = task.eval[0]
    assert first.prompt.startswith("Calculate 1419 + 2.") and first.target == "1421"
    for e in task.eval:
        float(e.target)  # every answer is a plain number


def test_load_accepts_a_name_or_a_list():
    assert list(load("topic")) == ["topic"]
    assert list(load(["code", "topic"], seed=3)) == ["code", "topic"]


def test_unknown_task_names_the_choices():
    with pytest.raises(KeyError, match="arithmetic"):
        load("no-such-task")


def test_too_large_split_is_a_clear_error():
    with pytest.raises(WorkbenchError, match="n_train"):
        TASKS.get("code")(n_train=500)
    with pytest.raises(WorkbenchError, match="n_train"):
        TASKS.get("topic")(n_train=5000)


def test_missing_fortunes_says_how_to_install(monkeypatch, tmp_path):
    topic_module.read_fortunes.cache_clear()
    monkeypatch.setattr(topic_module, "FORTUNES_DIR", tmp_path)
    try:
        with pytest.raises(MissingPackageError, match="apt-get install fortunes"):
            TASKS.get("topic")()
    finally:
        topic_module.read_fortunes.cache_clear()


def test_example_and_task_validate_their_input():
    with pytest.raises(WorkbenchError, match="not among its choices"):
        Example("q", "x", ("a", "b"))
    with pytest.raises(WorkbenchError, match="repeat"):
        Example("q", "a", ("a", "a"))
    assert Example("q", "a", ["a", "b"]).choices == ("a", "b")  # lists become tuples
    with pytest.raises(WorkbenchError, match="unknown metric"):
        Task("t", "d", "f1", [], [])
    with pytest.raises(WorkbenchError, match="choices"):
        Task("t", "d", "accuracy", [], [Example("q", "a")])
    assert "train=0" in repr(Task("t", "d", "loss", [], [Example("q", "a")]))
