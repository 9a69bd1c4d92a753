"""Attention losses on cross-attention maps, for test-time latent updates.

    loss = contrastive_attention_loss([maps_a, maps_b], temperature=0.5)   # CLoRA
    loss = box_attention_loss(maps, groups, boxes)                          # LoRA-Composer's guidance

``contrastive_attention_loss`` (CLoRA): each concept has a group of attention maps (the maps of its
tokens in the base pass and in its own LoRA's pass); maps of one group are positives of each other,
maps of the other groups are negatives. With cosine similarity s and temperature τ, for every anchor
a and positive p of a group: ℓ = −log( e^{s(a,p)/τ} / (e^{s(a,p)/τ} + Σ_n e^{s(a,n)/τ}) ), averaged.
Lowering it pulls a concept's maps together and pushes them off the other concepts' places.

``box_attention_loss`` (LoRA-Composer's latent guidance, in the layout-guidance form): for each
concept the share of its tokens' attention mass inside its box, r; the loss is mean (1 − r)².

Reference: Meral et al., "CLoRA: A Contrastive Approach to Compose Multiple LoRA Models", arXiv
2403.19776 (the contrastive loss on attention maps) [R: recalled from the paper, code not read; the
InfoNCE form and τ = 0.5 are ours]; Chen et al., "Training-Free Layout Control with Cross-Attention
Guidance", WACV 2024 (the box energy) as used by Yang et al., LoRA-Composer, arXiv 2403.11627 [R].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from workbench.errors import WorkbenchError


def contrastive_attention_loss(groups: Sequence[torch.Tensor], temperature: float = 0.5) -> torch.Tensor:
    """InfoNCE over attention maps grouped by concept.

    Args:
        groups: N tensors (n_i, P) or (B, n_i, ...): concept i's n_i ≥ 2 maps (flattened over the cells).
        temperature: τ of the softmax over similarities.

    Returns:
        A scalar: the mean over anchors, positives and batch rows.

    Raises:
        WorkbenchError: for fewer than two groups, or a group with fewer than two maps.
    """
    if len(groups) < 2:
        raise WorkbenchError(f"the contrastive loss needs at least two concepts; got {len(groups)}")
    groups = [g[None] if g.ndim == 2 else g.flatten(2) for g in groups]  # (B, n_i, P)
    small = [i for i, g in enumerate(groups) if g.shape[1] < 2]
    if small:
        raise WorkbenchError(f"concept groups {small} hold fewer than two maps; each needs a positive pair "
                             "(its tokens' maps in the base pass and in its LoRA's pass)")
    maps = F.normalize(torch.cat(groups, dim=1).flatten(2), dim=-1)  # (B, M, P)
    owner = torch.cat([torch.full((g.shape[1],), i) for i, g in enumerate(groups)])  # (M,)
    sim = maps @ maps.transpose(1, 2) / temperature  # (B, M, M)
    same = owner[:, None] == owner[None, :]
    pos = same & ~torch.eye(len(owner), dtype=torch.bool)  # (M, M) anchor -> positive
    neg = ~same
    neg_sum = torch.where(neg, sim.exp(), torch.zeros_like(sim)).sum(-1, keepdim=True)  # (B, M, 1)
    # -log(e^{s_ap} / (e^{s_ap} + Σ_n e^{s_an})) = log(e^{s_ap} + Σ_n) - s_ap
    terms = torch.log(sim.exp() + neg_sum) - sim  # (B, M, M)
    return terms[:, pos].mean()


def box_attention_loss(maps: torch.Tensor, groups: Sequence[Sequence[int]],
                       boxes: torch.Tensor) -> torch.Tensor:
    """mean over concepts and rows of (1 − share of the concept tokens' attention inside its box)².

    Args:
        maps: (B, T, h, w) cross-attention maps; groups: N token-position lists;
        boxes: (N, h, w) float or bool box masks at the maps' grid.
    """
    if len(groups) != boxes.shape[0]:
        raise WorkbenchError(f"{len(groups)} token groups but {boxes.shape[0]} boxes; give one per concept")
    out = []
    for group, box in zip(groups, boxes.float(), strict=True):
        m = maps[:, list(group)].sum(1)  # (B, h, w)
        share = (m * box).flatten(1).sum(-1) / m.flatten(1).sum(-1).clamp(min=1e-12)  # (B,)
        out.append((1 - share) ** 2)
    return torch.stack(out).mean()


def attention_masks(maps: Sequence[torch.Tensor], threshold: float) -> torch.Tensor:
    """CLoRA's fusion masks: each concept's map min-max normalised, kept above ``threshold``, and each
    cell given to the concept with the highest normalised map among those kept.

    Args:
        maps: N tensors (B, h, w), concept i's attention (its tokens, its LoRA's pass).
        threshold: in [0, 1].

    Returns:
        (B, N, h, w) float in {0, 1}, at most one 1 per cell.
    """
    m = torch.stack(list(maps), dim=1)  # (B, N, h, w)
    lo = m.flatten(2).min(-1).values[..., None, None]
    hi = m.flatten(2).max(-1).values[..., None, None]
    norm = (m - lo) / (hi - lo).clamp(min=1e-12)
    kept = norm >= threshold
    best = F.one_hot(norm.masked_fill(~kept, -1.0).argmax(1), m.shape[1]).permute(0, 3, 1, 2).bool()
    return (best & kept).float()
