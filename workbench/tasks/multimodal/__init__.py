"""Multimodal tasks: real images (naming, counting, pointing, "which") and speech, with their metrics.

Importing this package registers its tasks in ``MM_TASKS`` (``load("fashion-naming")``) and its
metrics (``label_accuracy``, ``count_mae``, ``point_match``, ``word_error_rate``) in
``workbench.tasks.METRICS``.
"""

from workbench.tasks.multimodal import speech, vision  # noqa: F401  (register the tasks)
from workbench.tasks.multimodal.base import MM_TASKS, MultimodalExample, MultimodalTask, load
from workbench.tasks.multimodal.images import SOURCES
from workbench.tasks.multimodal.metrics import (
    count_mae,
    label_accuracy,
    parse_count,
    parse_label,
    parse_points,
    point_match,
    zero_point_rate,
)

__all__ = [
    "MM_TASKS",
    "SOURCES",
    "MultimodalExample",
    "MultimodalTask",
    "count_mae",
    "label_accuracy",
    "load",
    "parse_count",
    "parse_label",
    "parse_points",
    "point_match",
    "zero_point_rate",
]
