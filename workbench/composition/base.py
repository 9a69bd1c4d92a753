"""What every composition method takes and returns, and the registry they live in.

    request = CompositionRequest(states, mask, [Concept("sneaker-style", tokens=[2], box=(0, 0, 28, 28)),
                                                Concept("bag-style", tokens=[8], box=(28, 0, 56, 28))])
    result = COMPOSERS.get("composer")(**params).sample(model, request, steps=20, seed=0)
    result.images          # (B, 1, 28, 56) in [-1, 1]

A concept is one of the lab's adapters (a concept LoRA on the model), the caption tokens that name it
and its layout box on the canvas. Methods that do not use boxes or tokens (naive sum, switching)
ignore them. ``model`` is the lab's model (``lab.model``: a SceneUNet whose attention projections the
lab has wrapped); the methods switch the lab's adapters per layer themselves and leave each layer's
composition as they found it.

Reference: the composition methods of issue 22 (each method file cites its paper).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from workbench.composition.regions import box_masks
from workbench.errors import WorkbenchError
from workbench.registry import Registry

CANVAS = (28, 56)

FLAGS = {
    "uses_boxes": "reads each concept's layout box",
    "uses_tokens": "reads each concept's caption tokens",
    "latent_update": "updates the latent by gradient steps on an attention loss at test time",
    "fuses_predictions": "runs one UNet pass per concept and fuses their noise predictions by masks",
}


@dataclass(frozen=True)
class Concept:
    """One concept: a lab adapter, its caption token positions and its box ``(x0, y0, x1, y1)`` (pixels,
    exclusive ends) on the canvas."""

    adapter: str
    tokens: Sequence[int] = ()
    box: tuple[int, int, int, int] = (0, 0, CANVAS[1], CANVAS[0])


@dataclass
class CompositionRequest:
    """A caption batch and its concepts (the same layout for every row).

    Attributes:
        states: (B, T, D) caption token states; mask: (B, T) bool, True at real tokens.
        concepts: the concepts to compose (at least one).
        canvas: (H, W) of the images.
    """

    states: torch.Tensor
    mask: torch.Tensor
    concepts: Sequence[Concept]
    canvas: tuple[int, int] = CANVAS

    def __post_init__(self):
        if not self.concepts:
            raise WorkbenchError("a composition needs at least one Concept(adapter, tokens, box)")
        if self.states.shape[:2] != self.mask.shape:
            raise WorkbenchError(f"states {tuple(self.states.shape)} and mask {tuple(self.mask.shape)} "
                                 "disagree on (B, T)")

    @property
    def names(self) -> list[str]:
        return [c.adapter for c in self.concepts]

    @property
    def groups(self) -> list[list[int]]:
        """Each concept's token positions (checked non-empty: methods that read tokens need them)."""
        empty = [c.adapter for c in self.concepts if not len(c.tokens)]
        if empty:
            raise WorkbenchError(f"concepts {empty} name no caption tokens; give Concept(..., tokens=[...]) "
                                 "(CaptionText.token_ids finds them)")
        return [list(c.tokens) for c in self.concepts]

    def boxes(self) -> torch.Tensor:
        """(N, H, W) bool masks of the concepts' boxes."""
        return box_masks([c.box for c in self.concepts], self.canvas)

    def token_mask(self, concept: int) -> torch.Tensor:
        """(B, T) float: 1 at concept ``concept``'s tokens."""
        m = torch.zeros(self.mask.shape)
        m[:, list(self.concepts[concept].tokens)] = 1.0
        return m


@dataclass
class CompositionResult:
    """What a method returns.

    Attributes:
        images: (B, 1, H, W) in [-1, 1].
        masks: None or (N, H, W) float: where each concept acted at the end (boxes, or CLoRA's masks
            of the last step averaged over the batch).
        steps: per-step records (method-specific dicts, e.g. CLoRA's loss and masks), for the views.
    """

    images: torch.Tensor
    masks: torch.Tensor | None = None
    steps: list[dict] = field(default_factory=list)


class Composer:
    """A composition method: several concept LoRAs in one image (subclasses register in ``COMPOSERS``)."""

    def sample(self, model: torch.nn.Module, request: CompositionRequest, *, steps: int = 20,
               seed: int = 0) -> CompositionResult:
        """Sample ``request``'s images with the concepts composed; the same seed gives the same images."""
        raise NotImplementedError


COMPOSERS: Registry[type[Composer]] = Registry("composition method", base=Composer,
                                               package="workbench.composition.methods", flags=FLAGS)
"""name -> Composer subclass; params are its ``__init__`` keywords."""
