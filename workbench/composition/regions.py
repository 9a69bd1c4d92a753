"""Layout boxes as masks: on the canvas, on an attention layer's grid, and as attention-logit biases.

    masks = box_masks([(0, 0, 28, 28), (28, 0, 56, 28)], canvas=(28, 56))   # (N, 28, 56) bool
    cells = cell_masks(masks, (7, 14))                                     # (N, 98) bool, one per query
    bias = region_bias(cells, groups=[[2], [8]], tokens=16)                # (98, 16): 0 or -inf

``region_bias`` is the region-restricted cross-attention of LoRA-Composer's concept injection: the
tokens of concept j may be attended only by the queries inside box j. The bias is added to the logits
*before* the softmax, so the other tokens of a query share all of its attention (each row still sums
to 1) and a concept's tokens get exactly zero weight outside its box. ``isolation_bias`` is the
region-masked self-attention of concept isolation: a query inside box i attends only to keys inside
box i (inside the union of its boxes where boxes overlap); queries outside every box are unrestricted.

Reference: Yang et al., "LoRA-Composer: Leveraging Low-Rank Adaptation for Multi-Concept Customization
in Training-Free Diffusion Models", arXiv 2403.11627 (concept injection and isolation) [R: recalled from
the paper, the authors' code not read]. Deviation: a cell belongs to a box when the box covers at least
half of it (``COVER``); the paper works on SD's 64×64 latent where boxes align with cells.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.nn import functional as F

from workbench.errors import WorkbenchError

COVER = 0.5  # a grid cell is inside a box when the box covers at least this share of it


def box_masks(boxes: Sequence[Sequence[int]], canvas: tuple[int, int]) -> torch.Tensor:
    """(N, H, W) bool masks of boxes ``(x0, y0, x1, y1)`` (exclusive ends) on a canvas ``(H, W)``.

    Raises:
        WorkbenchError: for an empty box or one outside the canvas.
    """
    H, W = canvas
    out = torch.zeros(len(boxes), H, W, dtype=torch.bool)
    for i, b in enumerate(boxes):
        x0, y0, x1, y1 = (int(v) for v in b)
        if not (0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H):
            raise WorkbenchError(f"box {i} = {tuple(b)} is empty or outside the {H}×{W} canvas; give "
                                 "(x0, y0, x1, y1) with 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H")
        out[i, y0:y1, x0:x1] = True
    return out


def layer_grid(queries: int, grid: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of an attention layer with ``queries`` cells and the aspect of ``grid`` (the UNet input)."""
    H, W = grid
    h = max(1, round(math.sqrt(queries * H / W)))
    if h * (queries // h) != queries:
        raise WorkbenchError(f"an attention layer has {queries} queries, not a grid with the aspect {H}:{W}")
    return h, queries // h


def cell_masks(masks: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(N, h·w) bool: which cells of an (h, w) grid each (N, H, W) mask covers (at least ``COVER``)."""
    cover = F.adaptive_avg_pool2d(masks.float()[None], hw)[0]  # (N, h, w) share of each cell covered
    return (cover >= COVER).flatten(1)


def cell_weights(masks: torch.Tensor, hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-cell weights of N concepts and of the background: ``(N, Q)``, ``(Q,)``, summing to 1.

    A cell inside k boxes gives each 1/k; a cell outside every box belongs to the background.
    """
    cells = cell_masks(masks, hw).float()  # (N, Q)
    count = cells.sum(0)  # (Q,)
    return cells / count.clamp(min=1), (count == 0).float()


def pixel_weights(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``cell_weights`` at the canvas itself: ``(N, H, W)`` and ``(H, W)``."""
    m = masks.float()
    count = m.sum(0)
    return m / count.clamp(min=1), (count == 0).float()


def region_bias(cells: torch.Tensor, groups: Sequence[Sequence[int]], tokens: int) -> torch.Tensor:
    """(Q, T) logit bias: ``-inf`` where token t of concept j meets a query outside box j, else 0.

    Args:
        cells: (N, Q) bool, the cells inside each concept's box.
        groups: N lists of token positions (each concept's tokens).
        tokens: T, the caption length.

    Raises:
        WorkbenchError: when the groups and the boxes differ in number, or a token is out of range.
    """
    if len(groups) != cells.shape[0]:
        raise WorkbenchError(f"{len(groups)} token groups but {cells.shape[0]} boxes; give one per concept")
    bias = torch.zeros(cells.shape[1], tokens)
    for j, group in enumerate(groups):
        if any(not 0 <= t < tokens for t in group):
            raise WorkbenchError(f"concept {j}'s tokens {list(group)} are outside the caption's "
                                 f"{tokens} tokens")
        outside = ~cells[j]  # (Q,)
        for t in group:
            bias[outside, t] = float("-inf")
    return bias


def isolation_bias(cells: torch.Tensor) -> torch.Tensor:
    """(Q, Q) self-attention bias: a query inside some boxes sees only keys inside those boxes."""
    c = cells.float()  # (N, Q)
    inside = c.sum(0) > 0  # (Q,) queries inside some box
    allowed = (c.T @ c) > 0  # (Q, Q): query and key share a box
    allowed[~inside] = True  # background queries are not restricted
    bias = torch.zeros(allowed.shape)
    bias[~allowed] = float("-inf")
    return bias
