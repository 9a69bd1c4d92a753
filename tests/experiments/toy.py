"""Toy tasks and a tiny lab with a word-level chat tokenizer: the experiments' code paths, in seconds."""

from __future__ import annotations

from tests.tasks.helpers import build_tokenizer
from workbench.tasks import Example, Task


def toy_lab():
    """tiny-llama with the word-level ChatML tokenizer of the task tests."""
    from workbench import Workbench, zoo

    z = zoo.load("tiny-llama")
    return Workbench(z.model, build_tokenizer(), name="tiny-llama", fingerprint=z.fingerprint)


def toy_tasks() -> dict[str, Task]:
    """Three small tasks the toy tokenizer spells: two choice tasks (accuracy) and a sum (exact match)."""
    colours = ("red", "green", "blue")
    fruits = ("apple", "banana", "cherry")
    colour = [Example(f"which colour is the {f} ?", c, colours) for f, c in
              zip(fruits * 2, ("red", "green", "blue", "red", "blue", "green"), strict=True)]
    fruit = [Example(f"which fruit is {c} ?", f, fruits) for c, f in
             zip(colours * 2, ("apple", "banana", "cherry", "cherry", "apple", "banana"), strict=True)]
    words = ("one", "two", "three", "four", "five", "six")
    sums = [Example(f"what is {words[a]} plus {words[b]} ?", words[a + b + 1])
            for a, b in ((0, 0), (0, 1), (1, 1), (0, 2), (1, 2), (0, 3))]
    return {"colour": Task("colour", "toy colours", "accuracy", colour[:4], colour[4:], max_length=40),
            "fruit": Task("fruit", "toy fruits", "accuracy", fruit[:4], fruit[4:], max_length=40),
            "sum": Task("sum", "toy sums", "exact_match", sums[:4], sums[4:], max_length=40,
                        max_new_tokens=2)}


def toy_base():
    """The toy lab's base for search workers (``Workers(base=toy_base)``): model, tokenizer, fingerprint."""
    from workbench import zoo

    z = zoo.load("tiny-llama")
    return z.model, build_tokenizer(), z.fingerprint


def toy_library(names=("colour", "fruit", "sum")):
    """The toy lab with one rank-4 adapter per name, B drawn so each adapter does something (seeded)."""
    import torch

    lab = toy_lab()
    for i, n in enumerate(names):
        a = lab.new_adapter(n, r=4, targets="attention", seed=i)
        g = torch.Generator().manual_seed(10 + i)
        for f in a.modules.values():
            f.B.data.copy_(torch.randn(f.B.shape, generator=g) * 0.5)
    return lab
