"""LoRA-LEGO on a planted case: rank-1 units drawn around known prototypes must be clustered by prototype.

Each of N sources holds one noisy copy of each of K prototype units (b_g, a_g), in its own shuffled
rank order (MSUs are permutation invariant). LoRA-LEGO with k = K must put the copies of one prototype
in one cluster, so the merged update is Σ_g b_g a_gᵀ up to the noise; k-means replaced by random
labels mixes prototypes and misses it by far. Also: parameter reweighting gives each centroid its
members' mean norm exactly, and both output reweightings (√(r̄/k) and matching) give their γ.
"""

from __future__ import annotations

import math

import pytest
import torch

from tests.merging.helpers import rel, sources
from workbench.merging import merge
from workbench.merging.inputs import MergeInputs
from workbench.merging.kmeans import kmeans
from workbench.merging.methods.lora_lego import units

K, NOISE = 4, 0.03


def planted(seed: int, n_sources: int = 3):
    """Sources whose units are noisy copies of K prototypes; returns (adapters, prototypes, groups)."""
    adapters = sources((K,) * n_sources, seed=seed, targets="attention-qv")
    g = torch.Generator().manual_seed(1000 + seed)
    protos, groups = {}, {}
    for path, f in adapters[0].modules.items():
        out_f, in_f = f.B.shape[0], f.A.shape[1]
        pa = torch.randn(K, in_f, generator=g, dtype=torch.float64)  # prototypes a_g (K, in)
        pb = torch.randn(out_f, K, generator=g, dtype=torch.float64)  # b_g as columns (out, K)
        protos[path] = (pa, pb)
        order = []
        for a in adapters:
            perm = torch.randperm(K, generator=g)
            s = a.scale(path)
            A = pa[perm] + NOISE * torch.randn(K, in_f, generator=g, dtype=torch.float64)
            B = pb[:, perm] + NOISE * torch.randn(out_f, K, generator=g, dtype=torch.float64)
            # the pool folds √s into both halves: store a/√s, b/√s so the units are the prototypes
            a.modules[path].A.copy_(A / math.sqrt(s))
            a.modules[path].B.copy_(B / math.sqrt(s))
            order.append(perm)
        groups[path] = torch.cat(order)  # the prototype of every pooled unit, in pool order
    return adapters, protos, groups


def _inputs(adapters, seed: int) -> MergeInputs:
    return MergeInputs(adapters, [1.0] * len(adapters), seed, list(adapters[0].modules))


def _same_partition(labels: torch.Tensor, groups: torch.Tensor) -> bool:
    pairs = {(int(a), int(b)) for a, b in zip(labels, groups, strict=True)}
    return len(pairs) == len({int(x) for x in labels}) == len({int(x) for x in groups})


@pytest.mark.parametrize("seed", range(3))
def test_kmeans_recovers_the_planted_groups(seed):
    adapters, _, groups = planted(seed)
    inputs = _inputs(adapters, seed)
    for path in list(adapters[0].modules)[:2]:
        pool, _, _ = units(inputs, path)
        labels = kmeans(pool, K, generator=torch.Generator().manual_seed(seed), n_init=3)
        assert _same_partition(labels, groups[path]), path


@pytest.mark.parametrize("seed", range(3))
def test_lora_lego_merges_the_copies_of_each_prototype(seed):
    adapters, protos, _ = planted(seed)
    lego = merge(adapters, "lora_lego", rank=K, seed=seed).adapter
    for path, (pa, pb) in protos.items():
        target = pb @ pa  # Σ_g b_g a_gᵀ: one centroid per prototype, at the prototype's norm
        assert rel(lego.delta(path).double(), target) < 0.05, path
        # the planted case is not easy by accident: one cluster per source unit would be ≈ 3× target
        cat = merge(adapters, "cat").adapter.delta(path).double()
        assert rel(cat, target) > 1.0


def test_random_labels_miss_the_planted_merge():
    """What the k-means step buys: the same reassembly with random labels is far from the target."""
    adapters, protos, _ = planted(0)
    inputs = _inputs(adapters, 0)
    path, (pa, pb) = next(iter(protos.items()))
    pool, _, in_f = units(inputs, path)
    labels = torch.randint(K, (len(pool),), generator=torch.Generator().manual_seed(0))
    cents = torch.stack([pool[labels == j].mean(0) for j in range(K)])
    assert rel(cents[:, in_f:].T @ cents[:, :in_f], pb @ pa) > 0.3


def test_parameter_reweighting_gives_each_centroid_its_members_mean_norm():
    adapters, _, groups = planted(1)
    inputs = _inputs(adapters, 1)
    lego = merge(adapters, "lora_lego", rank=K, seed=1).adapter
    for path in adapters[0].modules:
        pool, _, _ = units(inputs, path)
        f, s = lego.modules[path], lego.scale(path)
        # merged unit j adds s·b'_j a'_jᵀ, of norm s‖a'_j‖‖b'_j‖: the rescaled member mean's ‖c_a‖‖c_b‖
        want = []
        for g in range(K):
            members = pool[groups[path] == g]
            c = members.mean(0)
            c = c * members.norm(dim=1).mean() / c.norm()
            want.append(float(c[:f.A.shape[1]].norm() * c[f.A.shape[1]:].norm()))
        have = [float(f.A[j].double().norm() * f.B[:, j].double().norm()) * s for j in range(K)]
        assert sorted(have) == pytest.approx(sorted(want), rel=1e-5), path


@pytest.mark.parametrize("k", [2, 4])
def test_sqrt_rank_output_reweighting_is_sqrt_mean_rank_over_k(k):
    adapters, _, _ = planted(2)
    plain = merge(adapters, "lora_lego", rank=k, seed=2).adapter
    scaled = merge(adapters, "lora_lego", rank=k, seed=2, output_reweight="sqrt_rank").adapter
    for path in adapters[0].modules:
        torch.testing.assert_close(scaled.delta(path).double(), math.sqrt(K / k) * plain.delta(path).double(),
                                   atol=1e-6, rtol=1e-5)


def test_svd_units_are_the_balanced_svd_of_each_source_and_keep_the_sum():
    """unit_basis="svd": each source's units become √σⱼ·(vⱼ, uⱼ) of its own s·B·A (orthogonal, sorted),
    so a shared A initialisation no longer shows; with one cluster per unit the merge is still the sum."""
    adapters = sources((3, 3), seed=4, targets="attention-qv")
    inputs = _inputs(adapters, 0)
    path = next(iter(adapters[0].modules))
    pool, _, in_f = units(inputs, path, unit_basis="svd")
    for i, a in enumerate(adapters):
        part = pool[3 * i:3 * i + 3]  # (3, in + out)
        A, B = part[:, :in_f], part[:, in_f:]
        sigma = torch.linalg.svdvals(a.delta(path).double())[:3]
        assert A.norm(dim=1) ** 2 == pytest.approx(sigma.tolist(), rel=1e-6)  # ‖aⱼ‖² = σⱼ
        assert B.norm(dim=1) ** 2 == pytest.approx(sigma.tolist(), rel=1e-6)  # ‖bⱼ‖² = σⱼ
        torch.testing.assert_close(A @ A.T, torch.diag(sigma), atol=1e-6, rtol=1e-6)  # orthogonal aⱼ
        torch.testing.assert_close(B.T @ A, a.delta(path).double(), atol=1e-6, rtol=1e-6)
    merged = merge(adapters, "lora_lego", rank=6, unit_basis="svd").adapter
    for p in adapters[0].modules:
        want = sum(a.delta(p).double() for a in adapters)
        assert rel(merged.delta(p).double(), want) < 1e-5


def test_shared_a_initialisation_groups_units_by_rank_index_and_svd_units_do_not():
    """Sources that share A (one init seed) and differ only in B: the stored units cluster by rank
    index; the SVD units of each source do not carry the index."""
    from workbench.analysis.unit_clusters import cluster_measures
    from workbench.merging.methods.lora_lego import lego_clusters

    adapters = sources((4, 4, 4), seed=5, targets="attention-qv")
    for a in adapters:
        for p, f in a.modules.items():
            f.A.copy_(adapters[0].modules[p].A)  # one shared A ...
            f.B.mul_(0.01)  # ... and small B, as after a short training from one init
    path = next(iter(adapters[0].modules))
    stored = lego_clusters(adapters, rank=4, seed=0, n_init=3, paths=[path])[path]
    svd = lego_clusters(adapters, rank=4, seed=0, n_init=3, paths=[path], unit_basis="svd")[path]
    assert cluster_measures(stored)["same_index_share"] == 1.0
    assert cluster_measures(svd)["same_index_share"] < 1.0
