"""MoRA (reconstructed): a growing pool of self-activated rank-1 experts, top-k budget, τ, δ pruning."""

from __future__ import annotations

import math

import pytest
import torch

from tests.conftest import output_of, tiny_inputs, tiny_lab
from workbench.errors import WorkbenchError
from workbench.routing.mechanisms.mora import MoRA, add_task_ranks

IN, OUT = 16, 12


def make(r: int = 8, k: int = 3, seed: int = 0, **params) -> MoRA:
    return MoRA(IN, OUT, generator=torch.Generator().manual_seed(seed), r=r, k=k, **params)


def inputs(seed: int = 1, shape=(2, 5)) -> torch.Tensor:
    return torch.randn(*shape, IN, generator=torch.Generator().manual_seed(seed))


def record_of(router: MoRA, x: torch.Tensor):
    records = []
    handle = router.hook_route.register_forward_hook(lambda m, i, o: records.append(o))
    out = router(x, None)
    handle.remove()
    return records[0], out


def test_self_activation_topk_softmax_and_output():
    router = make(r=8, k=3, tau=0.5, scale=2.0, init="random")
    x = inputs()
    rec, out = record_of(router, x)
    h = x @ router.A[0].T
    s = h / h.pow(2).sum(-1, keepdim=True).sqrt()
    assert torch.allclose(rec.scores, s, atol=1e-6)
    top, idx = s.topk(3, dim=-1)
    assert torch.equal(rec.selected, idx)
    w = torch.zeros_like(s).scatter(-1, idx, (top / 0.5).softmax(-1))
    assert torch.allclose(rec.weights, w, atol=1e-6)
    assert torch.allclose(rec.weights.sum(-1), torch.ones(2, 5), atol=1e-6)
    assert (rec.active.sum(-1) == 3).all()
    assert torch.allclose(out, 2.0 * (w * h) @ router.B[0].T, atol=1e-6)


def test_tiny_temperature_uses_a_single_rank():
    x = inputs()
    rec, out = record_of(make(k=1, tau=1e-6, init="random"), x)
    assert ((rec.weights != 0).sum(-1) == 1).all() and torch.equal(rec.weights.amax(-1), torch.ones(2, 5))
    router = make(k=4, tau=1e-6, init="random")  # a budget of 4, but τ → 0 is winner-take-all
    rec, out = record_of(router, x)
    assert torch.allclose(rec.weights.amax(-1), torch.ones(2, 5))
    best = rec.scores.argmax(-1, keepdim=True)
    h = (x @ router.A[0].T).gather(-1, best)
    assert torch.allclose(out, h * router.B[0].T[best.squeeze(-1)], atol=1e-6)


def test_minus_infinite_delta_prunes_nothing_and_pruning_is_eval_only():
    x = inputs()
    router = make(k=3, init="random")
    assert router.delta == -math.inf
    train_out = router.train()(x, None)
    rec, eval_out = record_of(router.eval(), x)
    assert torch.equal(eval_out, train_out) and ((rec.weights != 0).sum(-1) == 3).all()

    strict = make(k=3, delta=1.5, init="random")  # every |s_i| <= 1: everything pruned
    rec, out = record_of(strict.eval(), x)
    assert not out.any() and not rec.active.any() and rec.selected is None
    assert torch.equal(strict.train()(x, None), train_out)  # training forwards never prune

    some = make(k=3, delta=0.3, init="random").eval()
    rec, _ = record_of(some, x)
    assert not rec.weights[rec.scores < 0.3].any()
    assert 0 < rec.active.sum() < 2 * 5 * 3  # fewer than k ranks on some tokens


def test_zero_B_gives_the_base_output():
    assert not make(init="lora")(inputs(), None).any()
    lab = tiny_lab()
    batch = tiny_inputs(lab.model)
    base = output_of(lab.model(**batch))
    lab.add_router("mora", "mora", r=4, k=2)
    lab.use("mora")
    assert torch.equal(output_of(lab.model(**batch)), base)


def test_bad_parameters_are_clear_errors():
    with pytest.raises(WorkbenchError, match="k <= 4"):
        make(r=4, k=5)
    with pytest.raises(WorkbenchError, match="tau"):
        make(tau=0.0)
    with pytest.raises(WorkbenchError, match="positive int"):
        make().add_task_ranks(0)


def test_add_task_ranks_freezes_the_old_ranks():
    router = make(r=4, k=2, init="random")
    old = [p.detach().clone() for p in router.parameters()]
    router.add_task_ranks(3)
    assert router.n_ranks == 7 and router.A[1].shape == (3, IN) and router.B[1].shape == (OUT, 3)
    assert not router.A[0].requires_grad and not router.B[0].requires_grad
    assert router.trainable() == [router.A[1], router.B[1]] and router.A[1].requires_grad
    x = inputs()
    rec, out = record_of(router, x)
    assert rec.shape == (2, 5, 7)
    new = [p.detach().clone() for p in router.trainable()]
    opt = torch.optim.SGD(router.parameters(), lr=0.1)
    out.pow(2).sum().backward()
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(old, [router.A[0], router.B[0]], strict=True))
    assert all(not torch.equal(a, b) for a, b in zip(new, router.trainable(), strict=True))
    same = make(r=4, k=2, init="random")
    same.add_task_ranks(3)
    assert torch.equal(same.A[1], new[0])  # the new ranks are seeded too


def test_lab_grows_the_pool_and_trains_only_the_newest_ranks():
    from workbench.training import fit

    lab = tiny_lab()
    routed = lab.add_router("mora", "mora", r=4, k=2, init="random", targets="attention")
    lab.use("mora")
    batch = tiny_inputs(lab.model)
    _, cache = lab.run(batch, record="*.hook_route")
    assert len(cache) == 8 and all(rec.shape == (3, 7, 4) for rec in cache.values())
    add_task_ranks(routed, 2)
    assert routed.params["task_ranks"] == [4, 2]
    _, cache = lab.run(batch, record="*.hook_route")
    assert all(rec.shape == (3, 7, 6) and (rec.active.sum(-1) == 2).all() for rec in cache.values())

    before = {k: v.clone() for k, v in routed.state_dict().items()}
    feats = [{"input_ids": [1, 2, 3, 4, 5], "labels": [-100, 2, 3, 4, 5], "task": 1}] * 4
    fit(lab, routed.trainable(), feats, use="mora", label="mora", steps=2, lr=1e-2, batch_size=2, seed=0,
        progress=False)
    after = routed.state_dict()
    changed = {".".join(k.split(".")[-2:]) for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"A.1", "B.1"}  # task 0's ranks are frozen
    assert len(routed.trainable()) == 2 * 8  # still the newest ranks after training
    with pytest.raises(WorkbenchError, match="MoRA"):
        add_task_ranks(lab.add_router("sm", "smora", r=4, k=2, targets="q_proj"), 2)


def test_a_score_equal_to_delta_is_kept_and_evaluation_without_pruning_records_the_top_k():
    router = MoRA(4, 3, generator=torch.Generator().manual_seed(0), r=4, k=2, delta=0.5, init="random").eval()
    with torch.no_grad():
        router.A[0].copy_(torch.eye(4))
    x = torch.ones(1, 1, 4)  # h = (1, 1, 1, 1): s_i = 1/2 = δ exactly, 1[s ≥ δ] keeps them
    rec, out = record_of(router, x)
    w = torch.zeros(4).scatter(0, rec.scores.reshape(4).topk(2).indices, 0.5)  # softmax of two equal scores
    torch.testing.assert_close(out.reshape(3), router.B[0].detach() @ w)
    assert rec.selected is None  # a pruning forward
    rec, _ = record_of(make(k=3, init="random").eval(), inputs())  # δ = −inf: no pruning in evaluation
    assert rec.selected is not None and rec.selected.shape == (2, 5, 3)
