"""How much of each object token's cross-attention falls inside its object's region.

    score = localisation(maps, token_groups, regions)      # (O,) fractions in [0, 1]

For object o with caption tokens ``token_groups[o]`` and region mask ``regions[o]``: the maps of its
tokens are summed, averaged over the denoising steps, and the fraction of that mass inside the
region is its score. A model whose tokens attend uniformly scores the region's share of the canvas
(0.5 for one half of a two-item scene); a model that puts each object word on its object scores 1.
Regions given at a finer grid than the maps are averaged down to it (each map cell weighs the share
of the region it covers).

Reference: the token-map localisation presupposed by LoRA-Composer (Yang et al., arXiv 2403.11627)
and CLoRA (Meral et al., arXiv 2403.19776); cross-attention maps as in Hertz et al., Prompt-to-Prompt,
ICLR 2023. The score itself is this project's (issue 22).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
from torch.nn import functional as F

from workbench.errors import WorkbenchError


def localisation(maps: torch.Tensor, token_groups: Sequence[Sequence[int]],
                 regions: torch.Tensor) -> torch.Tensor:
    """Fraction of each object's token attention mass inside its region.

    Args:
        maps: (steps, T, h, w) non-negative cross-attention maps of one scene.
        token_groups: O lists of token positions (the sub-tokens of each object word).
        regions: (O, H, W) bool or float masks, H and W multiples of h and w.

    Returns:
        (O,) float tensor in [0, 1].
    """
    if maps.ndim != 4:
        raise WorkbenchError(f"localisation takes maps (steps, T, h, w); got shape {tuple(maps.shape)}")
    if len(token_groups) != regions.shape[0]:
        raise WorkbenchError(f"{len(token_groups)} token groups but {regions.shape[0]} regions; "
                             "give one per object")
    h, w = maps.shape[-2:]
    region = regions.float()
    if region.shape[-2:] != (h, w):
        H, W = region.shape[-2:]
        if H % h or W % w:
            raise WorkbenchError(f"regions {H}×{W} are not a multiple of the maps' grid {h}×{w}")
        region = F.avg_pool2d(region[None], (H // h, W // w))[0]  # (O, h, w)
    mean = maps.mean(0)  # (T, h, w)
    out = []
    for group, r in zip(token_groups, region, strict=True):
        m = mean[list(group)].sum(0)  # (h, w)
        total = m.sum()
        out.append((m * r).sum() / total if total > 0 else torch.tensor(float("nan")))
    return torch.stack(out)


def localisation_frame(maps: torch.Tensor, token_groups: Sequence[Sequence[Sequence[int]]],
                       regions: torch.Tensor, names: Sequence[Sequence[str]] | None = None) -> pd.DataFrame:
    """Tidy rows ``scene, object, token, value`` for a batch of scenes.

    Args:
        maps: (B, steps, T, h, w); token_groups: per scene, O token-position lists; regions: (B, O, H, W);
        names: per scene, the O object names (default ``"0"``, ``"1"``, ...).
    """
    rows = []
    for b in range(maps.shape[0]):
        scores = localisation(maps[b], token_groups[b], regions[b])
        for o, v in enumerate(scores.tolist()):
            rows.append({"scene": b, "object": o, "token": names[b][o] if names else str(o), "value": v})
    return pd.DataFrame(rows, columns=["scene", "object", "token", "value"])
