"""Metric and the METRICS registry (the metrics themselves register in ``metrics.py``).

Apart from them so that ``Task`` can check its metric name at construction without an import cycle
(the metrics read tasks; a task names a metric).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from workbench.registry import Param, Registry


@dataclass(frozen=True)
class Metric:
    """A named score of a model on examples.

    Attributes:
        name: Registry name.
        higher_is_better: True for accuracy-like scores, False for losses.
        fn: ``fn(model, tokenizer, task, examples, *, batch_size=16) -> float``.
    """

    name: str
    higher_is_better: bool
    fn: Callable[..., float]

    def __call__(self, model, tokenizer, task, examples=None, *, batch_size: int = 16):
        """Score ``examples`` (default: ``task.eval``) of ``task`` (a ``workbench.tasks.Task``)."""
        examples = task.eval if examples is None else examples
        return self.fn(model, tokenizer, task, examples, batch_size=batch_size)


METRICS: Registry[Metric] = Registry("metric", base=Metric, flags={
    "needs_choices": "every example must carry choices (the target among them)",
    "generates": "decodes an answer (``task.max_new_tokens``) instead of scoring the target",
    "multimodal": "asks a multimodal model for its answers (``model.answer(task, examples)``)",
})
"""name -> Metric; its summary and parameters are read from its ``fn``."""

BATCH_SIZE = Param("batch_size", 16, "examples per forward pass (or generation batch)", low=1)
