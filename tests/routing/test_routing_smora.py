"""SMoRA: every rank is an expert; sigmoid router, bias-balanced top-k, gates summing to k, α/k scaling."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import output_of, tiny_inputs, tiny_lab
from workbench.errors import WorkbenchError
from workbench.routing.mechanisms.smora import SMoRA

IN, OUT = 16, 12


def make(r: int = 8, k: int = 3, seed: int = 0, **params) -> SMoRA:
    return SMoRA(IN, OUT, generator=torch.Generator().manual_seed(seed), r=r, k=k, **params)


def inputs(seed: int = 1, shape=(2, 5)) -> torch.Tensor:
    return torch.randn(*shape, IN, generator=torch.Generator().manual_seed(seed))


def skewed(seed: int = 2, n: int = 64) -> torch.Tensor:
    """Tokens close to one direction: an untrained router sends them all to the same ranks."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(IN, generator=g) * 3 + 0.05 * torch.randn(1, n, IN, generator=g))


def cv(counts: torch.Tensor) -> float:
    counts = counts.float()
    return float(counts.std(unbiased=False) / counts.mean())


def record_of(router: SMoRA, x: torch.Tensor):
    records = []
    handle = router.hook_route.register_forward_hook(lambda m, i, o: records.append(o))
    router(x, None)
    handle.remove()
    return records[0]


def test_gates_sum_to_k_with_exactly_k_nonzeros():
    router = make(r=8, k=3, init="random")
    scores, G, idx = router.gates(inputs())
    assert scores.shape == G.shape == (2, 5, 8) and idx.shape == (2, 5, 3)
    assert torch.allclose(G.sum(-1), torch.full((2, 5), 3.0), atol=1e-5)
    assert ((G != 0).sum(-1) == 3).all()
    assert torch.equal(G != 0, torch.zeros_like(G, dtype=torch.bool).scatter(-1, idx, True))


def test_zero_B_and_no_bias_update_give_the_base_output():
    router = make(init="lora", bias_u=0.0).train()
    x = inputs()
    assert torch.equal(router(x, None), torch.zeros(2, 5, OUT))
    assert torch.equal(router.bias, torch.zeros(8))
    lab = tiny_lab()
    batch = tiny_inputs(lab.model)
    base = output_of(lab.model(**batch))
    lab.add_router("sm", "smora", targets="all-linear", r=8, k=2, bias_u=0.0)
    lab.use("sm")
    assert torch.equal(output_of(lab.model(**batch)), base)


@pytest.mark.parametrize("partition", [1, 2])
def test_sparse_path_equals_dense_path(partition):
    router = make(r=8, k=4, rank_partition=partition, init="random")
    x = inputs()
    dense = router(x, None)
    router.sparse = True
    sparse = router(x, None)
    assert torch.allclose(sparse, dense, atol=1e-5)


def test_scaling_is_alpha_over_k_on_the_gated_ranks():
    x = inputs()
    router = make(r=8, k=2, alpha=6.0, init="random")
    _, G, _ = router.gates(x)
    expected = (6.0 / 2) * (G * (x @ router.A.T)) @ router.B.T  # s = α/k, not α/r
    assert torch.allclose(router(x, None), expected, atol=1e-5)
    doubled = make(r=8, k=2, alpha=12.0, init="random")
    assert torch.allclose(doubled(x, None), 2 * router(x, None), atol=1e-5)


def test_k_larger_than_r_is_a_clear_error():
    with pytest.raises(WorkbenchError, match="k <= 4"):
        make(r=4, k=5)
    with pytest.raises(WorkbenchError, match="rank_partition"):
        make(r=8, k=2, rank_partition=3)


def test_bias_moves_against_the_load_of_each_rank():
    router = make(r=8, k=2, bias_u=1e-3, init="random")
    x = skewed()
    _, _, idx = router.gates(x)  # the selection the training forward will make (bias still 0)
    counts = torch.bincount(idx.reshape(-1), minlength=8).float()
    router.train()(x, None)
    assert torch.equal(torch.sign(router.bias), torch.sign(counts.mean() - counts))
    assert router.bias[counts.argmax()] < 0  # the over-used rank goes down
    router.eval()(x, None)
    assert torch.equal(torch.sign(router.bias), torch.sign(counts.mean() - counts))  # eval: no update


def load_over(router: SMoRA, x: torch.Tensor, steps: int) -> torch.Tensor:
    """Counts per rank summed over ``steps`` forwards (training forwards update the bias)."""
    counts = torch.zeros(router.r)
    with torch.no_grad():
        for _ in range(steps):
            counts += torch.bincount(router.gates(x)[2].reshape(-1), minlength=router.r)
            router(x, None)
    return counts


def test_repeated_training_forwards_balance_the_load():
    x = skewed()
    fixed = load_over(make(r=8, k=2, bias_u=0.0, init="random").train(), x, 40)
    router = make(r=8, k=2, bias_u=1e-2, init="random").train()
    load_over(router, x, 80)  # the bias catches up with the spread of the sigmoid scores
    balanced = load_over(router, x, 40)
    assert cv(fixed) > 1.7  # without updates: every token on the same two ranks, forever (√3)
    assert cv(balanced) < 0.3 * cv(fixed)  # sign steps then cycle the ranks (≈ 0.3 here)


def test_record_holds_the_bias_that_made_the_selection():
    router = make(r=8, k=2, bias_u=0.5, init="random").train()  # a big step changes the next selection
    x = skewed()
    for _ in range(3):
        rec = record_of(router, x)
        assert torch.equal(rec.selected.sort(-1).values,
                           (rec.scores + rec.bias).topk(2, dim=-1).indices.sort(-1).values)


@pytest.mark.parametrize("train", [False, True])
def test_rank_partition_selects_whole_blocks(train):
    router = make(r=12, k=6, rank_partition=3, bias_u=1e-2, init="random").train(train)
    x = skewed(n=32) + inputs(shape=(1, 32))
    for _ in range(5):
        _, G, idx = router.gates(x)
        blocks = (idx // 3).sort(-1).values  # (…, 6): each selected block appears 3 times
        assert torch.equal(blocks[..., 0::3], blocks[..., 1::3]) and torch.equal(blocks[..., 0::3],
                                                                                blocks[..., 2::3])
        router(x, None)
    assert torch.equal(router.bias.view(4, 3), router.bias.view(4, 3)[:, :1].expand(4, 3))


def test_lab_records_and_training_reach_the_router():
    from workbench.training import fit

    lab = tiny_lab()
    routed = lab.add_router("sm", "smora", targets="all-linear", r=8, k=2, seed=3)
    lab.use("sm")
    _, cache = lab.run(tiny_inputs(lab.model), record="*.hook_route")
    assert len(cache) == 14  # 2 layers × q,k,v,o,gate,up,down
    for rec in cache.values():
        assert rec.shape == (3, 7, 8) and (rec.active.sum(-1) == 2).all()
        assert torch.allclose(rec.weights.sum(-1), torch.full((3, 7), 2.0), atol=1e-5)
    before = {k: v.clone() for k, v in routed.state_dict().items()}
    feats = [{"input_ids": [1, 2, 3, 4, 5], "labels": [-100, 2, 3, 4, 5], "task": 0}] * 4
    fit(lab, routed.trainable(), feats, use="sm", label="sm", steps=2, lr=1e-2, batch_size=2, seed=0,
        progress=False)
    after = routed.state_dict()
    changed = {k.rsplit(".", 1)[-1] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"A", "B", "router", "bias"}  # gradients reach A, B and W_g; bias by updates


# -- the defining details, against hand computations ------------------------------------------------
def hand_router(r: int = 4, k: int = 2, **params) -> SMoRA:
    """in = 2 so the router weights are readable; W_g rows pick the inputs."""
    router = SMoRA(2, 3, generator=torch.Generator().manual_seed(0), r=r, k=k, init="random", **params)
    return router


def test_gate_weights_are_the_biased_top_k_values_renormalised_to_k():
    router = hand_router(r=4, k=2)
    with torch.no_grad():
        router.router.zero_()  # g = sigmoid(0) = 0.5 for every rank
        router.bias.copy_(torch.tensor([0.3, -0.1, 0.1, 0.0]))
    scores, G, idx = router.gates(torch.ones(1, 1, 2))
    torch.testing.assert_close(scores, torch.full((1, 1, 4), 0.5))  # the record keeps g, unbiased
    assert sorted(idx.reshape(-1).tolist()) == [0, 2]  # ĝ = [0.8, 0.4, 0.6, 0.5]
    # v = biased values 0.8, 0.6 (not g = 0.5, 0.5); G = k · v / Σv
    torch.testing.assert_close(G.reshape(-1), torch.tensor([2 * 0.8 / 1.4, 0.0, 2 * 0.6 / 1.4, 0.0]))


def test_sigmoid_scores_repeat_per_block_and_the_output_is_alpha_over_k_times_the_gated_ranks():
    router = hand_router(r=4, k=2, rank_partition=2, alpha=3.0)
    x = torch.tensor([[[1.0, -2.0]]])
    with torch.no_grad():
        router.router.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))  # block logits 1, -2
    s1, s2 = torch.sigmoid(torch.tensor(1.0)), torch.sigmoid(torch.tensor(-2.0))
    scores, G, idx = router.gates(x)
    torch.testing.assert_close(scores.reshape(-1), torch.stack([s1, s1, s2, s2]))  # repeat_interleave
    assert sorted(idx.reshape(-1).tolist()) == [0, 1]
    torch.testing.assert_close(G.reshape(-1), torch.tensor([1.0, 1.0, 0.0, 0.0]))
    h = router.A.detach() @ x.reshape(2)  # (r,) A x
    expected = (3.0 / 2) * router.B.detach() @ (torch.tensor([1.0, 1.0, 0.0, 0.0]) * h)
    torch.testing.assert_close(router(x, None).reshape(-1), expected)
    router.sparse = True
    torch.testing.assert_close(router(x, None).reshape(-1), expected)


def test_bias_update_is_u_times_the_sign_of_mean_minus_count_over_every_token():
    router = hand_router(r=4, k=1, bias_u=0.25).train()
    with torch.no_grad():
        router.router.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]))
    x = torch.tensor([[[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]]])  # ranks 0, 0, 1: counts [2, 1, 0, 0], mean 0.75
    router(x, None)
    torch.testing.assert_close(router.bias, torch.tensor([-0.25, -0.25, 0.25, 0.25]))
    router.eval()(x, None)  # evaluation forwards leave the bias alone
    torch.testing.assert_close(router.bias, torch.tensor([-0.25, -0.25, 0.25, 0.25]))


def test_dropout_hits_the_lora_input_in_training_only():
    router = hand_router(r=4, k=2, dropout=0.5, bias_u=0.0)
    x = torch.randn(2, 8, 2, generator=torch.Generator().manual_seed(0))
    evaluated = router.eval()(x, None)
    torch.testing.assert_close(evaluated, make_plain(router)(x, None))
    torch.manual_seed(0)
    assert not torch.allclose(router.train()(x, None), evaluated)


def make_plain(router: SMoRA) -> SMoRA:
    """The same router without dropout."""
    plain = hand_router(r=router.r, k=router.k, bias_u=0.0)
    plain.load_state_dict(router.state_dict())
    return plain.eval()
