"""Examples and tasks that carry an image or a clip beside their text prompt.

A ``MultimodalExample`` is an ``Example`` (prompt, target, choices) plus its ``image`` (H, W) or
``audio`` (N,) and the structured ``answer`` the target text encodes (a count, points, a label), so
metrics compare structures, not strings. A ``MultimodalTask`` is a ``Task`` whose metric is one of
the multimodal metrics (``workbench.tasks.multimodal.metrics``): they ask the model for its answers
with ``model.answer(task, examples)`` (a vision- or speech-language model) and parse them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench.errors import WorkbenchError
from workbench.registry import Registry
from workbench.tasks.base import Example, Task

MODALITIES = ("image", "audio")

MM_TASKS: Registry = Registry("multimodal task")
"""name -> builder(seed=0, n_train=..., n_eval=...) -> MultimodalTask.

Kept apart from ``workbench.tasks.TASKS``: the text-task suite checks invariants every text task
meets (distinct prompts across splits, 64-100 eval examples) that image and speech tasks do not
("What is this?" is every naming prompt; the real speech set has 10 clips).
"""


def load(names: str | list[str], seed: int = 0) -> dict[str, MultimodalTask]:
    """Build multimodal tasks by name with their default sizes (like ``workbench.tasks.load``)."""
    names = [names] if isinstance(names, str) else list(names)
    return {n: MM_TASKS.get(n)(seed=seed) for n in names}


@dataclass(frozen=True, eq=False)
class MultimodalExample(Example):
    """One prompt about one image or clip.

    Attributes:
        image: (H, W) float32 in [0, 1] (grayscale; the vision front end converts it), or None.
        audio: (N,) float32 at 16 kHz in [-1, 1], or None.
        answer: the structured truth: an int count, a list of (x, y) points, a label string.
        meta: free facts about the example (source indices, voice, speed ...), for analysis.
    """

    image: np.ndarray | None = field(default=None, repr=False)
    audio: np.ndarray | None = field(default=None, repr=False)
    answer: Any = None
    meta: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.image is None) == (self.audio is None):
            raise WorkbenchError("a multimodal example carries exactly one of image= or audio=")


@dataclass(repr=False)  # keep Task's short repr
class MultimodalTask(Task):
    """A Task over ``MultimodalExample``s.

    Attributes:
        modality: ``"image"`` or ``"audio"``.
        labels: the class names the answers use (naming and identification tasks), else empty.
    """

    modality: str = "image"
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.modality not in MODALITIES:
            raise WorkbenchError(f"task {self.name!r}: modality must be one of {MODALITIES}; "
                                 f"got {self.modality!r}")
        for split in (self.train, self.eval):
            if any(not isinstance(e, MultimodalExample) for e in split):
                raise WorkbenchError(f"task {self.name!r}: every example must be a MultimodalExample")
