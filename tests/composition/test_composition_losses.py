"""The attention losses and masks of the composition methods, on planted maps."""

from __future__ import annotations

import pytest
import torch

from workbench.composition import box_attention_loss, contrastive_attention_loss
from workbench.composition.losses import attention_masks
from workbench.errors import WorkbenchError

P = 8  # cells of a planted map


def _peak(at: list[int], n: int = 2, sharp: float = 4.0) -> torch.Tensor:
    """n map logits (n, P) peaked at cells ``at``."""
    logits = torch.zeros(n, P)
    logits[:, at] = sharp
    return logits


def _overlap(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine of the two groups' mean maps."""
    a, b = a.mean(0), b.mean(0)
    return float(a @ b / (a.norm() * b.norm()))


def test_contrastive_loss_prefers_separated_concepts():
    """The sign: concepts whose maps sit apart score lower than concepts on one place."""
    apart = [_peak([0, 1]).softmax(-1), _peak([6, 7]).softmax(-1)]
    together = [_peak([0, 1]).softmax(-1), _peak([0, 1]).softmax(-1)]
    assert contrastive_attention_loss(apart) < contrastive_attention_loss(together) - 0.1


def test_contrastive_loss_falls_on_a_planted_map():
    """Two concepts planted on overlapping places: a few gradient steps on the maps' logits lower the loss
    and pull the concepts apart (the group means' overlap falls), as CLoRA's latent update intends."""
    torch.manual_seed(0)
    a = (_peak([0, 1, 2]) + 0.3 * torch.randn(2, P)).requires_grad_(True)
    b = (_peak([1, 2, 3]) + 0.3 * torch.randn(2, P)).requires_grad_(True)
    opt = torch.optim.SGD([a, b], lr=2.0)
    losses, overlaps = [], []
    for _ in range(6):
        ma, mb = a.softmax(-1), b.softmax(-1)
        loss = contrastive_attention_loss([ma, mb])
        losses.append(float(loss.detach()))
        overlaps.append(_overlap(ma.detach(), mb.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < losses[0] - 0.05
    assert all(y <= x + 1e-6 for x, y in zip(losses, losses[1:], strict=False))
    assert overlaps[-1] < overlaps[0] - 0.05


def test_contrastive_loss_by_hand():
    """Orthogonal one-hot maps: s(a, p) = 1/τ within a group, 0 across; ℓ = log(e^{1/τ} + 2) − 1/τ."""
    e = torch.eye(P)
    loss = contrastive_attention_loss([e[[0, 0]], e[[1, 1]]], temperature=0.5)
    want = torch.log(torch.exp(torch.tensor(2.0)) + 2) - 2
    assert torch.allclose(loss, want, atol=1e-6)
    with pytest.raises(WorkbenchError, match="fewer than two maps"):
        contrastive_attention_loss([e[[0]], e[[1, 1]]])
    with pytest.raises(WorkbenchError, match="at least two"):
        contrastive_attention_loss([e[[0, 1]]])


def test_box_loss_is_zero_inside_and_positive_outside():
    maps = torch.zeros(1, 3, 2, 4)
    maps[0, 1, :, :2] = 1.0  # token 1 all on the left half
    left = torch.zeros(1, 2, 4)
    left[0, :, :2] = 1
    assert float(box_attention_loss(maps, [[1]], left)) == 0.0
    assert abs(float(box_attention_loss(maps, [[1]], 1 - left)) - 1.0) < 1e-6  # all mass outside: (1 − 0)²


def test_attention_masks_give_each_cell_to_one_concept():
    a = torch.tensor([[[0.0, 0.2, 0.9, 1.0]]])  # (B=1, h=1, w=4)
    b = torch.tensor([[[1.0, 0.8, 0.5, 0.0]]])  # cell 2: both kept, a is higher
    m = attention_masks([a, b], threshold=0.5)  # (1, 2, 1, 4)
    assert m[0, 0, 0].tolist() == [0, 0, 1, 1] and m[0, 1, 0].tolist() == [1, 1, 0, 0]
    assert (m.sum(1) <= 1).all()


def test_clora_fuses_each_concepts_noise_inside_its_mask():
    from workbench.composition.methods.clora import masked_fusion

    base, a, b = torch.zeros(1, 1, 1, 3), torch.ones(1, 1, 1, 3), 2 * torch.ones(1, 1, 1, 3)
    masks = torch.tensor([[[[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]]]])  # (1, N=2, 1, 3): a | b | base
    assert masked_fusion(base + 5, [a, b], masks).flatten().tolist() == [1.0, 2.0, 5.0]
