"""interference: TIES-trim sign conflicts, overlap and lost mass, checked on cases with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from tests.analysis.helpers import from_factors, negated, random_adapter
from workbench.analysis import interference, trim_mask
from workbench.errors import WorkbenchError
from workbench.ops.sparsify import magnitude_prune_


def test_identical_adapters_overlap_fully_and_never_conflict():
    a = random_adapter("a", 0)
    frame = interference([a, a.copy("b")], density=0.3)
    assert (frame.overlap == 1).all() and (frame.conflict_rate == 0).all()
    assert set(frame.columns) == {"layer", "module", "adapters", "conflict_rate", "overlap", "mass_lost",
                                  "density"}


def test_an_adapter_and_its_negation_conflict_everywhere():
    a = random_adapter("a", 0)
    frame = interference([a, negated(a, "b")], density=0.3)
    assert (frame.overlap == 1).all() and (frame.conflict_rate == 1).all()
    # a negative merge weight undoes the negation
    assert (interference([a, negated(a, "b")], weights=[1, -1], density=0.3).conflict_rate == 0).all()


def test_disjoint_supports_do_not_overlap():
    path = "model.layers.0.self_attn.q_proj"
    A = torch.eye(4)
    top = torch.zeros(8, 4)
    top[:4] = torch.eye(4)
    bottom = torch.zeros(8, 4)
    bottom[4:] = torch.eye(4)
    frame = interference([from_factors("a", {path: (A, top)}), from_factors("b", {path: (A, bottom)})],
                         density=1.0)
    assert frame.overlap.iloc[0] == 0 and math.isnan(frame.conflict_rate.iloc[0])


def test_mass_lost_matches_a_direct_count():
    a, b = random_adapter("a", 1), random_adapter("b", 2)
    path = next(iter(a.modules))
    frame = interference([a, b], weights=[0.5, 2.0], density=0.25)
    deltas = [0.5 * a.delta(path).double(), 2.0 * b.delta(path).double()]
    kept = sum(float((d * trim_mask(d, 0.25)).abs().sum()) for d in deltas)
    total = sum(float(d.abs().sum()) for d in deltas)
    assert frame.mass_lost.iloc[0] == pytest.approx(1 - kept / total)
    assert (interference([a, b], density=1.0).mass_lost.abs() < 1e-12).all()


def test_trim_mask_keeps_the_largest_magnitudes():
    d = torch.tensor([[0.1, -3.0], [2.0, -0.5]])
    assert trim_mask(d, 0.5).tolist() == [[False, True], [True, False]]
    assert not trim_mask(d, 0.1).any()  # int(0.1 * 4) = 0: nothing kept, as in peft


@pytest.mark.parametrize("density", [0.05, 0.2, 0.5, 1.0])
def test_trim_mask_is_what_the_ties_merge_keeps_and_peft_keeps(density):
    from peft.utils.merge_utils import magnitude_based_pruning

    d = torch.randn(48, 40, generator=torch.Generator().manual_seed(3))
    d[0, :7] = 0.0  # exact zeros are never kept
    ours = trim_mask(d, density)
    assert torch.equal(ours, magnitude_prune_(d.clone(), density) != 0)
    assert torch.equal(ours, magnitude_based_pruning(d, density) != 0)
    assert int(ours.sum()) == min(int(density * d.numel()), int((d != 0).sum()))


def test_bad_input():
    a, b = random_adapter("a", 1), random_adapter("b", 2)
    with pytest.raises(WorkbenchError, match="at least two"):
        interference([a])
    with pytest.raises(WorkbenchError, match=r"must be in \(0, 1\]"):
        interference([a, b], density=0)
    with pytest.raises(WorkbenchError, match="one weight per adapter"):
        interference([a, b], weights=[1.0])
