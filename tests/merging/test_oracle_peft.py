"""Our merges against peft 0.21.2: ``merge_utils`` on the same tensors and seeds, and the ΔW of
``LoraModel.add_weighted_adapter`` on a tiny Llama. Where we differ on purpose, a test shows it."""

from __future__ import annotations

import warnings

import pytest
import torch
from peft import PeftModel
from peft.utils import merge_utils

from tests.conftest import tiny_lab
from tests.merging.helpers import rel, sources, weighted_sum
from workbench import zoo
from workbench.merging import merge
from workbench.merging.methods.dare_linear import dare_linear
from workbench.merging.methods.dare_ties import dare_ties
from workbench.merging.methods.magnitude_prune import magnitude_prune
from workbench.merging.methods.ties import ties
from workbench.ops.sparsify import magnitude_prune_

warnings.filterwarnings("ignore", message="The density .* no pruning")



# -- merge_utils on the same tensors ----------------------------------------------------------
TENSORS = [torch.randn(24, 40, generator=torch.Generator().manual_seed(i)) for i in range(3)]


def _ours(fn, weights, seed=None, peft_compat=False, **params):
    g = torch.Generator().manual_seed(seed) if seed is not None else None
    stack = torch.stack([t.clone() for t in TENSORS])
    return fn(stack, torch.tensor(weights), generators=[g] * len(TENSORS), peft_compat=peft_compat, **params)


def _peft(fn, weights, seed=None, **params):
    if seed is not None:
        torch.manual_seed(seed)
    return fn([t.clone() for t in TENSORS], torch.tensor(weights), **params)


@pytest.mark.parametrize("density", [0.2, 0.5, 1.0])
@pytest.mark.parametrize("weights", [[1.0, 1.0, 1.0], [0.3, 1.2, 0.7], [1.0, -0.5, 2.0]])
def test_magnitude_prune_equals_peft_exactly(density, weights):
    torch.testing.assert_close(_ours(magnitude_prune, weights, density=density),
                               _peft(merge_utils.magnitude_prune, weights, density=density), rtol=0, atol=0)


@pytest.mark.parametrize("density", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("weights", [[1.0, 1.0, 1.0], [0.3, 1.2, -0.7]])
def test_dare_linear_equals_peft_exactly_for_the_same_seed(density, weights):
    theirs = _peft(merge_utils.dare_linear, weights, seed=7, density=density)
    torch.testing.assert_close(_ours(dare_linear, weights, seed=7, density=density), theirs, rtol=0, atol=0)


@pytest.mark.parametrize("method", ["total", "frequency"])
@pytest.mark.parametrize("density", [0.2, 0.7, 1.0])
@pytest.mark.parametrize("w", [1.0, 2.0])
def test_ties_equals_peft_exactly_for_equal_positive_weights(method, density, w):
    """Equal positive weights: electing on weighted or unweighted tensors is the same election."""
    weights = [w, w, w]
    ours = _ours(ties, weights, density=density, majority_sign_method=method)
    torch.testing.assert_close(ours, _peft(merge_utils.ties, weights, density=density,
                                           majority_sign_method=method), rtol=0, atol=0)


@pytest.mark.parametrize("density", [0.3, 1.0])
def test_dare_ties_equals_peft_exactly_for_equal_weights_and_the_same_seed(density):
    ours = _ours(dare_ties, [1.0, 1.0, 1.0], seed=5, density=density)
    torch.testing.assert_close(ours, _peft(merge_utils.dare_ties, [1.0, 1.0, 1.0], seed=5, density=density),
                               rtol=0, atol=0)


@pytest.mark.parametrize("fn,peft_fn,seed", [(ties, merge_utils.ties, None),
                                             (dare_ties, merge_utils.dare_ties, 5)])
def test_peft_compat_election_equals_peft_exactly_for_any_weights(fn, peft_fn, seed):
    weights = [0.3, 1.2, -0.7]
    ours = _ours(fn, weights, seed=seed, peft_compat=True, density=0.4)
    torch.testing.assert_close(ours, _peft(peft_fn, weights, seed=seed, density=0.4), rtol=0, atol=0)


def test_deliberate_difference_weighted_election():
    """Unequal weights: we elect the sign of Σ wᵢτ̂ᵢ, peft the sign of Σ τ̂ᵢ; the results differ.

    And with weight 0, peft still counts the adapter in the mean (dividing by 3 where we divide by 2).
    """
    weights = [0.2, 3.0, 1.0]
    assert not torch.equal(_ours(ties, weights, density=0.5), _peft(merge_utils.ties, weights, density=0.5))
    zero = [1.0, 0.0, 1.0]
    ours, theirs = _ours(ties, zero, density=1.0), _peft(merge_utils.ties, zero, density=1.0)
    without = torch.stack([TENSORS[0].clone(), TENSORS[2].clone()])
    alone = ties(without, torch.tensor([1.0, 1.0]), generators=[None, None], peft_compat=False, density=1.0)
    torch.testing.assert_close(ours, alone, rtol=0, atol=0)  # ours: weight 0 removes the adapter
    assert rel(theirs, alone) > 0.05  # peft: it still dilutes the disjoint mean


def test_magnitude_mask_equals_topk_without_ties():
    t = torch.randn(300, 70, generator=torch.Generator().manual_seed(1))
    ours = magnitude_prune_(t.clone(), 0.37)
    torch.testing.assert_close(ours, merge_utils.magnitude_based_pruning(t, 0.37), rtol=0, atol=0)
    tied = torch.tensor([3.0, 1.0, 1.0, 1.0, -2.0, 0.5])  # cut inside the tie: the first ones stay
    assert magnitude_prune_(tied.clone(), 0.5).tolist() == [3.0, 1.0, 0.0, 0.0, -2.0, 0.0]


# -- add_weighted_adapter on a tiny Llama -----------------------------------------------------
def _peft_model(adapters, tmp_path):
    """A peft model on tiny-llama holding our adapters (exported by the lab, loaded by peft)."""
    lab = tiny_lab("tiny-llama")
    for a in adapters:
        lab.add_adapter(a.copy())
        lab.save_adapter(a.name, tmp_path / a.name)
    model = PeftModel.from_pretrained(zoo.load("tiny-llama").model, tmp_path / adapters[0].name,
                                      adapter_name=adapters[0].name)
    for a in adapters[1:]:
        model.load_adapter(tmp_path / a.name, adapter_name=a.name)
    return model


def _peft_delta(model, adapter: str, path: str) -> torch.Tensor:
    return model.base_model.model.get_submodule(path).get_delta_weight(adapter).double()


def _merged_peft(adapters, weights, tmp_path, combination_type, seed=None, **kw):
    """peft's merge; with ``seed``, torch's generator is seeded once the new adapter is injected (its
    random init draws first), so peft's DARE draws start from ``torch.manual_seed(seed)``."""
    model = _peft_model(adapters, tmp_path)
    if seed is not None:
        inject = model.base_model.inject_adapter

        def inject_then_seed(*args, **kwargs):
            out = inject(*args, **kwargs)
            torch.manual_seed(seed)
            return out

        model.base_model.inject_adapter = inject_then_seed
    model.add_weighted_adapter([a.name for a in adapters], weights, "m", combination_type=combination_type,
                               **kw)
    return model


@pytest.mark.parametrize("method", ["svd", "cat"])
@pytest.mark.parametrize("ranks,weights", [((4, 4, 4), [1.0, 0.5, -0.8]), ((2, 4, 6), [0.7, 1.3, 0.4])])
def test_svd_and_cat_equal_peft_add_weighted_adapter(method, ranks, weights, tmp_path):
    adapters = sources(ranks, seed=1)
    model = _merged_peft(adapters, weights, tmp_path, method)
    ours = merge(adapters, method, weights).adapter
    for path in adapters[0].modules:
        assert rel(ours.delta(path), _peft_delta(model, "m", path)) < 1e-5, path
    if method == "cat":  # and cat is the exact weighted sum
        assert all(rel(ours.delta(p), weighted_sum(adapters, weights, p)) < 1e-6 for p in ours.modules)


@pytest.mark.parametrize("rank", [None, 3, 9])
def test_svd_rank_equals_peft_svd_rank(rank, tmp_path):
    adapters = sources((4, 4, 4), seed=2)
    model = _merged_peft(adapters, [1.0, 1.0, 1.0], tmp_path, "svd", svd_rank=rank)
    ours = merge(adapters, "svd", [1.0, 1.0, 1.0], rank=rank).adapter
    for path in adapters[0].modules:
        assert rel(ours.delta(path), _peft_delta(model, "m", path)) < 1e-5


@pytest.mark.parametrize("method", ["ties_svd", "magnitude_prune_svd", "dare_linear_svd", "dare_ties_svd"])
def test_svd_variants_equal_peft(method, tmp_path):
    """ΔW-space elementwise methods then SVD to max rᵢ: peft's ``*_svd`` types (peft_compat: peft's
    election and peft's single random stream, so unequal weights and DARE match too)."""
    adapters = sources((4, 4, 4), seed=3)
    weights = [1.0, 0.6, 1.4]
    model = _merged_peft(adapters, weights, tmp_path, method, seed=11, density=0.4)
    ours = merge(adapters, method, weights, density=0.4, peft_compat=True, seed=11).adapter
    for path in adapters[0].modules:
        assert rel(ours.delta(path), _peft_delta(model, "m", path)) < 1e-5, path


@pytest.mark.parametrize("method,peft_type", [("task_arithmetic", "linear"), ("ties", "ties"),
                                              ("magnitude_prune", "magnitude_prune"),
                                              ("dare_linear", "dare_linear"), ("dare_ties", "dare_ties")])
def test_peft_compat_reproduces_peft_factor_space(method, peft_type, tmp_path):
    adapters = sources((4, 4, 4), seed=4)
    weights = [1.0, -0.6, 1.4]
    params = {} if method == "task_arithmetic" else {"density": 0.5}
    model = _merged_peft(adapters, weights, tmp_path, peft_type, seed=13, **params)
    ours = merge(adapters, method, weights, peft_compat=True, seed=13, **params).adapter
    for path in adapters[0].modules:
        assert rel(ours.delta(path), _peft_delta(model, "m", path)) < 1e-5, path


def test_issue_3004_peft_linear_is_not_the_weighted_sum(tmp_path):
    """peft's factor-space linear merge multiplies (Σ bᵢBᵢ)(Σ aᵢAᵢ): cross terms BᵢAⱼ. With weights
    (1, −1) it is far from ΔW₁ − ΔW₂; ours (ΔW space) is that difference exactly."""
    adapters = sources((4, 4), seed=5)
    weights = [1.0, -1.0]
    model = _merged_peft(adapters, weights, tmp_path, "linear")
    ours = merge(adapters, "task_arithmetic", weights).adapter
    for path in adapters[0].modules:
        exact = weighted_sum(adapters, weights, path)
        assert rel(ours.delta(path), exact) < 1e-6
        assert rel(_peft_delta(model, "m", path), exact) > 0.5
    # Negating every weight does negate peft's result in 0.21.2 (the sign sits on A only, #2918);
    # the cross terms above are what remains of #3004.
    flipped = _merged_peft(adapters, [-1.0, 1.0], tmp_path / "flipped", "linear")
    path = next(iter(adapters[0].modules))
    assert rel(_peft_delta(flipped, "m", path), -_peft_delta(model, "m", path)) < 1e-6
