"""RecLoRA: meta-LoRAs mixed in parameter space by weights from a per-sample context vector."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import output_of, tiny_inputs, tiny_lab
from workbench.adapters import Adapter
from workbench.adapters.adapter import LoraFactors
from workbench.errors import WorkbenchError
from workbench.routing import routing_context
from workbench.routing.mechanisms.reclora import RecLoRA

D = 5  # context dimension


def set_logits(router: RecLoRA, logits: list[float]) -> None:
    """Make MLP(u) = ``logits`` for every u: zero last weight, the logits as its bias."""
    last = router.mlp[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor(logits))


def router_alone(**params) -> RecLoRA:
    return RecLoRA(16, 12, generator=torch.Generator().manual_seed(0), ctr_dim=D, M=4, r=3,
                   init="random", **params)


def test_defaults_follow_the_code():
    lab = tiny_lab()
    routed = lab.add_router("rec", "reclora", ctr_dim=D)
    assert [p.rsplit(".", 1)[-1] for p in routed.modules] == ["q_proj", "v_proj"] * 2
    router = next(iter(routed.modules.values()))
    assert router.A.shape == (8, 8, 64) and router.scaling == 2.0 and not router.B.any()  # M=8, r=8, α=16
    assert [type(m).__name__ for m in router.mlp] == ["LayerNorm", "Linear", "ReLU", "Dropout", "Linear"]
    assert router.mlp[1].out_features == 60 and router.mlp[3].p == 0.1 and router.dropout == 0.05
    x = tiny_inputs(lab.model)
    base = output_of(lab.model(**x))
    lab.use("rec")
    with routing_context(context=torch.randn(3, D)):
        torch.testing.assert_close(output_of(lab.run(x)[0]), base)  # B = 0: starts as the base


@pytest.mark.parametrize("m", [0, 2])
def test_one_hot_weights_give_that_meta_lora(m):
    lab = tiny_lab()
    routed = lab.add_router("rec", "reclora", ctr_dim=D, M=4, init="random", seed=1)
    modules = {}
    for path, router in routed.modules.items():
        set_logits(router, [1e4 if i == m else 0.0 for i in range(4)])
        modules[path] = LoraFactors(router.A[m].detach().clone(), router.B[m].detach().clone(), 16.0)
    lab.add_adapter(Adapter("plain", modules))
    x = tiny_inputs(lab.model)
    with lab.using("plain"):
        want = output_of(lab.run(x)[0])
    with lab.using(None):
        assert (want - output_of(lab.run(x)[0])).abs().max() > 1e-3
    with lab.using("rec"), routing_context(context=torch.randn(3, D)):
        got = output_of(lab.run(x)[0])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_parameter_space_mix_has_cross_terms():
    router = router_alone().eval()
    set_logits(router, [0.0, 0.0, -1e4, -1e4])  # w = (½, ½, 0, 0)
    x, u = torch.randn(2, 7, 16), torch.randn(2, D)
    with routing_context(context=u):
        got = router(x, None)
    A_u, B_u = 0.5 * (router.A[0] + router.A[1]), 0.5 * (router.B[0] + router.B[1])
    want = router.scaling * x @ A_u.T @ B_u.T  # (α/r) B_u A_u x
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    output_mix = router.scaling * sum(0.5 * x @ router.A[i].T @ router.B[i].T for i in range(2))
    assert (got - output_mix).abs().max() > 1e-4  # Σ w_m B_m A_m ≠ B_u A_u: cross terms B_0 A_1, B_1 A_0


def test_each_sample_gets_its_own_mix():
    router = router_alone().eval()
    x, u = torch.randn(2, 3, 16), torch.randn(2, D)
    with routing_context(context=u):
        both = router(x, None)
    for b in range(2):
        with routing_context(context=u[b:b + 1]):
            torch.testing.assert_close(router(x[b:b + 1], None), both[b:b + 1], atol=1e-6, rtol=1e-5)


def test_hard_routing_keeps_the_top_two_and_records_per_token():
    lab = tiny_lab()
    lab.add_router("rec", "reclora", ctr_dim=D, M=4, routing="hard", init="random")
    lab.use("rec")
    x = tiny_inputs(lab.model)
    with routing_context(context=torch.randn(3, D)):
        _, cache = lab.run(x, record="*.hook_route")
    assert len(cache) == 4
    for rec in cache.values():
        assert rec.shape == (3, 7, 4) and rec.selected.shape == (3, 7, 2)
        assert ((rec.weights > 0).sum(-1) == 2).all()
        torch.testing.assert_close(rec.weights.sum(-1), torch.ones(3, 7))
        assert torch.equal(rec.weights[:, 0], rec.weights[:, -1])  # one mix per sample


def test_soft_temperature_and_sqrt():
    router = router_alone(T=2.0, sqrt=True).eval()
    set_logits(router, [2.0, 0.0, 0.0, -2.0])
    _, w, idx = router.mix_weights(torch.randn(1, D))
    torch.testing.assert_close(w[0] ** 2, torch.tensor([2.0, 0.0, 0.0, -2.0]).div(2).softmax(-1))
    assert idx is None


def test_missing_or_wrong_context_is_a_clear_error():
    router = router_alone()
    x = torch.randn(2, 3, 16)
    with pytest.raises(WorkbenchError, match="'context'.*routing_context"):
        router(x, None)
    with routing_context(context=torch.randn(2, D + 1)), pytest.raises(WorkbenchError, match="ctr_dim=5"):
        router(x, None)
    with routing_context(context=torch.randn(3, D)), pytest.raises(WorkbenchError, match="batch=2"):
        router(x, None)
    with pytest.raises(WorkbenchError, match="routing="):
        router_alone(routing="sparse")
    with pytest.raises(WorkbenchError, match="k <= 4"):
        router_alone(routing="hard", topk=5)


def test_gradients_reach_the_router_and_the_meta_loras():
    lab = tiny_lab()
    routed = lab.add_router("rec", "reclora", ctr_dim=D, M=4, init="random")
    lab.use("rec")
    lab.model.train()
    x = tiny_inputs(lab.model)
    with routing_context(context=torch.randn(3, D)):
        loss = lab.model(**x, labels=x["input_ids"]).loss
    loss.backward()
    for router in routed.modules.values():
        for name in ("A", "B", "mlp.1.weight", "mlp.4.weight", "mlp.0.weight"):
            grad = router.get_parameter(name).grad
            assert grad is not None and grad.abs().sum() > 0, name
    assert all(p.grad is None for n, p in lab.model.named_parameters() if ".routes." not in n)  # base frozen


def test_mixing_logits_are_the_layernorm_relu_mlp_of_u_and_hard_mode_softmaxes_the_top_k_logits():
    router = router_alone(routing="hard", topk=2, T=5.0).eval()
    u = torch.randn(2, D, generator=torch.Generator().manual_seed(4))
    ln, first, _, _, last = router.mlp
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5), ln.bias.uniform_(-0.5, 0.5)
        first.bias.uniform_(-0.5, 0.5), last.bias.uniform_(-0.5, 0.5)
        norm = (u - u.mean(-1, keepdim=True)) / torch.sqrt(u.var(-1, unbiased=False, keepdim=True) + 1e-5)
        hidden = torch.relu((norm * ln.weight + ln.bias) @ first.weight.T + first.bias)
        want = hidden @ last.weight.T + last.bias  # (B, M)
        logits, w, idx = router.mix_weights(u)
    torch.testing.assert_close(logits, want, atol=1e-5, rtol=1e-5)
    top = want.topk(2, dim=-1)
    assert torch.equal(idx.sort(-1).values, top.indices.sort(-1).values)
    dense = torch.zeros_like(want).scatter(-1, top.indices, top.values.softmax(-1))  # no T in hard mode
    torch.testing.assert_close(w, dense, atol=1e-5, rtol=1e-5)


def test_record_repeats_each_samples_mix_on_every_token():
    router = router_alone(routing="hard", topk=2).eval()
    x, u = torch.randn(2, 3, 16), torch.randn(2, D)
    records = []
    router.hook_route.register_forward_hook(lambda m, i, o: records.append(o))
    with routing_context(context=u):
        router(x, None)
    logits, w, idx = router.mix_weights(u)  # (B, M), (B, M), (B, 2)
    rec = records[0]
    assert rec.shape == (2, 3, 4) and rec.selected.shape == (2, 3, 2)
    for t in range(3):
        torch.testing.assert_close(rec.scores[:, t], logits)
        torch.testing.assert_close(rec.weights[:, t], w)
        assert torch.equal(rec.selected[:, t], idx)


def test_dropout_hits_the_lora_input_in_training_only():
    router, plain = router_alone(dropout=0.5, mlp_dropout=0.0), router_alone(dropout=0.0, mlp_dropout=0.0)
    x, u = torch.randn(2, 3, 16), torch.randn(2, D)
    with routing_context(context=u):
        torch.testing.assert_close(router.eval()(x, None), plain.eval()(x, None))
        torch.manual_seed(0)
        assert not torch.allclose(router.train()(x, None), plain(x, None))


def test_one_meta_lora_at_scale_alpha_over_r_by_hand_and_inputs_in_the_factors_dtype():
    router = router_alone(alpha=6.0).eval()  # r = 3: s = 2
    set_logits(router, [0.0, -1e4, -1e4, -1e4])  # w = (1, 0, 0, 0)
    x, u = torch.randn(2, 3, 16), torch.randn(2, D)
    with routing_context(context=u):
        got = router(x, None)
        as_double = router(x.double(), None)  # computed in the factors' float32
    torch.testing.assert_close(got, 2.0 * x @ router.A[0].T @ router.B[0].T, atol=1e-6, rtol=1e-5)
    assert as_double.dtype == torch.float32
    torch.testing.assert_close(as_double, got)
