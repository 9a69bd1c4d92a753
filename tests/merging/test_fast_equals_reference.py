"""The fast merge engine (issue 23) against a copy of the code it replaced (``reference_impl.py``).

What must hold, for every registered method, two seeds, equal and mixed ranks, and weights with a
negative and a zero:

- masks and the combined dense result before truncation: bit for bit (the same arithmetic, now on
  cached pruned updates combined in cache-sized (K, b) blocks, checked with blocks that split rows);
- k-means (LoRA-LEGO): the same labels bit for bit with its restarts iterated together;
- factored methods: the same factors, bit for bit;
- the truncation of a dense result (``truncate="exact"``): now float64 (``top_svd``), so the merged
  ΔW' equals the exact best approximation of the old dense result to 1e-9 (``TOL_EXACT``), and the old
  float32 SVD's output to that SVD's own rounding error, bounded here by ``TOL_F32_SVD`` = 5e-5
  relative (measured ≤ 1.2e-5 on these sources, ≤ 6.3e-6 on the ready adapters);
- ``truncate="lowrank"``: the same factors, bit for bit (same input, same generator state);
- the reported error agrees to the same tolerance; ``interference``: counts exactly, ``mass_lost`` to
  1e-12 (the L1 sums are now taken per adapter, then weighted).
"""

from __future__ import annotations

import math

import pytest
import torch

from tests.merging import reference_impl as ref
from tests.merging.helpers import rel, sources
from workbench.adapters.update_cache import DENSE_CACHE
from workbench.analysis import interference
from workbench.merging import MERGES, merge
from workbench.merging.inputs import MergeInputs
from workbench.ops.lowrank import top_svd
from workbench.ops.sparsify import magnitude_prune_, magprune_, outlier_prune_

TOL_EXACT = 1e-9  # new truncation vs the exact (float64) truncation of the old dense result
TOL_F32_SVD = 5e-5  # new vs old output: the old float32 SVD's own rounding
METHODS = [m for m in MERGES.names() if m in ref.METHODS]  # what the frozen reference reproduces
ELEMENTWISE = [m for m in METHODS if MERGES.has(m, "elementwise")]
CASES = [((4, 4, 4), [1.0, -0.5, 0.7]), ((2, 4, 6), [0.3, 0.0, 1.2])]


@pytest.fixture(autouse=True)
def _empty_cache():
    DENSE_CACHE.clear()
    yield
    DENSE_CACHE.clear()


def _tied(seed: int, shape=(24, 40)) -> torch.Tensor:
    """A tensor whose magnitudes tie a lot (small integers, zeros and both signs)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-6, 7, shape, generator=g).float()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("density", "gamma"),
                         [(0.2, 0.01), (0.3, 0.1), (0.5, 0.0), (0.9, 0.3), (1 / 960, 0.5)])
def test_breadcrumbs_band_equals_the_stable_sort(seed, density, gamma):
    t = _tied(seed)
    new, old = outlier_prune_(t.clone(), density, gamma), ref.outlier_prune_(t.clone(), density, gamma)
    assert torch.equal(new, old)


@pytest.mark.parametrize("seed", range(4))
def test_trim_and_magprune_masks_equal_the_reference(seed):
    t = _tied(seed)
    for density in (0.1, 0.2, 0.55):
        assert torch.equal(magnitude_prune_(t.clone(), density), ref.magnitude_prune_(t.clone(), density))
    for density, eps in ((0.3, 0.15), (0.5, 0.2)):
        new = magprune_(t.clone(), density, eps, torch.Generator().manual_seed(seed))
        old = ref.magprune_(t.clone(), density, eps, torch.Generator().manual_seed(seed))
        assert torch.equal(new, old)


def _exact_truncation(dense: torch.Tensor, rank: int) -> torch.Tensor:
    U, S, Vh = torch.linalg.svd(dense.double(), full_matrices=False)
    k = min(rank, S.shape[0])
    return (U[:, :k] * S[:k]) @ Vh[:k]


def _product(A, B) -> torch.Tensor:
    return B.double() @ A.double()


@pytest.mark.parametrize("method", sorted({m.removesuffix("_svd") for m in ELEMENTWISE}))
@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize(("ranks", "weights"), CASES)
def test_pruned_and_combined_stack_is_bit_for_bit_the_reference(method, seed, ranks, weights):
    """Masks and combination, before truncation: cached pruned updates, all modules of a shape at once."""
    module = __import__(f"workbench.merging.methods.{method}", fromlist=["_prune", "_combine"])
    adapters = sources(ranks, seed=seed)
    params = {k: v for k, v in MERGES.check(method, {}).items()
              if k not in ("rank", "truncate", "peft_compat")}
    paths = list(adapters[0].modules)
    new_inputs = MergeInputs(adapters, weights, seed, paths)
    old_inputs = ref.Inputs(adapters, weights, seed, paths)
    by_shape: dict[tuple, list[str]] = {}
    for p in paths:
        by_shape.setdefault(new_inputs.shape(p), []).append(p)
    for group in by_shape.values():
        stacked = torch.stack([torch.stack([new_inputs.pruned(i, p, module._prune, params, True)[0]
                                            for p in group])
                               for i in range(len(adapters))])  # (K, n, out, in)
        merged = module._combine(stacked.clone(), torch.tensor(weights), peft_compat=False, **params)
        for j, p in enumerate(group):
            deltas, w = old_inputs.deltas(p)
            old = ref.ELEMENTWISE[method](deltas, w, generators=old_inputs.generators(p), peft_compat=False,
                                          **params)
            assert torch.equal(merged[j], old), (method, p)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize(("ranks", "weights"), CASES)
def test_merge_equals_the_reference(method, seed, ranks, weights):
    adapters = sources(ranks, seed=seed)
    result = merge(adapters, method, weights, seed=seed)
    old = ref.reference_merge(adapters, method, weights, seed=seed)
    assert list(result.adapter.modules) == list(old)
    for p, (A, B) in old.items():
        f = result.adapter.modules[p]
        if not MERGES.has(method, "elementwise"):
            assert torch.equal(f.A, A.float()) and torch.equal(f.B, B.float()), p
            continue
        deltas_rank = A.shape[0]
        assert f.r == deltas_rank
        assert rel(_product(f.A, f.B), _product(A, B)) < TOL_F32_SVD, p
    if MERGES.has(method, "elementwise"):
        _check_against_exact_truncation(adapters, method, weights, seed, result)


def _check_against_exact_truncation(adapters, method, weights, seed, result) -> None:
    base = method.removesuffix("_svd")
    inputs = ref.Inputs(adapters, weights, seed, list(adapters[0].modules))
    full = MERGES.check(method, {})
    own = {k: v for k, v in full.items() if k not in ("rank", "truncate", "peft_compat")}
    for p, f in result.adapter.modules.items():
        deltas, w = inputs.deltas(p)
        dense = ref.ELEMENTWISE[base](deltas, w, generators=inputs.generators(p), peft_compat=False, **own)
        exact = _exact_truncation(dense, f.r)
        assert rel(_product(f.A, f.B), exact) < TOL_EXACT + 1e-6, p  # + the float32 factors' rounding


@pytest.mark.parametrize("method", ["ties", "dare_ties_svd", "della", "breadcrumbs"])
def test_lowrank_truncation_is_bit_for_bit(method):
    adapters = sources((4, 4, 4), seed=2)
    result = merge(adapters, method, [1.0, 0.5, -1.0], seed=7, truncate="lowrank", rank=4)
    old = ref.reference_merge(adapters, method, [1.0, 0.5, -1.0], seed=7, truncate="lowrank", rank=4)
    for p, (A, B) in old.items():
        assert torch.equal(result.adapter.modules[p].A, A.float()), p
        assert torch.equal(result.adapter.modules[p].B, B.float()), p


@pytest.mark.parametrize("method", ["ties_svd", "dare_linear", "dare_ties", "magnitude_prune"])
def test_peft_compat_equals_the_reference(method):
    adapters = sources((4, 4, 4), seed=1)
    result = merge(adapters, method, [1.0, 0.5, 0.8], seed=4, peft_compat=True)
    old = ref.reference_merge(adapters, method, [1.0, 0.5, 0.8], seed=4, peft_compat=True)
    for p, (A, B) in old.items():
        f = result.adapter.modules[p]
        assert rel(_product(f.A, f.B), _product(A, B)) < TOL_F32_SVD, p


@pytest.mark.parametrize("method", ["ties", "della", "dare_linear_svd", "breadcrumbs"])
def test_reported_error_equals_the_reference(method):
    from workbench.ops.lowrank import difference_norms, stack

    adapters = sources((2, 4, 6), seed=0)
    weights = [1.0, -0.5, 0.7]
    result = merge(adapters, method, weights, seed=1)
    old = ref.reference_merge(adapters, method, weights, seed=1)
    num = den = 0.0
    for p, (A, B) in old.items():
        parts = [(a.factors(p)[0].double(), a.factors(p)[1].double()) for a in adapters]
        diff, target = difference_norms(B, A, *stack(parts, weights))
        num, den = num + diff**2, den + target**2
    assert math.isclose(result.total_error, math.sqrt(num / den), rel_tol=TOL_F32_SVD)


def test_a_change_of_weights_reuses_the_cache_and_equals_a_fresh_merge():
    adapters = sources((4, 4, 4), seed=5)
    merge(adapters, "dare_ties", [1.0, 1.0, 1.0], seed=2)
    hits = DENSE_CACHE.hits
    warm = merge(adapters, "dare_ties", [0.2, -1.0, 0.6], seed=2).adapter
    assert DENSE_CACHE.hits > hits
    DENSE_CACHE.clear()
    cold = merge(adapters, "dare_ties", [0.2, -1.0, 0.6], seed=2).adapter
    for p in cold.modules:
        assert torch.equal(warm.modules[p].A, cold.modules[p].A)
        assert torch.equal(warm.modules[p].B, cold.modules[p].B)


def test_a_changed_adapter_is_never_served_from_the_cache():
    adapters = sources((4, 4, 4), seed=6)
    merge(adapters, "ties", [1.0, 1.0, 1.0])
    next(iter(adapters[1].modules.values())).B.mul_(-3.0)  # trained further, in place
    after = merge(adapters, "ties", [1.0, 1.0, 1.0]).adapter
    old = ref.reference_merge(adapters, "ties", [1.0, 1.0, 1.0])
    for p, (A, B) in old.items():
        assert rel(_product(after.modules[p].A, after.modules[p].B), _product(A, B)) < TOL_F32_SVD, p


@pytest.mark.parametrize("shape", [(40, 64), (64, 40), (32, 32)])
@pytest.mark.parametrize("rank", [1, 7, 40, 80])
def test_top_svd_is_the_exact_truncation(shape, rank):
    g = torch.Generator().manual_seed(rank)
    D = torch.randn(*shape, generator=g, dtype=torch.float64)
    A, B = top_svd(D, rank)
    assert A.shape == (rank, shape[1]) and B.shape == (shape[0], rank)
    assert rel(B @ A, _exact_truncation(D, rank)) < TOL_EXACT


@pytest.mark.parametrize("weights", [[1.0, 1.0, 1.0], [1.0, -0.5, 0.7], [0.0, 1.0, 2.0], [-1.0, -2.0, 0.5]])
@pytest.mark.parametrize("density", [0.2, 0.5, 1.0])
def test_interference_equals_the_reference(weights, density):
    named = {a.name: a for a in sources((2, 4, 6), seed=3)}
    new = interference(named, weights, density=density).to_dict("records")
    old = ref.reference_interference(named, weights, density)
    assert len(new) == len(old)
    for n, o in zip(new, old, strict=True):
        for key in ("conflict_rate", "overlap"):
            assert (math.isnan(n[key]) and math.isnan(o[key])) or n[key] == o[key], key
        assert (math.isnan(n["mass_lost"]) and math.isnan(o["mass_lost"])) or math.isclose(
            n["mass_lost"], o["mass_lost"], rel_tol=1e-12, abs_tol=1e-12)


@pytest.mark.parametrize("method", sorted({m.removesuffix("_svd") for m in ELEMENTWISE}))
def test_blocked_runner_combines_bit_for_bit(method, monkeypatch):
    """The runner's (K, b) blocks (here 7 entries, so blocks split rows and end short) give the
    reference's dense result before truncation, bit for bit."""
    import workbench.merging.inputs as inputs_module

    seen: dict[int, torch.Tensor] = {}
    real = inputs_module.dense_svd

    def capture(D, rank, how="exact", generator=None):
        seen[len(seen)] = D.clone()
        return real(D, rank, how, generator)

    monkeypatch.setattr(inputs_module, "BLOCK_BYTES", 7 * 3 * 4)  # 7 float32 entries of K = 3 sources
    monkeypatch.setattr(inputs_module, "dense_svd", capture)
    adapters = sources((2, 4, 6), seed=4)
    weights = [0.8, -0.4, 1.3]
    merge(adapters, method, weights, seed=5)
    inputs = ref.Inputs(adapters, weights, 5, list(adapters[0].modules))
    own = {k: v for k, v in MERGES.check(method, {}).items() if k not in ("rank", "truncate", "peft_compat")}
    by_shape: dict[tuple, list[str]] = {}  # the runner's order: modules grouped by shape
    for p in inputs.paths:
        f = adapters[0].modules[p]
        by_shape.setdefault((f.out_features, f.in_features), []).append(p)
    order = [p for group in by_shape.values() for p in group]
    assert len(seen) == len(order)
    for j, p in enumerate(order):
        deltas, w = inputs.deltas(p)
        old = ref.ELEMENTWISE[method](deltas, w, generators=inputs.generators(p), peft_compat=False, **own)
        assert torch.equal(seen[j], old), (method, p)


@pytest.mark.parametrize("seed", range(6))
def test_kmeans_restarts_together_equal_the_reference(seed):
    from workbench.merging.kmeans import kmeans

    g = torch.Generator().manual_seed(seed)
    n, d, k = [(32, 64, 8), (12, 40, 4), (9, 5, 3)][seed % 3]
    points = torch.randn(n, d, generator=g, dtype=torch.float64)
    if seed % 2:
        points[: n // 2] = points[0]  # repeated points: empty clusters
    new = kmeans(points, k, generator=torch.Generator().manual_seed(seed), n_init=5)
    old = ref.kmeans(points, k, generator=torch.Generator().manual_seed(seed), n_init=5)
    assert torch.equal(new, old)
