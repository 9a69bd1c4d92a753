"""Language: which of six European languages a chatterbot-corpus sentence is written in.

Sentences are the conversation turns of ``chatterbot_corpus/data/<language>/*.yml``; a sentence
found in more than one language folder (untranslated English, names, emoji) is dropped, and only
15-200 character sentences are kept. The choices are the English language names, whose first
tokens are distinct for SmolLM2's tokenizer (``Portuguese`` starts with ``Port``).

Reference: Cox, chatterbot-corpus (github.com/gunthercox/chatterbot-corpus), the dialog corpus of the
ChatterBot library, as installed by the ``chatterbot-corpus`` package.
"""

from __future__ import annotations

from collections import Counter

from workbench.tasks.base import SPLIT_BOUNDS, TASKS, Example, Task, balanced_split
from workbench.tasks.chatterbot import lines

LANGUAGES = {
    "dutch": "Dutch",
    "english": "English",
    "german": "German",
    "italian": "Italian",
    "portuguese": "Portuguese",
    "spanish": "Spanish",
}
MIN_CHARS, MAX_CHARS = 15, 200


def sentences() -> dict[str, list[str]]:
    """Language label -> sorted sentences that occur in that language folder only."""
    per_folder = {folder: lines(folder) for folder in LANGUAGES}
    counts = Counter(s for ss in per_folder.values() for s in ss)
    return {
        label: sorted(
            s
            for s in per_folder[folder]
            if counts[s] == 1 and MIN_CHARS <= len(s) <= MAX_CHARS and any(c.isalpha() for c in s)
        )
        for folder, label in LANGUAGES.items()
    }


@TASKS.register("language", bounds=SPLIT_BOUNDS)
def language(seed: int = 0, n_train: int = 600, n_eval: int = 96) -> Task:
    """Six-way language identification of short sentences; first-token accuracy.

    Args:
        seed: Split seed.
        n_train: Training sentences, balanced over languages (German has 184, the fewest).
        n_eval: Evaluation sentences, balanced over languages.

    Returns:
        The task, metric ``accuracy``.
    """
    labels = tuple(sorted(LANGUAGES.values()))
    question = (
        f"Which language is this text in: {', '.join(labels[:-1])} or {labels[-1]}?"
        " Answer with the language only.\n\n"
    )
    groups = {
        label: [Example(question + s, label, labels) for s in texts] for label, texts in sentences().items()
    }
    train, eval_ = balanced_split(groups, n_train, n_eval, seed, "language")
    return Task(
        name="language",
        description="chatterbot-corpus sentences in Dutch, English, German, Italian, Portuguese "
        "or Spanish; answer the language",
        metric="accuracy",
        train=train,
        eval=eval_,
        max_new_tokens=4,
        max_length=128,
    )
