"""The localisation score on planted attention maps, against a hand computation."""

from __future__ import annotations

import pytest
import torch

from workbench.analysis.localisation import localisation, localisation_frame
from workbench.errors import WorkbenchError


def _regions(h=2, w=4):
    r = torch.zeros(2, h, w, dtype=torch.bool)
    r[0, :, : w // 2] = True
    r[1, :, w // 2:] = True
    return r


def test_planted_maps_hand_computed():
    maps = torch.zeros(2, 4, 2, 4)  # (steps, T, h, w)
    maps[0, 1, :, :2] = 3 / 4   # step 0: token 1 has mass 3 on the left (4 cells), 1 on the right
    maps[0, 1, :, 2:] = 1 / 4
    maps[1, 1] = 0.5             # step 1: token 1 uniform (2 left, 2 right)
    maps[:, 2, 0, 3] = 1.0       # token 2: all on the right at both steps
    maps[:, 3, 0, 0] = 1.0       # token 3: all on the left
    score = localisation(maps, [[1], [2, 3]], _regions())
    # object 0: mean over the steps: left (3 + 2) / 2 = 2.5, right (1 + 2) / 2 = 1.5
    assert score[0].item() == pytest.approx(2.5 / 4)
    # object 1 = tokens 2 and 3 summed: 1 on the right (its region), 1 on the left
    assert score[1].item() == pytest.approx(0.5)


def test_uniform_maps_score_the_region_share_and_perfect_maps_score_one():
    uniform = torch.full((3, 5, 2, 4), 0.2)
    assert torch.allclose(localisation(uniform, [[1], [2]], _regions()), torch.tensor([0.5, 0.5]))
    perfect = torch.zeros(3, 5, 2, 4)
    perfect[:, 1, :, :2] = 1
    perfect[:, 2, :, 2:] = 1
    assert torch.allclose(localisation(perfect, [[1], [2]], _regions()), torch.ones(2))


def test_finer_regions_are_averaged_down_to_the_map_grid():
    maps = torch.zeros(1, 2, 1, 2)
    maps[0, 1] = torch.tensor([[1.0, 3.0]])
    region = torch.zeros(1, 2, 4, dtype=torch.bool)
    region[0, :, :3] = True  # covers the first map cell fully and half of the second
    assert localisation(maps, [[1]], region).item() == pytest.approx((1 + 0.5 * 3) / 4)


def test_frame_and_errors():
    maps = torch.full((2, 3, 5, 2, 4), 0.2)
    frame = localisation_frame(maps, [[[1], [2]], [[3], [4]]], torch.stack([_regions(), _regions()]),
                               names=[["bag", "coat"], ["shirt", "dress"]])
    assert list(frame.columns) == ["scene", "object", "token", "value"] and len(frame) == 4
    assert frame.token.tolist() == ["bag", "coat", "shirt", "dress"]
    assert frame.value.tolist() == pytest.approx([0.5] * 4)
    with pytest.raises(WorkbenchError, match="one per object"):
        localisation(maps[0], [[1]], _regions())
    with pytest.raises(WorkbenchError, match="multiple"):
        localisation(maps[0], [[1], [2]], torch.ones(2, 3, 5, dtype=torch.bool))
