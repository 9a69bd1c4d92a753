"""A tiny lab that reads text (the tiny word-level chat tokenizer) and toy choice tasks in its words,
so the experiments' code paths run end to end on a tiny random Llama."""

from __future__ import annotations

from tests.tasks.helpers import build_tokenizer
from workbench.tasks import Example, Task

FRUITS = ("apple", "banana", "cherry")
PROMPTS = ["which colour is red ?", "what is one plus two ?", "answer A B C or D", "which fruit ?",
           "what is four minus three ?", "which colour is green ?", "answer the letter A", "what is five ?",
           "which fruit is red ?", "you are a helpful assistant", "what is six plus one ?", "answer B",
           "which colour is blue ?", "what is two minus one ?", "the letter C", "which fruit is green ?"]


def text_lab():
    """A Workbench on tiny-llama with the tiny word-level tokenizer (ids < 64)."""
    from workbench import Workbench, zoo

    z = zoo.load("tiny-llama")
    return Workbench(z.model, build_tokenizer(), name="tiny-llama", fingerprint=z.fingerprint)


def toy_task(name: str, offset: int = 0, n_eval: int = 6) -> Task:
    """A 3-way choice task: the target cycles through the fruits (12 train examples, n_eval eval)."""
    examples = [Example(p, FRUITS[(i + offset) % 3], FRUITS) for i, p in enumerate(PROMPTS)]
    return Task(name, f"toy choices {name}", "accuracy", train=examples[n_eval:] + examples[n_eval:],
                eval=examples[:n_eval], max_new_tokens=2, max_length=32)


def toy_tasks(*names: str) -> dict[str, Task]:
    return {n: toy_task(n, offset=i) for i, n in enumerate(names)}
