"""Gradient methods and loss weightings, each on its defining property."""

from __future__ import annotations

import math

import pytest
import torch

from workbench.training import GRAD_METHODS, LOSS_WEIGHTINGS


def conflicting(seed: int, T: int = 2, D: int = 30) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    grads = torch.randn(T, D, generator=g, dtype=torch.float64)
    grads[1] = -0.8 * grads[0] + 0.4 * torch.randn(D, generator=g, dtype=torch.float64)
    return grads


@pytest.mark.parametrize("name", GRAD_METHODS.names())
def test_every_method_gives_a_descent_direction_for_one_task(name):
    g = torch.randn(1, 20, dtype=torch.float64)
    out = GRAD_METHODS.get(name)(seed=0).combine(g)
    assert out.shape == (20,) and torch.isfinite(out).all()
    cos = torch.nn.functional.cosine_similarity(out, g[0], dim=0)
    assert cos.item() == pytest.approx(1.0)


@pytest.mark.parametrize("name", GRAD_METHODS.names())
def test_every_method_keeps_the_scale_of_the_sum_for_agreeing_tasks(name):
    g = torch.randn(1, 20, dtype=torch.float64).repeat(3, 1)
    out = GRAD_METHODS.get(name)(seed=0).combine(g)
    ratio = out.norm() / g.sum(0).norm()
    assert 0.5 < ratio.item() < 1.5  # same direction, comparable length (CAGrad: (1+c)/(1+c²))


def test_sum_is_the_sum():
    g = conflicting(0, T=3)
    torch.testing.assert_close(GRAD_METHODS.get("sum")().combine(g), g.sum(0))


@pytest.mark.parametrize("seed", range(5))
def test_pcgrad_removes_negative_inner_products_in_the_two_task_case(seed):
    g = conflicting(seed)
    assert g[0] @ g[1] < 0
    pc = GRAD_METHODS.get("pcgrad")(seed=seed)
    proj = pc.project(g)
    assert (proj[0] @ g[1]).item() == pytest.approx(0, abs=1e-9)  # projected onto the normal plane
    assert (proj[1] @ g[0]).item() == pytest.approx(0, abs=1e-9)
    update = pc.combine(g)
    assert (update @ g[0]) >= 0 and (update @ g[1]) >= 0  # no task's loss goes up to first order
    agree = torch.stack([g[0], g[0] + 0.1 * g[1]])  # positive inner product: left alone
    assert agree[0] @ agree[1] > 0
    torch.testing.assert_close(pc.project(agree), agree)


@pytest.mark.parametrize("seed", range(4))
def test_cagrad_solves_its_stated_problem(seed):
    c = 0.5
    g = conflicting(seed, T=2 if seed < 2 else 3)
    m = GRAD_METHODS.get("cagrad")(c=c)
    d = m.direction(g)
    g0 = g.mean(0)
    assert (d - g0).norm() <= c * g0.norm() * (1 + 1e-6)  # inside the ball
    worst = (g @ d).min()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(2000):  # no point of the ball does better on the worst task
        u = torch.randn(g.shape[1], generator=gen, dtype=torch.float64)
        radius = c * g0.norm() * torch.rand(1, generator=gen, dtype=torch.float64) ** (1 / 30)
        other = g0 + radius * u / u.norm()
        assert (g @ other).min() <= worst + 1e-6 * g.norm() ** 2
    if g.shape[0] == 2:  # the dual weights minimize F(w) = g_wᵀg0 + c‖g0‖‖g_w‖ (grid check)
        gram = g @ g.T
        w = m.weights(gram)

        def F(w):
            return w @ gram.mean(1) + c * g0.norm() * (w @ gram @ w).sqrt()

        grid = min(F(torch.tensor([x, 1 - x], dtype=torch.float64)).item()
                   for x in torch.linspace(0, 1, 1001))
        assert F(w).item() <= grid + 1e-9
    torch.testing.assert_close(GRAD_METHODS.get("cagrad")(c=0.0).combine(g), g.sum(0))  # c = 0: plain


def test_gradvac_lifts_each_pair_to_its_target_cosine():
    g = conflicting(1)
    gv = GRAD_METHODS.get("gradvac")(beta=0.5)
    gv.targets = torch.full((2, 2), 0.3, dtype=torch.float64)
    before = torch.nn.functional.cosine_similarity(g[0], g[1], dim=0).item()
    adjusted = gv.adjust(g)
    after0 = torch.nn.functional.cosine_similarity(adjusted[0], g[1], dim=0).item()
    assert before < 0.3 and after0 == pytest.approx(0.3, abs=1e-9)  # cos(g_0', g_1) = target
    assert gv.targets[0, 1].item() == pytest.approx(0.5 * 0.3 + 0.5 * before)  # the EMA moved
    fresh = GRAD_METHODS.get("gradvac")()  # targets start at 0: a conflicting pair becomes orthogonal
    out = fresh.adjust(g)
    assert torch.nn.functional.cosine_similarity(out[0], g[1], dim=0).item() == pytest.approx(0, abs=1e-9)
    assert math.isclose(fresh.targets[0, 1].item(), 0.01 * before)


def test_balanced_weighting_gives_each_class_equal_weight_and_tasks_equal_shares():
    feats = [{"input_ids": [1, 2], "labels": [-100, c]} for c in [5] * 9 + [6] * 3]
    bal = LOSS_WEIGHTINGS.get("balanced")().fit([feats])
    w = bal.example_weights(0, feats)
    assert w[:9].sum().item() == pytest.approx(w[9:].sum().item())  # w_c ∝ 1/n_c
    assert w.mean().item() == pytest.approx(1.0)
    assert bal.task_weight(6, 8, 2) == 0.5 and bal.task_weight(2, 8, 2) == 0.5
    uni = LOSS_WEIGHTINGS.get("uniform")().fit([feats])
    assert uni.example_weights(0, feats).tolist() == [1.0] * 12 and uni.task_weight(6, 8, 2) == 0.75
