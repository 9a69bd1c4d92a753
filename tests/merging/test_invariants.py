"""Facts every registered merge method obeys (parametrized over ``MERGES.names()``, so a new method
is checked automatically), and the exact facts of particular methods.

Stochastic methods (DARE, DELLA, k-means in LoRA-LEGO) run at their default density with a fixed
seed: each source's random mask is drawn from its own generator, seeded by (seed, module, source
name), so removing or reweighting another source does not change it, and the facts below hold
exactly, not only in expectation.

A ``pair`` method (SLERP, NuSLERP) merges exactly two sources: it gets the first two of each test's
sources and weights, refuses one, and has no third source to remove (its weight-0 facts are in
test_spherical_methods.py).
"""

from __future__ import annotations

import math

import pytest
import torch

from tests.merging.helpers import delta, has, rel, sources, weighted_sum
from workbench.errors import WorkbenchError
from workbench.merging import MERGES, merge

ALL = MERGES.names()


def needs(method: str, adapters=None) -> dict:
    """What a method needs beyond the adapters (cat_learned trains: a lab and data; regmean and
    fisher read statistics of each source, here planted ones)."""
    from tests.merging.soup_data import soup_inputs
    from tests.merging.stats_data import planted_statistics

    required = MERGES.get(method).needs
    if "lab" in required:
        return soup_inputs()
    if "statistics" in required:
        return {"statistics": planted_statistics(adapters)}
    return {}


def pair(method: str, items: list) -> list:
    """The first two sources (or weights) for a pair method, all of them otherwise."""
    return items[:2] if MERGES.has(method, "pair") else items


def neutral(method: str) -> dict:
    """Parameters under which a single adapter must come back unchanged: keep every entry."""
    return {"density": 1.0} if has(method, "density") else {}


def _deltas(adapter):
    return {p: delta(adapter, p) for p in adapter.modules}


def _close(x: dict, y: dict, tol: float = 1e-5) -> None:
    assert x.keys() == y.keys()
    for p in x:
        assert rel(x[p], y[p]) < tol, (p, rel(x[p], y[p]))


@pytest.mark.parametrize("method", ALL)
def test_one_adapter_at_weight_one_returns_itself(method):
    (a,) = sources((4,), seed=1)
    if MERGES.has(method, "pair"):
        with pytest.raises(WorkbenchError, match="exactly two"):
            merge([a], method, [1.0], **neutral(method))
        return
    result = merge([a], method, [1.0], **neutral(method), **needs(method, [a]))
    _close(_deltas(result.adapter), _deltas(a))
    assert result.total_error < 1e-5
    assert result.adapter.lineage["merge"]["sources"][0]["name"] == "a"


@pytest.mark.parametrize("method", ALL)
def test_weight_zero_removes_an_adapter(method):
    if MERGES.has(method, "pair"):
        pytest.skip("a pair method merges exactly two sources: none to remove (see test_spherical_methods)")
    a, b, c = sources((4, 4, 4), seed=2)
    with_b = merge([a, b, c], method, [1.0, 0.0, 0.7], seed=3, **needs(method, [a, b, c])).adapter
    without = merge([a, c], method, [1.0, 0.7], seed=3, **needs(method, [a, c])).adapter
    _close(_deltas(with_b), _deltas(without), tol=1e-4)


@pytest.mark.parametrize("method", ALL)
def test_negating_every_weight_negates_the_result(method):
    """peft issue #3004 is the counterexample (its factor-space merges, see test_oracle_peft)."""
    adapters = pair(method, sources((4, 4, 4), seed=4))
    weights = pair(method, [1.0, -0.4, 0.8])
    plus = merge(adapters, method, weights, seed=5, **needs(method, adapters)).adapter
    minus = merge(adapters, method, [-w for w in weights], seed=5, **needs(method, adapters)).adapter
    _close(_deltas(minus), {p: -d for p, d in _deltas(plus).items()}, tol=1e-4)


@pytest.mark.parametrize("method", ALL)
def test_sources_are_never_modified(method):
    adapters = pair(method, sources((3, 4, 5), seed=6))
    before = [{p: (f.A.clone(), f.B.clone(), f.alpha) for p, f in a.modules.items()} for a in adapters]
    merge(adapters, method, pair(method, [0.5, 1.0, -1.0]), **needs(method, adapters))
    for a, snap in zip(adapters, before, strict=True):
        for p, (A, B, alpha) in snap.items():
            assert torch.equal(a.modules[p].A, A) and torch.equal(a.modules[p].B, B)
            assert a.modules[p].alpha == alpha


@pytest.mark.parametrize("method", ALL)
def test_error_frame_matches_a_dense_check(method):
    adapters = pair(method, sources((3, 4, 5), seed=7))
    weights = pair(method, [0.5, 1.0, -1.0])
    result = merge(adapters, method, weights, **needs(method, adapters))
    assert list(result.error.columns) == ["layer", "module", "value"]
    num = den = 0.0
    for (path, f), value in zip(result.adapter.modules.items(), result.error["value"], strict=True):
        exact = weighted_sum(adapters, weights, path)
        assert f.alpha == f.r  # s = 1
        assert value == pytest.approx(rel(result.adapter.delta(path), exact), rel=1e-4, abs=1e-6)
        num += float(torch.linalg.matrix_norm(result.adapter.delta(path).double() - exact)) ** 2
        den += float(torch.linalg.matrix_norm(exact)) ** 2
    assert result.total_error == pytest.approx(math.sqrt(num / den), rel=1e-4, abs=1e-6)
    assert result.adapter.lineage["merge"]["error"] == result.total_error


# -- facts of particular methods --------------------------------------------------------------
def test_cat_is_exact_at_rank_sum():
    adapters = sources((2, 3, 5), seed=8)
    result = merge(adapters, "cat", [0.3, -1.0, 2.0])
    assert set(result.adapter.ranks.values()) == {10}
    assert result.total_error < 1e-6


def test_task_arithmetic_is_exact_and_equals_cat():
    adapters = sources((2, 3, 5), seed=8)
    ta = merge(adapters, "task_arithmetic", [0.3, -1.0, 2.0])
    assert ta.total_error < 1e-6
    _close(_deltas(ta.adapter), _deltas(merge(adapters, "cat", [0.3, -1.0, 2.0]).adapter), tol=1e-6)


@pytest.mark.parametrize("rank", [1, 3, 6, 12])
def test_svd_error_is_the_eckart_young_tail(rank):
    adapters = sources((4, 4, 4), seed=9)
    weights = [1.0, 0.5, -0.7]
    result = merge(adapters, "svd", weights, rank=rank)
    tail = total = 0.0
    for path, value in zip(adapters[0].modules, result.error["value"], strict=True):
        S = torch.linalg.svdvals(weighted_sum(adapters, weights, path))  # dense, float64
        module_tail, module_total = float((S[rank:] ** 2).sum()), float((S**2).sum())
        assert value == pytest.approx(math.sqrt(module_tail / module_total), rel=1e-6, abs=1e-7)
        tail, total = tail + module_tail, total + module_total
    assert result.total_error == pytest.approx(math.sqrt(tail / total), rel=1e-6, abs=1e-7)


def test_svd_error_falls_with_rank_and_vanishes_at_rank_sum():
    adapters = sources((4, 4, 4), seed=10)
    errors = [merge(adapters, "svd", rank=r).total_error for r in (1, 2, 4, 7, 10, 12)]
    assert all(x > y for x, y in zip(errors, errors[1:], strict=False))
    assert errors[-1] < 1e-6


@pytest.mark.parametrize("method", ["magnitude_prune", "breadcrumbs"])
def test_trimming_less_means_less_error(method):
    """(Not TIES: its disjoint mean is not the sum, so its error against the sum need not fall.)"""
    adapters = sources((4, 4, 4), seed=11)
    errors = [merge(adapters, method, density=d).total_error for d in (0.1, 0.4, 0.8)]
    assert errors[0] > errors[1] > errors[2]


def test_dare_keeps_the_expectation():
    """DARE rescales by 1/density: averaged over seeds, the merge tends to the weighted sum."""
    adapters = [a.copy() for a in sources((4, 4), seed=12)]
    path = next(iter(adapters[0].modules))
    for a in adapters:  # one module is enough
        a.modules = {path: a.modules[path]}
    runs = [merge(adapters, "dare_linear", density=0.5, seed=s, rank=64).adapter.delta(path).double()
            for s in range(24)]
    exact = weighted_sum(adapters, [1.0, 1.0], path)
    assert rel(sum(runs) / len(runs), exact) < 0.5 * rel(runs[0], exact)


@pytest.mark.parametrize("ranks", [(4, 4, 4), (2, 3, 6)])
def test_knots_with_a_plain_sum_is_task_arithmetic(ranks):
    adapters = sources(ranks, seed=13)
    weights = [1.0, 0.5, -0.7]
    knots = merge(adapters, "knots", weights, merge="sum").adapter
    _close(_deltas(knots), _deltas(merge(adapters, "task_arithmetic", weights).adapter), tol=1e-6)


def test_knots_alignment_is_exact_per_task():
    from workbench.merging.methods.knots import align

    adapters = sources((3, 5), seed=14)
    path = next(iter(adapters[0].modules))
    parts = [tuple(t.double() for t in a.factors(path)) for a in adapters]  # (A, sB) in float64
    U, blocks = align(parts)
    assert torch.allclose(U.T @ U, torch.eye(U.shape[1], dtype=U.dtype), atol=1e-10)
    for (A, sB), block in zip(parts, blocks, strict=True):
        assert rel(U @ block, sB @ A) < 1e-10


def test_knots_ties_differs_from_plain_ties():
    """KnOTS elects signs on aligned components, not on ΔW entries: a different merge."""
    adapters = sources((4, 4, 4), seed=15)
    k = merge(adapters, "knots", density=0.5).adapter
    t = merge(adapters, "ties", density=0.5).adapter
    path = next(iter(k.modules))
    assert rel(k.delta(path), t.delta(path)) > 0.05


@pytest.mark.parametrize("ranks", [(4, 4, 4), (2, 3, 6)])
def test_lora_lego_with_one_cluster_per_unit_is_cat(ranks):
    adapters = sources(ranks, seed=16)
    weights = [1.0, 0.5, -0.7]
    lego = merge(adapters, "lora_lego", weights, rank=sum(ranks), output_reweight="none").adapter
    _close(_deltas(lego), _deltas(merge(adapters, "cat", weights).adapter), tol=1e-6)


def test_lora_lego_parameter_reweighting_restores_the_norm():
    """Averaging units shrinks centroids (norm decay); reweighting brings ||ΔW'|| back up."""
    adapters = sources((4, 4, 4), seed=17)
    plain = merge(adapters, "lora_lego", parameter_reweight=False).adapter
    fixed = merge(adapters, "lora_lego").adapter
    path = next(iter(plain.modules))
    assert torch.linalg.matrix_norm(fixed.delta(path)) > torch.linalg.matrix_norm(plain.delta(path))


def test_lora_lego_match_output_reweighting():
    adapters = sources((4, 4, 4), seed=18)
    weights = [1.0, 0.5, 2.0]
    m = merge(adapters, "lora_lego", weights, output_reweight="match").adapter
    for path in m.modules:
        target = math.sqrt(sum(float(torch.linalg.matrix_norm(w * delta(a, path))) ** 2
                               for a, w in zip(adapters, weights, strict=True)) / 3)
        assert float(torch.linalg.matrix_norm(m.delta(path).double())) == pytest.approx(target, rel=1e-5)


def test_same_seed_same_adapter_other_seed_other_masks():
    adapters = sources((4, 4), seed=19)
    path = next(iter(adapters[0].modules))
    one = merge(adapters, "dare_ties", seed=1).adapter.delta(path)
    assert torch.equal(one, merge(adapters, "dare_ties", seed=1).adapter.delta(path))
    assert not torch.equal(one, merge(adapters, "dare_ties", seed=2).adapter.delta(path))


@pytest.mark.parametrize("method", ALL)
def test_every_method_names_its_paper_and_says_what_it_does(method):
    from workbench.merging import method_params

    info, spec = MERGES.info(method), MERGES.get(method)
    assert info.reference and info.summary and spec.name == method
    assert method_params(method) == {n: None if p.required else p.default for n, p in info.params.items()}
    assert MERGES.check(method, {n: 1 for n in spec.needs}).keys() == info.params.keys()
    assert MERGES.has(method, "factored") != MERGES.has(method, "elementwise")


@pytest.mark.parametrize("method", MERGES.names(flag="svd_variant"))
def test_svd_variants_have_a_plain_twin_with_the_same_parameters(method):
    info = MERGES.info(method)
    twins = [m for m in MERGES.names(flag="elementwise") if not MERGES.has(m, "svd_variant")
             and MERGES.info(m).params == info.params and info.summary.startswith(MERGES.info(m).summary)]
    assert len(twins) == 1
