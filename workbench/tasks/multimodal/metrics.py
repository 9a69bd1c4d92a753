"""Parsers of structured answers and the metrics of Point-Detect-Count-style instructions.

Parsers turn a model's text into a structure (``None`` when nothing parses); the score functions are
pure (predicted texts, examples) -> float, tested on hand-made cases. Each is also registered in the
tasks' ``METRICS`` registry, where its ``fn(model, tokenizer, task, examples)`` asks a multimodal
model for its answers (``model.answer(task, examples) -> list[str]``) and scores them.

    label_accuracy   share of answers whose parsed label equals the truth
    count_mae        mean |parsed count − true count|; an unparsable answer counts as 0 items
    word_error_rate  mean word-level edit distance / reference words (``zoo.whisper.word_error_rate``)
    point_match      mean over examples of matched / max(#true, #predicted) points, with a greedy
                     one-to-one matching of points closer than ``RADIUS`` pixels (1 when both empty)

Reference: "Point, Detect, Count" (arXiv 2505.16647): detection, pointing and counting as
instructions with structured text outputs, scored by count MAE and point-matching accuracy. The
matching rule and radius here are this project's reconstruction (the paper's exact rule was not read).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from workbench.errors import WorkbenchError
from workbench.tasks.metric import BATCH_SIZE, METRICS, Metric
from workbench.zoo.whisper import word_error_rate

RADIUS = 16.0  # pixels: half a scene cell (scenes are 96 px, 3×3 cells of 32 px)
NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve".split())}
NUMBER_WORDS |= {"no": 0, "none": 0}


def parse_count(text: str) -> int | None:
    """The first count in ``text``: digits (``"3"``) or a number word (``"three"``, ``"none"``)."""
    for token in re.findall(r"[a-z]+|\d+", text.lower()):
        if token.isdigit():
            return int(token)
        if token in NUMBER_WORDS:
            return NUMBER_WORDS[token]
    return None


def parse_points(text: str) -> list[tuple[float, float]]:
    """Every ``(x, y)`` pair in ``text`` (numbers may be decimals); ``[]`` for "none" or nothing."""
    pairs = re.findall(r"\(\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*\)", text)
    return [(float(x), float(y)) for x, y in pairs]


def parse_label(text: str, labels: Sequence[str]) -> str | None:
    """The label that ``text`` names, the longest one first ("ankle boot" before "boot"), else None."""
    low = " " + re.sub(r"[^a-z0-9 -]+", " ", text.lower()) + " "
    for label in sorted(labels, key=len, reverse=True):
        if f" {label.lower()} " in low:
            return label
    return None


def match_points(predicted: Sequence[tuple[float, float]], truth: Sequence[tuple[float, float]],
                 radius: float = RADIUS) -> int:
    """Number of pairs in a greedy one-to-one matching (closest pairs first) within ``radius``."""
    pairs = sorted((math.dist(p, t), i, j) for i, p in enumerate(predicted) for j, t in enumerate(truth))
    used_p, used_t, matched = set(), set(), 0
    for d, i, j in pairs:
        if d <= radius and i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
            matched += 1
    return matched


def _check(predictions: Sequence[str], examples: Sequence) -> None:
    if len(predictions) != len(examples):
        raise WorkbenchError(f"{len(predictions)} predictions for {len(examples)} examples; give one each")
    if not examples:
        raise WorkbenchError("no examples to score")


def label_accuracy(predictions: Sequence[str], examples: Sequence, labels: Sequence[str]) -> float:
    """Share of predictions whose parsed label equals ``example.answer``."""
    _check(predictions, examples)
    return sum(parse_label(p, labels) == e.answer for p, e in zip(predictions, examples, strict=True)) \
        / len(examples)


def count_mae(predictions: Sequence[str], examples: Sequence) -> float:
    """Mean absolute count error; an answer without a count is read as 0."""
    _check(predictions, examples)
    pairs = zip(predictions, examples, strict=True)
    return sum(abs((parse_count(p) or 0) - int(e.answer)) for p, e in pairs) / len(examples)


def point_match(predictions: Sequence[str], examples: Sequence, radius: float = RADIUS) -> float:
    """Mean of matched / max(#true, #predicted) per example (1 when both are empty)."""
    _check(predictions, examples)
    total = 0.0
    for p, e in zip(predictions, examples, strict=True):
        pred, truth = parse_points(p), list(e.answer)
        denominator = max(len(pred), len(truth))
        total += 1.0 if denominator == 0 else match_points(pred, truth, radius) / denominator
    return total / len(examples)


def zero_point_rate(predictions: Sequence[str], examples: Sequence) -> float:
    """Share of examples with true points where the answer gives none (the paper's failure mode)."""
    _check(predictions, examples)
    having = [(p, e) for p, e in zip(predictions, examples, strict=True) if e.answer]
    return sum(not parse_points(p) for p, _ in having) / max(1, len(having))


def mean_word_error_rate(predictions: Sequence[str], examples: Sequence) -> float:
    """Mean word error rate of the predictions against each example's target words."""
    _check(predictions, examples)
    pairs = zip(predictions, examples, strict=True)
    return sum(word_error_rate(e.target, p) for p, e in pairs) / len(examples)


def _answers(model, task, examples) -> list[str]:
    if not hasattr(model, "answer"):
        raise WorkbenchError(
            f"task {task.name!r} needs a multimodal model with .answer(task, examples) (a "
            f"workbench.multimodal model); got {type(model).__name__}"
        )
    return list(model.answer(task, list(examples)))


PDC = "Point, Detect, Count (arXiv 2505.16647): structured answers scored by count MAE and point matching"


def _register(name: str, higher_is_better: bool, score, pure, reference: str = PDC) -> None:
    def fn(model, tokenizer, task, examples, *, batch_size=16):
        return score(_answers(model, task, examples), examples, task)

    fn.__doc__ = pure.__doc__
    METRICS.register(name, source=fn, reference=reference, params=[BATCH_SIZE],
                     flags=("generates", "multimodal"))(Metric(name, higher_is_better, fn))


_register("label_accuracy", True, lambda p, e, task: label_accuracy(p, e, task.labels), label_accuracy)
_register("count_mae", False, lambda p, e, task: count_mae(p, e), count_mae)
_register("point_match", True, lambda p, e, task: point_match(p, e), point_match)
_register("word_error_rate", False, lambda p, e, task: mean_word_error_rate(p, e), mean_word_error_rate,
          reference="word error rate: word-level Levenshtein distance / reference words (e.g. "
                    "Radford et al., "
                    "Robust Speech Recognition via Large-Scale Weak Supervision, Whisper, 2022)")
