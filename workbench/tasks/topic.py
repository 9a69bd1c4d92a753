"""Topic: which of four topics a quotation from the Debian ``fortunes`` collection is about.

The fortune files ``/usr/share/games/fortunes/<topic>`` hold quotations separated by ``\\n%\\n``.
Four neutral topics are used, short quotes only, balanced per topic. The choices are the capitalized
topic names, whose first tokens are distinct for SmolLM2's tokenizer (``Comput``, ``Food``,
``Sports``, ``Science``).

Reference: the ``fortunes`` databases of BSD fortune(6), as packaged by Debian (``fortunes``).
"""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path

from workbench.errors import MissingPackageError
from workbench.tasks.base import SPLIT_BOUNDS, TASKS, Example, Task, balanced_split

FORTUNES_DIR = Path("/usr/share/games/fortunes")
TOPICS = {"computers": "Computers", "food": "Food", "sports": "Sports", "science": "Science"}
MAX_CHARS = 300


def fortunes_dir() -> Path:
    """The Debian fortunes directory, or a clear error saying how to install it."""
    if not (FORTUNES_DIR / "computers").is_file():
        raise MissingPackageError(
            f"the topic task reads Debian's fortunes files, but {FORTUNES_DIR}/computers is "
            "missing; run `sudo apt-get install fortunes`"
        )
    return FORTUNES_DIR


@functools.cache
def read_fortunes(topic: str, max_chars: int = MAX_CHARS) -> tuple[str, ...]:
    """The distinct quotations of one fortunes topic file that are at most ``max_chars`` long."""
    path = fortunes_dir() / topic
    if not path.is_file():
        raise MissingPackageError(
            f"fortunes topic file {path} is missing; run `sudo apt-get install fortunes`"
        )
    text = path.read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n")
    quotes = dict.fromkeys(r.strip() for r in text.split("\n%\n"))
    return tuple(q for q in quotes if q and len(q) <= max_chars)


@TASKS.register("topic", bounds=SPLIT_BOUNDS)
def topic(seed: int = 0, n_train: int = 320, n_eval: int = 64) -> Task:
    """Four-way topic classification of short quotations; first-token accuracy.

    Args:
        seed: Split seed.
        n_train: Training quotes (balanced over topics; at most 104 per topic exist).
        n_eval: Evaluation quotes (balanced over topics).

    Returns:
        The task, metric ``accuracy``.
    """
    labels = tuple(TOPICS.values())
    question = (
        f"Which topic is this quote about: {', '.join(labels[:-1])} or {labels[-1]}?"
        " Answer with the topic only.\n\n"
    )
    quotes = {name: read_fortunes(name) for name in TOPICS}
    seen = Counter(q for qs in quotes.values() for q in qs)  # a quote filed under two topics
    groups = {
        label: [Example(question + q, label, labels) for q in quotes[name] if seen[q] == 1]
        for name, label in TOPICS.items()
    }
    train, eval_ = balanced_split(groups, n_train, n_eval, seed, "topic")
    return Task(
        name="topic",
        description="Debian fortunes quotes (<= 300 chars) about computers, food, sports or "
        "science; answer the topic",
        metric="accuracy",
        train=train,
        eval=eval_,
        max_new_tokens=4,
        max_length=160,
    )
