"""A tiny lab and two toy tasks for the merge builder's tests (model and view)."""

from __future__ import annotations

import copy

from tests.tasks.helpers import build_tokenizer
from workbench import Workbench, zoo
from workbench.tasks import Example, Task

FRUIT = ("apple", "banana", "cherry")


def tiny_merge_lab() -> Workbench:
    """A tiny llama with a word-level chat tokenizer and three random adapters (a: toy_a, b: toy_b)."""
    z = zoo.load("tiny-llama")
    lab = Workbench(copy.deepcopy(z.model), build_tokenizer(), name="tiny-llama", fingerprint=z.fingerprint)
    for seed, (name, task) in enumerate([("a", "toy_a"), ("b", "toy_b"), ("c", None)]):
        adapter = lab.new_adapter(name, r=2, init="random", seed=seed, targets="attention")
        adapter.lineage["tasks"] = [task] if task else []
    return lab


def toy_tasks() -> dict[str, Task]:
    pick = Task("toy_a", "pick a fruit", "accuracy", train=[], eval=[
        Example("which fruit is red ?", "apple", FRUIT), Example("what fruit", "banana", FRUIT),
        Example("answer the letter A", "cherry", FRUIT), Example("which colour", "apple", FRUIT)])
    count = Task("toy_b", "count", "loss", train=[], eval=[
        Example("what is one plus two ?", "three"), Example("what is two plus two ?", "four"),
        Example("what is one plus four ?", "five"), Example("what is three plus three ?", "six")])
    return {"toy_a": pick, "toy_b": count}


def sources(lab, names=("a", "b", "c")):
    return [lab.adapters[n] for n in names]
