"""Two Fashion-MNIST items side by side on a 28×56 canvas, with a caption that names both and where.

    scenes = SceneSet("train", n=60_000, seed=0)
    batch = scenes.batch([0, 1, 2])        # images (3, 1, 28, 56) in [-1, 1], captions, masks, boxes

Each scene puts item ``left`` in columns 0..27 and item ``right`` in columns 28..55 (two different
classes). The caption names both items with their side, in a random phrase order so that the side
words, not the token position, say where each item goes: "a sneaker on the left and a bag on the
right" or "a bag on the right and a sneaker on the left". What later slices need is kept per item:
its pixel mask (pixels above ``MASK_THRESHOLD``, what MuraNet's segmentation learns), its box (the
mask's bounding box, for detection and the layout boxes of LoRA-Composer) and its region (its half of
the canvas: the localisation score measures cross-attention mass inside it).

Reference: Xiao et al., "Fashion-MNIST", arXiv 1708.07747, 2017 (the items). The scene layout is
this project's (issue 22): a two-object stand-in for the multi-concept images of LoRA-Composer and CLoRA.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from workbench.errors import WorkbenchError
from workbench.tasks.multimodal.images import FASHION_NAMES, fashion_mnist

CANVAS = (28, 56)  # (H, W)
ITEM = 28
MASK_THRESHOLD = 0.1  # an item's pixel belongs to its mask above this intensity (items are white on black)
SIDES = ("left", "right")


def caption_for(left: str, right: str, right_first: bool = False) -> str:
    """The caption of a scene: both items and their sides, in either phrase order."""
    a, b = f"a {left} on the left", f"a {right} on the right"
    return f"{b} and {a}" if right_first else f"{a} and {b}"


def object_spans(caption: str, names: tuple[str, str]) -> list[tuple[int, int]]:
    """Character span ``(start, end)`` in ``caption`` of each item name (left item first).

    The names are found as the words after "a " and before " on the left" / " on the right", so
    "shirt" is not found inside "t-shirt".

    Raises:
        WorkbenchError: when a name is not in the caption at its side.
    """
    spans = []
    for name, side in zip(names, SIDES, strict=True):
        phrase = f"a {name} on the {side}"
        at = caption.find(phrase)
        if at < 0:
            raise WorkbenchError(f"caption {caption!r} does not say {phrase!r}; build it with caption_for()")
        spans.append((at + 2, at + 2 + len(name)))
    return spans


def side_spans(caption: str) -> list[tuple[int, int]]:
    """Character span of the words "left" and "right" in a scene caption (left first).

    Raises:
        WorkbenchError: when a side word is missing.
    """
    spans = []
    for side in SIDES:
        at = caption.find(f" on the {side}")
        if at < 0:
            raise WorkbenchError(f"caption {caption!r} does not say 'on the {side}'; "
                                 "build it with caption_for()")
        start = at + len(" on the ")
        spans.append((start, start + len(side)))
    return spans


def compose(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Place two 28×28 items side by side.

    Args:
        left, right: (28, 28) float images in [0, 1].

    Returns:
        image (28, 56) in [0, 1]; masks (2, 28, 56) bool (pixels of each item); boxes (2, 4) int
        ``(x0, y0, x1, y1)``, exclusive ends, of each mask (a full cell when an item is empty);
        regions (2, 28, 56) bool (each item's half).
    """
    H, W = CANVAS
    image = np.zeros((H, W), np.float32)
    masks = np.zeros((2, H, W), bool)
    regions = np.zeros((2, H, W), bool)
    boxes = np.zeros((2, 4), np.int64)
    for k, item in enumerate((left, right)):
        if item.shape != (ITEM, ITEM):
            raise WorkbenchError(f"compose takes 28×28 items; item {k} has shape {item.shape}")
        x = k * ITEM
        image[:, x:x + ITEM] = item
        masks[k, :, x:x + ITEM] = item > MASK_THRESHOLD
        regions[k, :, x:x + ITEM] = True
        ys, xs = np.nonzero(masks[k])
        boxes[k] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) if len(xs) else (x, 0, x + ITEM, H)
    return image, masks, regions, boxes


@dataclass
class SceneBatch:
    """A batch of scenes.

    Attributes:
        images: (B, 1, 28, 56) float32 in [-1, 1] (what the diffusion model learns).
        labels: (B, 2) int64, the class of the left and the right item.
        captions: B strings; caption_ids: (B,) index into ``SceneSet.captions``.
        masks, regions: (B, 2, 28, 56) bool; boxes: (B, 2, 4) int64 (x0, y0, x1, y1).
    """

    images: torch.Tensor
    labels: torch.Tensor
    captions: list[str]
    caption_ids: torch.Tensor
    masks: torch.Tensor
    regions: torch.Tensor
    boxes: torch.Tensor


class SceneSet:
    """A fixed, seeded list of scenes over one Fashion-MNIST split.

    Args:
        split: ``"train"`` (60k items) or ``"test"`` (10k).
        n: how many scenes.
        seed: draws the items, their classes (always two different ones) and the phrase order.
        items: optional ``(images (N, 28, 28) in [0, 1], labels (N,))`` instead of the split (tests).

    Attributes:
        captions: every caption the set can produce, in a fixed order (the same for every split and
            seed): 90 class pairs × 2 phrase orders; ``caption_index[caption]`` is its position.
    """

    names = FASHION_NAMES

    def __init__(self, split: str = "train", n: int = 10_000, seed: int = 0,
                 items: tuple[np.ndarray, np.ndarray] | None = None):
        images, labels = items if items is not None else fashion_mnist(split)[:2]
        self.items, self.item_labels = images, labels
        rng = np.random.default_rng(seed)
        by_class = [np.flatnonzero(labels == c) for c in range(len(self.names))]
        present = [c for c in range(len(self.names)) if len(by_class[c])]
        if len(present) < 2:
            raise WorkbenchError("SceneSet needs items of at least two classes")
        pairs = np.array([rng.choice(present, 2, replace=False) for _ in range(n)])  # (n, 2)
        self.labels = pairs
        self.item_ids = np.stack([[rng.choice(by_class[c]) for c in row] for row in pairs])  # (n, 2)
        self.right_first = rng.random(n) < 0.5
        self.captions = [caption_for(self.names[a], self.names[b], r)
                         for r in (False, True) for a in range(10) for b in range(10) if a != b]
        self.caption_index = {c: i for i, c in enumerate(self.captions)}

    def __len__(self) -> int:
        return len(self.labels)

    def caption(self, i: int) -> str:
        """The caption of scene ``i``."""
        a, b = self.labels[i]
        return caption_for(self.names[a], self.names[b], bool(self.right_first[i]))

    def batch(self, ids) -> SceneBatch:
        """Compose scenes ``ids`` (any sequence of ints) into one batch."""
        parts = [compose(self.items[self.item_ids[i, 0]], self.items[self.item_ids[i, 1]]) for i in ids]
        captions = [self.caption(i) for i in ids]
        return SceneBatch(
            images=torch.from_numpy(np.stack([p[0] for p in parts]))[:, None] * 2 - 1,
            labels=torch.from_numpy(self.labels[list(ids)]),
            captions=captions,
            caption_ids=torch.tensor([self.caption_index[c] for c in captions]),
            masks=torch.from_numpy(np.stack([p[1] for p in parts])),
            regions=torch.from_numpy(np.stack([p[2] for p in parts])),
            boxes=torch.from_numpy(np.stack([p[3] for p in parts])),
        )
