"""between_share: the between-group share of the sum of squares, on hand-made groups."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.analysis import between_share


def test_between_share_on_hand_made_groups():
    groups = np.array(["a", "a", "b", "b"])
    apart = np.array([[0.0, 1.0], [0.0, 1.0], [2.0, 3.0], [2.0, 3.0]])
    assert between_share(apart, groups) == pytest.approx(1.0)  # each task one σ, tasks differ
    mixed = np.array([[0.0], [2.0], [0.0], [2.0]])
    assert between_share(mixed, groups) == pytest.approx(0.0)  # same task means: nothing between tasks
    half = np.array([[0.0], [2.0], [2.0], [4.0]])  # means 1 and 3 (between SS 4), within SS 4
    assert between_share(half, groups) == pytest.approx(0.5)
    assert np.isnan(between_share(np.ones((4, 3)), groups))
