"""Preference pairs from a task's examples: the correct answer (chosen) against a corrupted one (rejected).

A reward model is trained and scored on such pairs (pairwise accuracy: r(chosen) > r(rejected)).
The corruption keeps the answer plausible, so the pair differs only in being right:

- a choice task: another of the example's choices (a wrong label, a wrong option);
- a whole-number answer: the number moved by a non-zero offset in [−10, 10] (a near miss);
- anything else: the answer of another example of the same task (train or eval split).

Both texts are the full conversation as the model reads it: the chat prompt, the answer, and the
end-of-turn token (the reward is read at that last token).

    pairs = preference_pairs(lab.tokenizer, task, task.eval[:32], seed=0)
    pairs[0].chosen, pairs[0].rejected

Reference: the pairwise (Bradley–Terry) preference data of reward modelling, as in DMoERM (Quan,
arXiv 2403.01197, which labels capability preferences with an LLM API); here built from the real
tasks' labels instead (a workbench construction, not the paper's data).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from workbench.errors import WorkbenchError
from workbench.tasks.base import Example, Task
from workbench.tasks.encoding import chat_prompt

INTEGER = re.compile(r"-?\d+")


@dataclass(frozen=True)
class Pair:
    """One preference pair: ``prompt`` (the chat prompt) and the two full conversations."""

    task: str
    prompt: str
    chosen: str
    rejected: str


def corrupt(example: Example, pool: Sequence[Example], rng: random.Random) -> str:
    """A wrong answer for ``example`` (see the module docstring): never equal to its target."""
    if example.choices is not None:
        return rng.choice([c for c in example.choices if c != example.target])
    if INTEGER.fullmatch(example.target.strip()):
        offset = rng.choice([d for d in range(-10, 11) if d])
        return str(int(example.target) + offset)
    others = sorted({e.target for e in pool} - {example.target})
    if not others:
        raise WorkbenchError("cannot corrupt an answer: every example of the pool has the same target "
                             f"{example.target!r}; give examples with different answers")
    return rng.choice(others)


def preference_pairs(tokenizer, task: Task, examples: Sequence[Example], *, seed: int = 0) -> list[Pair]:
    """One pair per example of ``task``; the corruptions are drawn from ``seed`` (same seed, same pairs)."""
    rng = random.Random(f"{task.name}:pairs:{seed}")
    eos = tokenizer.eos_token
    if eos is None:
        raise WorkbenchError("preference pairs end each answer with the tokenizer's eos token; it has none")
    out, pool = [], [*task.train, *task.eval]
    for ex in examples:
        prompt = chat_prompt(tokenizer, task, ex)
        wrong = corrupt(ex, pool, rng)
        out.append(Pair(task.name, prompt, prompt + ex.target + eos, prompt + wrong + eos))
    return out
