"""Real task datasets with seeded train/eval splits, the chat encoding, and a metric per task.

Example:
    >>> from workbench import tasks
    >>> t = tasks.load("topic")["topic"]
    >>> t.metric, len(t.train), len(t.eval)
    ('accuracy', 320, 64)
    >>> score = tasks.METRICS.get(t.metric).fn(model, tokenizer, t, t.eval)  # doctest: +SKIP

Tasks: arithmetic (exact_match); topic, trivia, language (accuracy); code, qa (loss).
Builders take ``seed``, ``n_train``, ``n_eval`` (and a few take more, e.g.
``TASKS.get("trivia")(style="letter")``); ``Task.max_length`` is each task's token budget.
"""

from workbench.tasks import arithmetic, code, language, multimodal, qa, topic, trivia  # noqa: F401 (register)
from workbench.tasks.base import DEFAULT_SYSTEM, TASKS, Example, Task, load
from workbench.tasks.encoding import chat_prompt, collate, encode_for_training
from workbench.tasks.metric import METRICS, Metric

__all__ = [
    "DEFAULT_SYSTEM",
    "Example",
    "METRICS",
    "Metric",
    "TASKS",
    "Task",
    "chat_prompt",
    "collate",
    "encode_for_training",
    "load",
]
