"""Composed scenes for the composition lab: two Fashion-MNIST items side by side, a caption naming
both and where, and each item's pixel mask, box and region (``compose``)."""

from workbench.tasks.scenes.compose import (
    CANVAS,
    SceneBatch,
    SceneSet,
    caption_for,
    compose,
    object_spans,
    side_spans,
)

__all__ = ["CANVAS", "SceneBatch", "SceneSet", "caption_for", "compose", "object_spans", "side_spans"]
