"""QA: reply like the chatterbot-corpus bot to short English chit-chat; scored by reply loss.

Pairs are (first turn, second turn) of the English corpus files except ``trivia`` (its own task)
and ``coding`` (long code listings), de-duplicated (``tech_support`` repeats 10 pairs 105 times).
A prompt can have several replies (``tell me a joke``); train and eval never share a prompt.

Reference: Cox, chatterbot-corpus (github.com/gunthercox/chatterbot-corpus), the dialog corpus of the
ChatterBot library, as installed by the ``chatterbot-corpus`` package.
"""

from __future__ import annotations

import random

from workbench.errors import WorkbenchError
from workbench.tasks.base import SPLIT_BOUNDS, TASKS, Example, Task, check_sizes
from workbench.tasks.chatterbot import pairs, topics

EXCLUDED = ("coding", "trivia")


def replies() -> dict[str, list[str]]:
    """Prompt -> its distinct replies, over the English topic files (sorted for determinism)."""
    out: dict[str, list[str]] = {}
    for topic in topics("english"):
        if topic in EXCLUDED:
            continue
        for q, a in pairs("english", topic):
            if q and a and a not in out.setdefault(q, []):
                out[q].append(a)
    return dict(sorted(out.items()))


@TASKS.register("qa", bounds=SPLIT_BOUNDS)
def qa(seed: int = 0, n_train: int = 400, n_eval: int = 64) -> Task:
    """Chit-chat replies in the chatterbot persona; metric ``loss`` of the reference reply.

    Args:
        seed: Split seed.
        n_train: Training pairs.
        n_eval: Evaluation pairs (their prompts never occur in train).

    Returns:
        The task, metric ``loss``.
    """
    groups = list(replies().items())
    check_sizes("qa", n_train, n_eval, sum(len(r) for _, r in groups))
    rng = random.Random(f"qa:{seed}")
    rng.shuffle(groups)
    eval_: list[Example] = []
    train: list[Example] = []
    for prompt, answers in groups:
        split = eval_ if len(eval_) < n_eval else train
        split += [Example(prompt, a) for a in answers]
    if len(train) < n_train:  # a prompt's replies that overflow eval are not reused in train
        raise WorkbenchError(
            f"task 'qa' has {len(train)} train pairs left after an eval split of {n_eval}; "
            f"ask for n_train <= {len(train)}"
        )
    eval_, train = eval_[:n_eval], train[:n_train]
    rng.shuffle(eval_)  # replies of one prompt were added together
    rng.shuffle(train)
    return Task(
        name="qa",
        description="chatterbot-corpus English chit-chat (all topics but trivia and coding): "
        "prompt -> the bot's reply (mean NLL of the reply)",
        metric="loss",
        train=train,
        eval=eval_,
        max_new_tokens=48,
        max_length=128,
    )
