"""LoRA extraction: a planted rank-r ΔW comes back exactly at rank r, the energy threshold picks the
right rank, the reported error is the dense one, and a full fine-tune of a tiny model is extracted
into the lab (which a failed call leaves unchanged)."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.conftest import tiny_lab
from workbench.errors import WorkbenchError
from workbench.merging.extract import energy_rank, extract


def planted(out_f: int, in_f: int, singular: list[float], seed: int = 0) -> torch.Tensor:
    """U diag(σ) Vᵀ with orthonormal U, V: a ΔW of rank len(σ) with known singular values."""
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(out_f, len(singular), generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(in_f, len(singular), generator=g, dtype=torch.float64))
    return U @ torch.diag(torch.tensor(singular, dtype=torch.float64)) @ V.T


def _rel(x, y):
    return float(torch.linalg.matrix_norm(x.double() - y) / torch.linalg.matrix_norm(y))


def test_a_planted_low_rank_update_is_extracted_exactly_at_its_rank():
    deltas = {"m.0.q": planted(48, 32, [3.0, 2.0, 1.0], seed=1),
              "m.0.v": planted(16, 32, [5.0, 0.5, 0.1], seed=2)}
    result = extract(deltas, name="x", rank=3)
    assert result.adapter.ranks == {"m.0.q": 3, "m.0.v": 3}
    for path, D in deltas.items():
        assert _rel(result.adapter.delta(path), D) < 1e-6  # factored equals dense
    assert result.total_error < 1e-6 and (result.error["value"] < 1e-6).all()
    assert result.adapter.lineage["method"] == "extract" and result.adapter.lineage["extract"]["rank"] == 3


@pytest.mark.parametrize("rank", [1, 2])
def test_the_reported_error_is_the_dense_error(rank):
    D = planted(40, 24, [4.0, 2.0, 1.0, 0.5], seed=3)
    result = extract({"m.0.q": D}, name="x", rank=rank)
    dense = _rel(result.adapter.delta("m.0.q"), D)
    assert result.total_error == pytest.approx(dense, rel=1e-5)
    S = torch.linalg.svdvals(D)
    assert result.total_error == pytest.approx(float((S[rank:] ** 2).sum().sqrt() / S.norm()), rel=1e-9)


@pytest.mark.parametrize("energy,expected", [(0.5, 1), (0.9, 2), (0.95, 3), (0.999, 4), (1.0, 4)])
def test_energy_threshold_picks_the_right_rank(energy, expected):
    # σ² = 16, 4, 1, 0.25 of 21.25: kept 0.753, 0.941, 0.988, 1
    D = planted(40, 24, [4.0, 2.0, 1.0, 0.5], seed=4)
    result = extract({"m.0.q": D}, name="x", energy=energy)
    assert result.adapter.ranks["m.0.q"] == expected
    assert energy_rank(torch.linalg.svdvals(D), energy) == expected
    assert list(result.error["rank"]) == [expected]


def test_bad_input_names_the_fix():
    D = {"m.0.q": planted(8, 8, [1.0])}
    with pytest.raises(WorkbenchError, match="exactly one of them"):
        extract(D, name="x")
    with pytest.raises(WorkbenchError, match="exactly one of them"):
        extract(D, name="x", rank=2, energy=0.9)
    with pytest.raises(WorkbenchError, match=r"energy=1.5 must be a number in \(0, 1\]"):
        extract(D, name="x", energy=1.5)
    with pytest.raises(WorkbenchError, match="positive int"):
        extract(D, name="x", rank=0)
    with pytest.raises(WorkbenchError, match="finite 2-D"):
        extract({"m.0.q": torch.ones(3)}, name="x", rank=1)


def test_lab_extracts_a_full_fine_tune_and_is_unchanged_when_it_fails():
    lab = tiny_lab()
    finetuned = copy.deepcopy(lab.model)
    planted_deltas = {}
    with torch.no_grad():
        for i, (path, (out_f, in_f)) in enumerate(lab.shapes("attention").items()):
            D = planted(out_f, in_f, [0.3, 0.2], seed=10 + i)
            finetuned.get_submodule(path).weight.add_(D.float())
            planted_deltas[path] = D
    before = list(lab.adapters)
    with pytest.raises(WorkbenchError, match="exactly one of them"):
        lab.extract(finetuned, name="ft", targets="attention")
    assert list(lab.adapters) == before and lab.last_extract is None
    ft = lab.extract(finetuned, name="ft", rank=2, targets="attention")
    assert set(ft.modules) == set(planted_deltas) and ft.base_fingerprint == lab.fingerprint
    for path, D in planted_deltas.items():
        assert _rel(ft.delta(path), D) < 1e-4  # float32 weights: the difference carries their rounding
    assert lab.last_extract.total_error < 1e-4
    assert ft.lineage["extract"]["source"]["kind"] == "full fine-tune"
    with pytest.raises(WorkbenchError, match="taken"):
        lab.extract(finetuned, name="ft", rank=2, targets="attention")
