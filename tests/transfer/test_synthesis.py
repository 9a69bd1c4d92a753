"""Synthesis: deterministic for a seed, well-formed Examples (new, distinct, non-empty inputs), the base
model only, in each lab's own prompt format (ChatML and Gemma's completion template)."""

from __future__ import annotations

import pytest
import torch

from tests.transfer.helpers import colour_task, gemma_lab, llama_lab
from workbench.errors import WorkbenchError
from workbench.tasks import Example
from workbench.transfer import few_shot_prompt, synthesize
from workbench.transfer.synthesis import clean, normalized


@pytest.mark.parametrize("make", [llama_lab, gemma_lab], ids=["llama-chatml", "gemma3-completion"])
def test_synthesis_is_deterministic_for_a_seed_and_well_formed(make):
    lab, task = make(), colour_task()
    seeds = task.train[:5]
    state = torch.random.get_rng_state()
    a = synthesize(lab, task, seeds, 6, seed=0, max_new_tokens=6)
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's random state is untouched
    assert synthesize(lab, task, seeds, 6, seed=0, max_new_tokens=6) == a
    assert synthesize(lab, task, seeds, 6, seed=1, max_new_tokens=6) != a
    assert 0 < len(a) <= 6
    assert all(isinstance(e, Example) and e.prompt.strip() and e.target == "" for e in a)
    keys = [normalized(e.prompt) for e in a]
    assert len(set(keys)) == len(keys)  # deduplicated
    assert not set(keys) & {normalized(e.prompt) for e in seeds}  # never a seed
    assert all("\n" not in e.prompt for e in a)  # one-line seeds give one-line inputs


def test_synthesis_uses_the_base_model_and_restores_what_the_lab_used():
    lab, task = llama_lab(), colour_task()
    base = synthesize(lab, task, task.train[:5], 4, seed=3, max_new_tokens=6)
    lab.new_adapter("big", r=4, targets="all-linear", init="random", seed=0)
    lab.use("big")
    assert synthesize(lab, task, task.train[:5], 4, seed=3, max_new_tokens=6) == base
    assert lab.active.names == {"big"}


def test_prompt_and_cleaning():
    text = few_shot_prompt(colour_task(), ["what colour is the apple", "what colour is the lime"])
    assert "Example 1: what colour is the apple\nExample 2: what colour is the lime" in text
    assert "fruit colour" in text
    assert clean("  Example 3: what colour is the kiwi\nmore", one_line=True) == "what colour is the kiwi"
    assert clean("a\nb", one_line=False) == "a\nb"


def test_bad_arguments_are_refused():
    lab, task = llama_lab(), colour_task()
    with pytest.raises(WorkbenchError, match="seed examples"):
        synthesize(lab, task, [Example(" ", "x")], 3)
    with pytest.raises(WorkbenchError, match="n=0"):
        synthesize(lab, task, task.train, 0)
