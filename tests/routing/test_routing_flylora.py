"""FlyLoRA: a frozen sparse random A routes the ranks (winner-take-all top-k), bias-balanced usage."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import output_of, tiny_inputs, tiny_lab
from workbench.errors import WorkbenchError
from workbench.routing.mechanisms.flylora import FlyLoRA

IN, OUT = 64, 12


def make(r: int = 16, k: int = 4, seed: int = 0, in_f: int = IN, **params) -> FlyLoRA:
    return FlyLoRA(in_f, OUT, generator=torch.Generator().manual_seed(seed), r=r, k=k, **params)


def inputs(seed: int = 1, shape=(2, 5)) -> torch.Tensor:
    return torch.randn(*shape, IN, generator=torch.Generator().manual_seed(seed))


def skewed(seed: int = 2, n: int = 64) -> torch.Tensor:
    """Tokens close to one direction: every token picks the same ranks while the bias is 0."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(IN, generator=g) * 3 + 0.1 * torch.randn(1, n, IN, generator=g)


def cv(counts: torch.Tensor) -> float:
    counts = counts.float()
    return float(counts.std(unbiased=False) / counts.mean())


def record_of(router: FlyLoRA, x: torch.Tensor):
    records = []
    handle = router.hook_route.register_forward_hook(lambda m, i, o: records.append(o))
    out = router(x, None)
    handle.remove()
    return records[0], out


def test_A_is_sparse_with_p_nonzeros_per_row_and_frozen():
    router = make(r=16, k=4)
    assert router.p == IN // (16 // 4)  # the peft code's p = n // (r // k)
    assert ((router.A != 0).sum(1) == router.p).all()
    assert "A" in dict(router.named_buffers()) and "bias" in dict(router.named_buffers())
    assert [n for n, _ in router.named_parameters()] == ["B"]
    assert ((make(p=5).A != 0).sum(1) == 5).all()
    big = FlyLoRA(4096, OUT, generator=torch.Generator().manual_seed(0), r=32, k=8)
    nz = big.A[big.A != 0]
    assert nz.std().item() == pytest.approx(1 / 32, rel=0.05)  # N(0, 1/r²)


def test_same_seed_same_A_and_different_seeds_near_orthogonal():
    def A(seed):
        return FlyLoRA(4096, OUT, generator=torch.Generator().manual_seed(seed), r=32, k=8).A

    a1, a2 = A(1), A(2)
    assert torch.equal(a1, A(1))
    norms = a1.norm(dim=1)[:, None] * a2.norm(dim=1)[None, :]
    cross = (a1 @ a2.T).abs() / norms  # |cos| between rows of the two projections
    assert cross.max() < 0.2 and cross.mean() < 0.03
    own = (a1 @ a1.T).abs() / (a1.norm(dim=1)[:, None] * a1.norm(dim=1)[None, :])
    assert torch.allclose(own.diagonal(), torch.ones(32))
    assert (a1 @ a2.T).norm() < 0.1 * a1.norm() * a2.norm()


def test_exactly_k_ranks_per_token_and_the_mask_hits_the_unbiased_activation():
    router = make(r=16, k=4, init="random", alpha=8.0)
    router.bias += torch.linspace(-0.5, 0.5, 16)  # a non-zero bias moves selection, not values
    x = inputs()
    rec, out = record_of(router, x)
    assert rec.shape == (2, 5, 16) and rec.selected.shape == (2, 5, 4)
    assert (rec.active.sum(-1) == 4).all() and ((rec.weights != 0).sum(-1) == 4).all()
    a = x @ router.A.T
    assert torch.allclose(rec.scores, a)
    idx = (a + rec.bias).topk(4, dim=-1).indices
    assert torch.equal(rec.selected.sort(-1).values, idx.sort(-1).values)
    mask = torch.zeros_like(a).scatter(-1, idx, 1.0)
    assert torch.allclose(out, (8.0 / 16) * (a * mask) @ router.B.T, atol=1e-6)  # s = α/r


def test_abs_selection_ranks_by_magnitude():
    router = make(r=16, k=4, select="abs")
    rec, _ = record_of(router, inputs())
    expected = rec.scores.abs().topk(4, dim=-1).indices
    assert torch.equal(rec.selected.sort(-1).values, expected.sort(-1).values)
    assert (rec.scores.gather(-1, rec.selected) < 0).any()  # large negative activations win too


def test_only_selected_columns_of_B_get_gradient_and_detach_flag():
    x = inputs(shape=(1, 2)).requires_grad_(True)
    router = make(r=16, k=2, init="random").train()
    rec, out = record_of(router, x)
    out.sum().backward()
    unused = torch.ones(16, dtype=torch.bool)
    unused[rec.selected.reshape(-1)] = False
    assert unused.any() and (router.B.grad[:, unused] == 0).all()
    assert (router.B.grad[:, ~unused] != 0).any()
    assert x.grad is None  # the A branch is detached (the peft code's no_grad)
    keep = make(r=16, k=2, init="random", detach_A_branch=False)
    keep(x, None).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_zero_B_gives_the_base_output():
    router = make(init="lora").train()
    assert torch.equal(router(inputs(), None), torch.zeros(2, 5, OUT))
    lab = tiny_lab()
    batch = tiny_inputs(lab.model)
    base = output_of(lab.model(**batch))
    lab.add_router("fly", "flylora", r=8, k=2)
    lab.use("fly")
    assert torch.equal(output_of(lab.model(**batch)), base)


def test_bad_parameters_are_clear_errors():
    with pytest.raises(WorkbenchError, match="k <= 8"):
        make(r=8, k=9)
    with pytest.raises(WorkbenchError, match="select"):
        make(select="max")
    with pytest.raises(WorkbenchError, match="update"):
        make(update="sometimes")
    with pytest.raises(WorkbenchError, match="p=0"):
        make(p=0)


def test_bias_update_moves_load_toward_balance():
    x = skewed()
    fixed = record_of(make(r=16, k=4, bias_u=0.0), x)[0].counts().float()  # no balancing
    router = make(r=16, k=4, bias_u=2e-2)
    router.eval()(x, None)  # every_forward: evaluation forwards update too (peft code)
    assert torch.equal(torch.sign(router.bias), torch.sign(fixed.mean() - fixed))  # over-used go down
    with torch.no_grad():
        for _ in range(80):
            router(x, None)
        load = sum(record_of(router, x)[0].counts() for _ in range(40))
    assert cv(fixed) > 1.5  # the same 4 ranks for every token
    assert cv(load) < 0.3 * cv(fixed)


def test_update_modes():
    x = skewed()
    train_only = make(update="train_only", bias_u=0.1)
    train_only.eval()(x, None)
    assert not train_only.bias.any()
    train_only.train()(x, None)
    assert train_only.bias.any()

    acc = make(r=16, k=4, update="accumulate", bias_u=0.1).train()
    acc(x, None)
    acc(x, None)
    assert not acc.bias.any() and acc.counts.sum() == 2 * 64 * 4
    used = acc.counts > 0
    acc.update_bias()  # d ← d + u·sign(k/r − c): used ranks down, unused up
    assert (acc.bias[used] == -0.1).all() and (acc.bias[~used] == 0.1).all()
    assert not acc.counts.any()
    acc.eval()(x, None)
    assert not acc.counts.any()  # evaluation forwards do not count


def test_lab_records_and_training_update_B_only():
    from workbench.training import fit

    lab = tiny_lab()
    routed = lab.add_router("fly", "flylora", r=8, k=2, seed=1)
    assert len(routed.modules) == 14  # default targets: q,k,v,o,gate,up,down
    lab.use("fly")
    _, cache = lab.run(tiny_inputs(lab.model), record="*.hook_route")
    assert len(cache) == 14
    for rec in cache.values():
        assert rec.shape == (3, 7, 8) and (rec.active.sum(-1) == 2).all()
    again = tiny_lab().add_router("fly", "flylora", r=8, k=2, seed=1)
    assert all(torch.equal(routed.modules[p].A, again.modules[p].A) for p in routed.modules)

    before = {k: v.clone() for k, v in routed.state_dict().items()}
    feats = [{"input_ids": [1, 2, 3, 4, 5], "labels": [-100, 2, 3, 4, 5], "task": 0}] * 4
    fit(lab, routed.trainable(), feats, use="fly", label="fly", steps=2, lr=1e-2, batch_size=2, seed=0,
        progress=False)
    after = routed.state_dict()
    changed = {k.rsplit(".", 1)[-1] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"B", "bias"}  # A stays frozen; d moves by the balancing rule
    assert routed.trainable() and all(p.shape[-1] == 8 for p in routed.trainable())


def test_update_bias_is_u_times_the_sign_of_k_over_r_minus_the_raw_counts():
    acc = make(r=16, k=4, update="accumulate", bias_u=0.1)
    acc.counts.copy_(torch.tensor([0.0, 1.0, 3.0, 70.0] * 4))  # k/r = 0.25: only unused ranks go up
    acc.update_bias()
    torch.testing.assert_close(acc.bias, torch.tensor([0.1, -0.1, -0.1, -0.1] * 4))


def test_default_p_is_in_over_r_over_k_but_at_least_one():
    assert FlyLoRA(2, OUT, generator=torch.Generator().manual_seed(0), r=8, k=2).p == 1  # 2 // 4 = 0 → 1
    assert FlyLoRA(12, OUT, generator=torch.Generator().manual_seed(0), r=8, k=2).p == 3  # 12 // (8 // 2)


def test_dropout_hits_the_input_of_A_in_training_only():
    router, plain = make(r=16, k=4, init="random", dropout=0.5, bias_u=0.0), make(r=16, k=4, init="random",
                                                                                  bias_u=0.0)
    x = inputs()
    torch.testing.assert_close(router.eval()(x, None), plain.eval()(x, None))
    torch.manual_seed(0)
    assert not torch.allclose(router.train()(x, None), plain(x, None))


def test_update_bias_leaves_a_rank_whose_count_equals_k_over_r_alone():
    acc = make(r=4, k=4, update="accumulate", bias_u=0.1)  # k/r = 1
    acc.counts.copy_(torch.tensor([1.0, 0.0, 2.0, 1.0]))
    acc.update_bias()
    torch.testing.assert_close(acc.bias, torch.tensor([0.0, 0.1, -0.1, 0.0]))  # sign(0) = 0: no step
