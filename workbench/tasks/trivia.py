"""Trivia: four-way multiple choice built from chatterbot-corpus's English trivia questions.

Each question keeps its real answer and gets three distractors drawn (seeded) at random from
other questions' answers. Two styles:

- ``"letter"``: options lettered A-D, the target is the letter, so the choices' first tokens are
  distinct for any tokenizer. Small models score near chance on this format (mapping an answer to
  its letter is a skill of larger models).
- ``"text"``: the options are listed and the target is the answer text itself ("cloze" style, as
  SmolLM2's own evaluations use for small models). Distractors are picked so all four options
  start with different ASCII letters or digits, which makes their first tokens distinct for any
  tokenizer whose tokens are pieces of the text (byte-level BPE, WordPiece).

Eval questions are disjoint from train questions and the correct position cycles through the four
slots over the eval set, so always answering one position scores 25%.

Reference: Cox, chatterbot-corpus (github.com/gunthercox/chatterbot-corpus), the dialog corpus of the
ChatterBot library, as installed by the ``chatterbot-corpus`` package.
"""

from __future__ import annotations

import random

from workbench.errors import WorkbenchError
from workbench.tasks.base import SPLIT_BOUNDS, TASKS, Example, Task, check_sizes
from workbench.tasks.chatterbot import pairs

LETTERS = ("A", "B", "C", "D")
STYLES = ("letter", "text")


def _key(answer: str) -> str:
    return answer.lower().strip(" .!")


def questions() -> list[tuple[str, str]]:
    """Distinct (question, answer) pairs of ``english/trivia.yml``, in file order."""
    seen: dict[str, str] = {}
    for q, a in pairs("english", "trivia"):
        if q and a and q not in seen:
            seen[q] = a
    return list(seen.items())


def _distractors(answer: str, pool: list[str], rng: random.Random, style: str) -> list[str]:
    """Three distinct wrong answers; in text style each starts with a character no other option has."""
    chosen: list[str] = []
    candidates = list(pool)
    rng.shuffle(candidates)
    for a in candidates:
        options = [answer, *chosen]
        if _key(a) in {_key(o) for o in options}:
            continue
        if style == "text" and a[0].casefold() in {o[0].casefold() for o in options}:
            continue
        chosen.append(a)
        if len(chosen) == 3:
            return chosen
    raise AssertionError(f"not enough distractors for {answer!r}")  # 260 answers: unreachable


def _example(question: str, answer: str, pool: list[str], slot: int, rng: random.Random, style: str):
    """One question with ``answer`` at position ``slot`` among 3 distractors."""
    distractors = _distractors(answer, pool, rng, style)
    options = distractors[:slot] + [answer] + distractors[slot:]
    if style == "letter":
        lines = "\n".join(f"{L}. {o}" for L, o in zip(LETTERS, options, strict=True))
        prompt = f"{question}\n{lines}\nAnswer with the letter of the correct option."
        return Example(prompt, LETTERS[slot], LETTERS)
    lines = "\n".join(f"- {o}" for o in options)
    prompt = f"{question}\nOptions:\n{lines}\nAnswer with the correct option."
    return Example(prompt, answer, tuple(options))


@TASKS.register("trivia", bounds=SPLIT_BOUNDS, choices={"style": STYLES})
def trivia(seed: int = 0, n_train: int = 384, n_eval: int = 64, style: str = "text") -> Task:
    """Four-way trivia questions; first-token accuracy on the answer (or its letter).

    Args:
        seed: Split, distractor and option-order seed.
        n_train: Training examples. There are fewer train questions than that, so each train
            question appears up to 3 times, each time with other distractors and order.
        n_eval: Evaluation questions (each once).
        style: ``"text"`` (answer with the option text) or ``"letter"`` (answer A-D).

    Returns:
        The task, metric ``accuracy``.
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}; got {style!r}")
    qa = questions()
    check_sizes("trivia", 0, n_eval, len(qa) - 1)
    rng = random.Random(f"trivia:{seed}")
    rng.shuffle(qa)
    eval_qa, train_qa = qa[:n_eval], qa[n_eval:]
    if n_train > 3 * len(train_qa):
        raise WorkbenchError(
            f"task 'trivia' shows each of its {len(train_qa)} train questions at most 3 times; "
            f"ask for n_train <= {3 * len(train_qa)} (or a smaller n_eval)"
        )
    answers = list(dict.fromkeys(a for _, a in qa))
    eval_ = [
        _example(q, a, [x for x in answers if x != a], i % len(LETTERS), rng, style)
        for i, (q, a) in enumerate(eval_qa)
    ]
    train = []
    while len(train) < n_train:
        for q, a in rng.sample(train_qa, len(train_qa)):
            if len(train) == n_train:
                break
            pool = [x for x in answers if x != a]
            train.append(_example(q, a, pool, rng.randrange(len(LETTERS)), rng, style))
    what = "the option text" if style == "text" else "the letter"
    return Task(
        name="trivia",
        description=f"chatterbot-corpus English trivia as 4-way multiple choice ({style} style; "
        f"distractors are other questions' answers); answer {what}",
        metric="accuracy",
        train=train,
        eval=eval_,
        max_new_tokens=16 if style == "text" else 2,
        max_length=128,
    )
