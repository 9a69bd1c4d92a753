"""SLERP, NuSLERP, Karcher, Model Stock and SCE against independent dense computations: mergekit's
formulas written out on the flattened updates (float64), and planted sets with a known answer."""

from __future__ import annotations

import math

import pytest
import torch

from tests.merging.helpers import delta, rel, sources
from workbench.adapters import new_adapter
from workbench.errors import WorkbenchError
from workbench.merging import merge

PATH = "model.layers.0.self_attn.q_proj"


def planted(name: str, B: torch.Tensor, A: torch.Tensor):
    """An adapter on one 64×64 module with ΔW = B·A exactly (alpha = r: scale 1)."""
    a = new_adapter(name, {PATH: (B.shape[0], A.shape[1])}, r=A.shape[0], alpha=A.shape[0], init="random")
    a.modules[PATH].A, a.modules[PATH].B = A.float().clone(), B.float().clone()
    return a


def mk_slerp(t, v0, v1, threshold=0.9995, eps=1e-8):
    """mergekit's ``slerp`` on flattened tensors (its numpy code, in torch float64)."""
    u0 = v0 / v0.norm() if v0.norm() > eps else v0
    u1 = v1 / v1.norm() if v1.norm() > eps else v1
    dot = float((u0 * u1).sum())
    if abs(dot) > threshold:
        return (1 - t) * v0 + t * v1
    theta = math.acos(dot)
    return math.sin(theta - theta * t) / math.sin(theta) * v0 + math.sin(theta * t) / math.sin(theta) * v1


def mk_nuslerp(t, v0, v1, dim=-1, eps=1e-8, flatten=False):
    """mergekit's ``nuslerp`` (its torch code, float64)."""
    shape = v0.shape
    if flatten:
        v0, v1 = v0.reshape(-1), v1.reshape(-1)
    elif dim != -1:
        v0, v1 = v0.transpose(dim, -1), v1.transpose(dim, -1)
    u0 = v0 / v0.norm(dim=-1, keepdim=True).clamp(min=1e-7)
    u1 = v1 / v1.norm(dim=-1, keepdim=True).clamp(min=1e-7)
    theta = torch.acos((u0 * u1).sum(-1, keepdim=True).clamp(-1, 1))
    res = (torch.sin((1 - t) * theta) * v0 + torch.sin(t * theta) * v1) / torch.sin(theta)
    colinear = (torch.sin(theta).abs() < eps).squeeze()
    res[colinear] = (1 - t) * v0[colinear] + t * v1[colinear]
    if dim != -1 and not flatten:
        res = res.transpose(dim, -1)
    return res.reshape(shape)


# -- SLERP ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("t", [0.0, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("weights", [[1.0, 1.0], [0.5, -2.0]])
def test_slerp_of_two_updates_is_the_closed_form(t, weights):
    a, b = sources((3, 5), seed=30)
    result = merge([a, b], "slerp", weights, t=t)
    for path in a.modules:
        expected = mk_slerp(t, weights[0] * delta(a, path), weights[1] * delta(b, path))
        assert rel(result.adapter.delta(path), expected) < 1e-5
    assert set(result.adapter.ranks.values()) == {8}  # exact at r₀ + r₁


@pytest.mark.parametrize("t", [1 / 3, 0.5, 0.8])
def test_slerp_of_two_orthogonal_unit_vectors_walks_the_quarter_circle(t):
    """The textbook closed form: at 90°, slerp(t) = cos(tπ/2)·v₀ + sin(tπ/2)·v₁."""
    g = torch.Generator().manual_seed(5)
    q, _ = torch.linalg.qr(torch.randn(64, 4, generator=g, dtype=torch.float64))
    M, E = torch.outer(q[:, 0], q[:, 1]), torch.outer(q[:, 2], q[:, 3])  # ‖·‖ = 1, ⟨M, E⟩ = 0
    a = planted("a", q[:, :1] * 1.0, q[:, 1:2].T)
    b = planted("b", q[:, 2:3] * 1.0, q[:, 3:4].T)
    out = merge([a, b], "slerp", t=t).adapter.delta(PATH)
    assert rel(out, math.cos(t * math.pi / 2) * M + math.sin(t * math.pi / 2) * E) < 1e-6


@pytest.mark.parametrize("factor", [2.0, -0.5])
def test_slerp_of_parallel_updates_falls_back_to_linear(factor):
    a = sources((4,), seed=31)[0]
    b = a.copy(name="b")
    for f in b.modules.values():
        f.B.mul_(factor)
    out = merge([a, b], "slerp", t=0.3).adapter
    for path in a.modules:
        expected = 0.7 * delta(a, path) + 0.3 * delta(b, path)
        assert rel(out.delta(path), expected) < 1e-5


def test_slerp_with_a_zero_update_is_linear():
    a, b = sources((4, 4), seed=32)
    out = merge([a, b], "slerp", [1.0, 0.0], t=0.25).adapter
    for path in a.modules:
        assert rel(out.delta(path), 0.75 * delta(a, path)) < 1e-5


def test_slerp_refuses_other_than_two_adapters_and_t_out_of_range():
    a, b, c = sources((4, 4, 4), seed=33)
    with pytest.raises(WorkbenchError, match="exactly two adapters; got 3.*karcher"):
        merge([a, b, c], "slerp")
    with pytest.raises(WorkbenchError, match=r"t=1.5 is out of range.*\[0, 1\]"):
        merge([a, b], "slerp", t=1.5)
    with pytest.raises(WorkbenchError, match="exactly two"):
        merge([a, b, c], "nuslerp")


# -- NuSLERP ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("flatten,row_wise", [(True, False), (False, False), (False, True)])
def test_nuslerp_matches_mergekit(flatten, row_wise):
    a, b = sources((3, 5), seed=34)
    weights = [1.0, 3.0]
    out = merge([a, b], "nuslerp", weights, flatten=flatten, row_wise=row_wise).adapter
    for path in a.modules:
        expected = mk_nuslerp(0.75, delta(a, path), delta(b, path), dim=0 if row_wise else -1,
                              flatten=flatten)
        assert rel(out.delta(path), expected) < 1e-5


def test_nuslerp_weight_zero_returns_the_other_and_signs_flip_directions():
    a, b = sources((3, 5), seed=35)
    for path in a.modules:
        assert rel(merge([a, b], "nuslerp", [2.0, 0.0]).adapter.delta(path), delta(a, path)) < 1e-5
        assert rel(merge([a, b], "nuslerp", [0.0, 0.5]).adapter.delta(path), delta(b, path)) < 1e-5
    flipped = merge([a, b], "nuslerp", [1.0, -1.0]).adapter
    for path in a.modules:
        assert rel(flipped.delta(path), mk_nuslerp(0.5, delta(a, path), -delta(b, path), flatten=True)) < 1e-5


# -- Karcher ---------------------------------------------------------------------------------------
def _circle_set(angles, norms, seed=0):
    """Adapters ΔWᵢ = nᵢ(cos φᵢ·M + sin φᵢ·E), M ⟂ E unit rank-1 matrices: points on one great circle."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(64, 4, generator=g, dtype=torch.float64))
    M = torch.outer(q[:, 0], q[:, 1])  # ‖M‖ = 1; E = q₂q₃ᵀ is orthogonal to it
    out = []
    for i, (phi, n) in enumerate(zip(angles, norms, strict=True)):
        B = torch.stack([n * math.cos(phi) * q[:, 0], n * math.sin(phi) * q[:, 2]], dim=1)  # (64, 2)
        A = torch.stack([q[:, 1], q[:, 3]])  # (2, 64)
        out.append(planted("abcdefg"[i], B, A))
    return out, M


@pytest.mark.parametrize("weights,angles", [([1.0, 1.0, 1.0], [0.9, -0.3, -0.6]),
                                            ([2.0, 1.0, 1.0], [0.3, -0.2, -0.4])])
def test_karcher_finds_the_planted_mean_on_a_great_circle(weights, angles):
    """On a geodesic the Karcher mean is where the weighted signed angles sum to 0 (here: M)."""
    norms = [1.0, 2.0, 3.0]
    adapters, M = _circle_set(angles, norms)
    p = torch.tensor(weights) / sum(weights)
    expected = float((p * torch.tensor(norms)).sum()) * M
    exact = rel(merge(adapters, "karcher", weights, max_iter=200, tol=1e-12).adapter.delta(PATH), expected)
    assert exact < 1e-6
    default = merge(adapters, "karcher", weights)  # mergekit's 10 steps, tol 1e-5
    assert rel(default.adapter.delta(PATH), expected) < 1e-4
    linear = sum(w * delta(a, PATH) / delta(a, PATH).norm() for w, a in zip(p, adapters, strict=True))
    assert rel(linear / linear.norm() * expected.norm(), expected) > 100 * max(exact, 1e-8)  # not linear


def test_karcher_of_equal_directions_is_their_mean_norm():
    a = sources((4,), seed=36)[0]
    b = a.copy(name="b")
    for f in b.modules.values():
        f.B.mul_(3.0)
    out = merge([a, b], "karcher").adapter
    for path in a.modules:
        assert rel(out.delta(path), 2.0 * delta(a, path)) < 1e-6


# -- Model Stock -----------------------------------------------------------------------------------
def _correlated(n, seed=37):
    """n adapters sharing A, with B = B₀ + noise: positive cosines between the updates."""
    base = sources((4,), seed=seed)[0]
    out = []
    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        a = base.copy(name="abc"[i])
        for f in a.modules.values():
            f.B.add_(0.8 * f.B.std() * torch.randn(f.B.shape, generator=g))
        out.append(a)
    return out


@pytest.mark.parametrize("n", [2, 3])
def test_model_stock_ratio_is_mergekits_formula(n):
    adapters = _correlated(n)
    result = merge(adapters, "model_stock")
    for path in adapters[0].modules:
        vs = [delta(a, path).reshape(-1) for a in adapters]
        cos = [float(vs[i] @ vs[j] / (vs[i].norm() * vs[j].norm()))
               for i in range(n) for j in range(i + 1, n)]
        c = sum(cos) / len(cos)
        t = n * c / (1 + (n - 1) * c)  # Jang et al. eq. / mergekit
        assert 0 < t < 1
        assert result.adapter.lineage["merge"]["model_stock_t"][path] == pytest.approx(t, rel=1e-6)
        assert rel(result.adapter.delta(path), t * sum(delta(a, path) for a in adapters) / n) < 1e-5


def test_model_stock_filter_wise_has_one_ratio_per_row():
    adapters = _correlated(3, seed=38)
    out = merge(adapters, "model_stock", filter_wise=True).adapter
    for path in adapters[0].modules:
        D = torch.stack([delta(a, path) for a in adapters])  # (3, out, in)
        norms = D.norm(dim=-1)  # (3, out)
        cos = torch.stack([(D[i] * D[j]).sum(-1) / (norms[i] * norms[j])
                           for i, j in ((0, 1), (0, 2), (1, 2))]).mean(0)
        t = 3 * cos / (1 + 2 * cos)  # (out,)
        assert rel(out.delta(path), t[:, None] * D.mean(0)) < 1e-5


# -- SCE -------------------------------------------------------------------------------------------
def mk_sce(tvs: torch.Tensor, density: float) -> torch.Tensor:
    """mergekit's SCETask.execute on a (K, out, in) stack of task vectors."""
    if density < 1:
        var = torch.var(tvs, dim=0, unbiased=False)
        k = int(abs(density) * torch.count_nonzero(var))
        mask = torch.zeros_like(var)
        mask.view(-1)[torch.topk(var.abs().view(-1), k=k).indices] = 1
        tvs = tvs * mask
    w = torch.tensor([float((d**2).sum()) / d.numel() for d in tvs], dtype=tvs.dtype)
    w = w / w.sum()
    majority = (tvs.sum(0) >= 0).to(tvs.dtype) * 2 - 1
    erased = w[:, None, None] * (tvs.sign() == majority).to(tvs.dtype)
    divisor = erased.sum(0)
    divisor[divisor == 0] = 1
    return (tvs * erased).sum(0) / divisor


@pytest.mark.parametrize("density", [1.0, 0.3])
def test_sce_matches_mergekit(density):
    adapters = sources((3, 4, 5), seed=39)
    weights = [1.0, 0.5, -0.8]
    out = merge(adapters, "sce", weights, density=density, rank=64).adapter  # full rank: no truncation
    for path in adapters[0].modules:
        tvs = torch.stack([w * delta(a, path) for a, w in zip(adapters, weights, strict=True)])
        expected = mk_sce(tvs, density)
        assert rel(out.delta(path), expected) < 1e-5


def test_a_failed_merge_leaves_the_lab_unchanged():
    from tests.conftest import tiny_lab

    lab = tiny_lab()
    for i, n in enumerate("abc"):
        lab.new_adapter(n, r=2 + i, seed=i, init="random")
    before = list(lab.adapters)
    for bad in [dict(method="slerp"), dict(method="karcher", max_iter=-1), dict(method="nuslerp", row_wise=2),
                dict(method="model_stock", filter_wise="yes"), dict(method="sce", density=0.0)]:
        with pytest.raises(WorkbenchError):
            lab.merge(["a", "b", "c"], **bad)
        assert list(lab.adapters) == before and lab.last_merge is None
    ok = lab.merge(["a", "c"], "slerp", t=0.25)  # ranks 2 and 4
    assert set(ok.ranks.values()) == {6} and lab.last_merge.total_error > 0


# -- the coefficients themselves ----------------------------------------------------------------------
def test_parallel_pairs_with_a_rounded_cosine_past_one_are_linear():
    """A dot product rounded a hair past ‖v₀‖‖v₁‖ (cos = 1 + 1e-12) is parallel: (1 − t, t) under both
    colinearity tests, never NaN (arccos is undefined past ±1); the same for antiparallel under nuslerp's."""
    from workbench.merging.spherical import slerp_coefficients

    past = torch.tensor(6.0 * (1 + 1e-12), dtype=torch.float64)  # ‖v₀‖ = 2, ‖v₁‖ = 3: cos past 1
    for kwargs in ({}, {"colinear_eps": 1e-8}):
        c0, c1 = slerp_coefficients(0.3, torch.tensor(2.0), torch.tensor(3.0), past, **kwargs)
        assert (float(c0), float(c1)) == pytest.approx((0.7, 0.3))
    c0, c1 = slerp_coefficients(0.3, torch.tensor(2.0), torch.tensor(3.0), -past, colinear_eps=1e-8)
    assert (float(c0), float(c1)) == pytest.approx((0.7, 0.3))


def test_slerp_coefficients_depend_on_the_angle_not_the_scale():
    """Two vectors at 60° give sin((1 − t)θ)/sin θ, sin(tθ)/sin θ whatever their norms, down to 1e-6."""
    from workbench.merging.spherical import slerp_coefficients

    theta = math.pi / 3
    want = (math.sin(0.75 * theta) / math.sin(theta), math.sin(0.25 * theta) / math.sin(theta))
    for scale in (1e3, 1.0, 1e-6):
        n0, n1 = 2.0 * scale, 0.5 * scale
        c0, c1 = slerp_coefficients(0.25, torch.tensor(n0), torch.tensor(n1), torch.tensor(n0 * n1 * 0.5))
        assert (float(c0), float(c1)) == pytest.approx(want, rel=1e-9)
