"""Arithmetic: addition and subtraction questions from DeepMind's mathematics_dataset.

Questions come from the real generator, module ``arithmetic__add_or_sub`` at the ``train-easy``
difficulty (e.g. "Calculate 1419 + 2." -> "1421"). The package needs two small shims with
sympy 1.14 and numpy 2. Its generator draws from the global ``random`` and ``np.random``; both
states are saved and restored, so building the task never disturbs the caller's random streams.

Reference: Saxton et al., "Analysing Mathematical Reasoning Abilities of Neural Models", ICLR 2019.
"""

from __future__ import annotations

import functools
import importlib
import random
import sys
from contextlib import contextmanager

import numpy as np

from workbench.errors import MissingPackageError
from workbench.tasks.base import SPLIT_BOUNDS, TASKS, Example, Task, check_sizes

INSTRUCTION = "Answer with the number only."
DIFFICULTIES = {"train-easy": 0, "train-medium": 1, "train-hard": 2}
_MAX_TRIES = 50


def _apply_shims() -> None:
    """Make mathematics_dataset 1.0.1's arithmetic module importable with sympy 1.14.

    It imports ``base_solution_linear`` from ``sympy.solvers.diophantine``, which sympy now keeps
    in the ``diophantine.diophantine`` submodule. (The ``np.object`` shim some other modules need
    is not required by ``arithmetic``, so numpy is left untouched.)
    """
    importlib.import_module("sympy.solvers.diophantine")
    diophantine = sys.modules["sympy.solvers.diophantine"]
    if not hasattr(diophantine, "base_solution_linear"):
        from sympy.solvers.diophantine.diophantine import base_solution_linear

        diophantine.base_solution_linear = base_solution_linear


@functools.cache
def _add_or_sub_module(difficulty: str):
    """The ``add_or_sub`` generator of mathematics_dataset at a train difficulty."""
    _apply_shims()
    try:
        from mathematics_dataset.modules import arithmetic
    except ImportError as err:
        raise MissingPackageError(
            "the arithmetic task needs mathematics_dataset; run "
            "`pip install mathematics-dataset==1.0.1` (with sympy and absl-py)"
        ) from err
    level = DIFFICULTIES[difficulty]

    def entropy_fn(range_):  # generate._make_entropy_fn(level, 3), without importing absl flags
        lo, hi = range_
        return (lo + level / 3 * (hi - lo), lo + (level + 1) / 3 * (hi - lo))

    return arithmetic.train(entropy_fn)["add_or_sub"]


@contextmanager
def _seeded_global_rng(seed: int):
    """Seed ``random`` and ``np.random`` for the block and put both states back afterwards."""
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


@functools.cache
def sample_questions(n: int, seed: int, difficulty: str = "train-easy") -> tuple[tuple[str, str], ...]:
    """``n`` distinct (question, answer) pairs from the generator, deterministic for a seed.

    Cached: the same arguments return the same pairs without generating them again.
    """
    from mathematics_dataset import generate_settings

    module = _add_or_sub_module(difficulty)
    pairs: dict[str, str] = {}
    with _seeded_global_rng(seed):
        for _ in range(n * _MAX_TRIES):
            if len(pairs) == n:
                break
            problem = module()
            question, answer = str(problem.question), str(problem.answer)
            if (
                len(question) <= generate_settings.MAX_QUESTION_LENGTH
                and len(answer) <= generate_settings.MAX_ANSWER_LENGTH
            ):
                pairs.setdefault(question, answer)
    return tuple(pairs.items())


@TASKS.register("arithmetic", bounds=SPLIT_BOUNDS, choices={"difficulty": tuple(DIFFICULTIES)})
def arithmetic(seed: int = 0, n_train: int = 1000, n_eval: int = 64, difficulty: str = "train-easy") -> Task:
    """Addition/subtraction word questions with integer and decimal operands; exact-match answer.

    Args:
        seed: Generator seed; eval is the first ``n_eval`` distinct questions, train the next ones.
        n_train: Number of training questions.
        n_eval: Number of evaluation questions.
        difficulty: ``"train-easy"`` (default), ``"train-medium"`` or ``"train-hard"``.

    Returns:
        The task, metric ``exact_match``.
    """
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {sorted(DIFFICULTIES)}; got {difficulty!r}")
    check_sizes("arithmetic", n_train, n_eval, n_train + n_eval)
    pairs = sample_questions(n_train + n_eval, seed, difficulty)
    check_sizes("arithmetic", n_train, n_eval, len(pairs))
    examples = [Example(f"{q} {INSTRUCTION}", a) for q, a in pairs]
    return Task(
        name="arithmetic",
        description=f"mathematics_dataset arithmetic__add_or_sub ({difficulty}): "
        "add or subtract two integers or decimals; answer the exact number",
        metric="exact_match",
        train=examples[n_eval:],
        eval=examples[:n_eval],
        max_new_tokens=10,
        max_length=64,
    )
