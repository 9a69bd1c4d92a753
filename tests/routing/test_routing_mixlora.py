"""MixLoRA: top-k LoRA experts inside the FFN block, renormalised gates, Switch-style load balance."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.conftest import output_of, tiny_inputs, tiny_lab
from workbench.errors import WorkbenchError
from workbench.hooks import record
from workbench.routing import aux_loss, routing_context
from workbench.routing.mechanisms.mixlora import MixLoRA, add_mixlora

D, F_ = 16, 24


class MLP(nn.Module):
    """A LlamaMLP-style block: down(act(gate x) ⊙ up x)."""

    def __init__(self, seed: int = 0):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.gate_proj, self.up_proj = nn.Linear(D, F_, bias=False), nn.Linear(D, F_, bias=False)
            self.down_proj = nn.Linear(F_, D, bias=False)
        self.act_fn = nn.SiLU()

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


def make(block: nn.Module, seed: int = 0, **params) -> MixLoRA:
    params = {"experts": 4, "k": 2, "r": 4, "dropout": 0.0} | params
    return MixLoRA.build(path="mlp", module=block, lab=None, generator=torch.Generator().manual_seed(seed),
                         **params).eval()


def inputs(seed: int = 1, shape=(2, 5)) -> torch.Tensor:
    return torch.randn(*shape, D, generator=torch.Generator().manual_seed(seed))


def record_of(router, *args):
    records = []
    handle = router.hook_route.register_forward_hook(lambda m, i, o: records.append(o))
    out = router(*args)
    handle.remove()
    return out, records[0]


def expert_output(router: MixLoRA, block: MLP, e: int, x: torch.Tensor) -> torch.Tensor:
    """FFN_e by hand, with dense W + s·B_e A_e."""
    def w(name):
        return getattr(block, name).weight + router.scaling * router.lora_B[name][e] @ router.lora_A[name][e]
    return (block.act_fn(x @ w("gate_proj").T) * (x @ w("up_proj").T)) @ w("down_proj").T


def test_zero_B_gives_the_base_block():
    block, x = MLP(), inputs()
    torch.testing.assert_close(make(block, init="lora")(x, block), block(x))
    lab = tiny_lab()
    batch = tiny_inputs(lab.model)
    base = output_of(lab.model(**batch))
    lab.add_router("mix", "mixlora", experts=4, k=2, r=4)
    lab.use("mix")
    torch.testing.assert_close(output_of(lab.model(**batch)), base)


def test_all_experts_and_a_uniform_router_average_the_experts():
    block, x = MLP(), inputs()
    router = make(block, k=4, init="random")
    with torch.no_grad():
        router.router.zero_()
    expected = torch.stack([expert_output(router, block, e, x) for e in range(4)]).mean(0)
    torch.testing.assert_close(router(x, block), expected)


def test_top_k_experts_with_gates_summing_to_one():
    block, x = MLP(), inputs()
    router = make(block, k=2, init="random")
    out, rec = record_of(router, x, block)
    assert rec.shape == (2, 5, 4) and rec.selected.shape == (2, 5, 2)
    assert ((rec.weights != 0).sum(-1) == 2).all() and (rec.active.sum(-1) == 2).all()
    torch.testing.assert_close(rec.weights.sum(-1), torch.ones(2, 5))
    top = rec.scores.topk(2, dim=-1)
    renormalized = top.values / top.values.sum(-1, keepdim=True)
    torch.testing.assert_close(rec.weights.gather(-1, top.indices), renormalized)
    expected = sum(rec.weights[..., e, None] * expert_output(router, block, e, x) for e in range(4))
    torch.testing.assert_close(out, expected)


def test_k_larger_than_the_experts_is_an_error():
    with pytest.raises(WorkbenchError, match="k <= 4"):
        make(MLP(), k=5)
    lab = tiny_lab()
    with pytest.raises(WorkbenchError, match="k <="):
        lab.add_router("mix", "mixlora", experts=2, k=3)
    assert not lab.routers
    with pytest.raises(WorkbenchError, match="gate_proj"):
        lab.add_router("mix", "mixlora", targets="self_attn")


def test_jitter_is_training_only():
    block, x = MLP(), inputs()
    torch.testing.assert_close(make(block, init="random", jitter=0.5)(x, block),
                               make(block, init="random")(x, block))
    noisy = make(block, init="random", jitter=0.5, aux_coef=0.0).train()
    assert not torch.allclose(noisy(x, block), make(block, init="random")(x, block))


def test_adapter_paths_survive_the_block_wrapping():
    x = tiny_inputs(tiny_lab().model)
    ref = tiny_lab()  # the adapter alone, no router
    ref.new_adapter("g", r=2, targets="gate_proj", init="random", seed=5)
    with ref.using("g"):
        expected = output_of(ref.model(**x))

    lab = tiny_lab()
    blocks = [layer.mlp for layer in lab.model.model.layers]
    keys = set(lab.model.state_dict())
    lab.add_router("mix", "mixlora", experts=4, k=2, r=4, init="random")
    adapter = lab.new_adapter("g", r=2, targets="gate_proj", init="random", seed=5)
    assert "model.layers.0.mlp.gate_proj" in adapter.modules
    assert "model.layers.0.mlp.gate_proj" in lab.layers
    with lab.using("g"):
        torch.testing.assert_close(output_of(lab.model(**x)), expected)
    with lab.using("mix"):
        assert not torch.allclose(output_of(lab.model(**x)), expected)
    with lab.using(["mix", "g"]), pytest.raises(WorkbenchError, match="skipped"):
        lab.model(**x)
    assert {k for k in lab.model.state_dict() if ".routes." not in k} >= {
        k.replace("gate_proj.weight", "gate_proj.base_layer.weight") for k in keys}

    lab.remove_router("mix")
    assert all(layer.mlp is block for layer, block in zip(lab.model.model.layers, blocks, strict=True))
    assert "routes" not in blocks[0]._modules
    with lab.using("g"):
        torch.testing.assert_close(output_of(lab.model(**x)), expected)


def test_an_adapter_added_before_the_router_keeps_working():
    lab = tiny_lab()
    x = tiny_inputs(lab.model)
    lab.new_adapter("g", r=2, targets="mlp", init="random")
    with lab.using("g"):
        before = output_of(lab.model(**x))
    lab.add_router("mix", "mixlora", experts=4, k=2, r=4)
    with lab.using("g"):
        torch.testing.assert_close(output_of(lab.model(**x)), before)


def test_load_balance_loss_matches_the_code_formula():
    lab = tiny_lab()
    batch = tiny_inputs(lab.model)
    lab.add_router("mix", "mixlora", experts=4, k=2, r=4, init="random", aux_coef=0.01)
    lab.use("mix")
    lab.model.eval()
    lab.model(**batch)
    assert aux_loss(lab.model) == (None, {})  # nothing in eval forwards
    lab.model.train()
    with routing_context(attention_mask=batch["attention_mask"]), record(lab.model, "*.hook_route") as cache:
        lab.model(**batch)
    total, parts = aux_loss(lab.model)
    assert set(parts) == {"mix/load_balance"} and total.requires_grad
    keep = batch["attention_mask"].reshape(-1).bool()
    probs = torch.cat([rec.scores.reshape(-1, 4)[keep] for rec in cache.values()])  # all layers
    sel = torch.cat([rec.selected.reshape(-1, 2)[keep] for rec in cache.values()])
    f = torch.nn.functional.one_hot(sel, 4).float().sum(1).mean(0)  # MoE-PEFT: summed over the k slots
    expected = 0.01 * 4 * (f * probs.mean(0)).sum()
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)


def test_a_mask_of_the_wrong_shape_is_an_error():
    block, x = MLP(), inputs()
    router = make(block).train()
    with routing_context(attention_mask=torch.ones(2, 9)):
        with pytest.raises(WorkbenchError, match="attention_mask"):
            router(x, block)


def test_training_reaches_the_router_and_the_experts():
    from workbench.training import fit

    lab = tiny_lab()
    routed = lab.add_router("mix", "mixlora", experts=4, k=2, r=4, init="random")
    before = {k: v.clone() for k, v in routed.state_dict().items()}
    feats = [{"input_ids": [1, 2, 3, 4, 5], "labels": [-100, 2, 3, 4, 5], "task": 0}] * 4
    history = fit(lab, routed.trainable(), feats, use="mix", label="mix", steps=2, lr=1e-2, batch_size=2,
                  seed=0, progress=False)
    assert "aux/mix/load_balance" in history.columns
    after = routed.state_dict()
    changed = {k.rsplit(".", 1)[-1] if "lora" not in k else k.split(".")[-2] for k in before
               if not torch.equal(before[k], after[k])}
    assert {"router", "lora_A", "lora_B"} <= changed


def test_add_mixlora_adds_the_router_and_an_attention_lora():
    lab = tiny_lab()
    x = tiny_inputs(lab.model)
    base = output_of(lab.model(**x))
    routed, attn = add_mixlora(lab, "mix", experts=4, k=2, r=4, alpha=8)
    assert routed.mechanism == "mixlora" and attn.name == "mix_attn"
    assert all(".self_attn." in p for p in attn.modules) and len(attn.modules) == 8
    assert all(lab.layers[p].dropout["mix_attn"] == 0.05 for p in attn.modules)
    lab.use(["mix", "mix_attn"])
    torch.testing.assert_close(output_of(lab.model(**x)), base)  # B = 0 everywhere at init
    with pytest.raises(WorkbenchError):
        add_mixlora(lab, "mix2", experts=4, k=2, r=4, attention_targets="no_such_proj")
    assert "mix2" not in lab.routers  # nothing half-added


def test_router_reads_the_ffn_input_softmax_then_top_k_renormalised_by_hand():
    block, x = MLP(), inputs(shape=(1, 3))
    router = make(block, experts=3, k=2, init="random", alpha=8.0, r=4)  # s = 2
    out, rec = record_of(router, x, block)
    with torch.no_grad():
        p = torch.softmax(x[0] @ router.router.T, -1)  # (T, E): the FFN input, softmax over all E
        torch.testing.assert_close(rec.scores[0], p)
        for t in range(3):
            top = p[t].topk(2)
            w = top.values / top.values.sum()  # renormalised over the k kept
            want = sum(w[j] * expert_output(router, block, int(top.indices[j]), x[0, t]) for j in range(2))
            torch.testing.assert_close(out[0, t], want)
    assert router.scaling == 2.0  # α / r


def test_dropout_hits_the_expert_lora_inputs_in_training_only():
    block, x = MLP(), inputs()
    plain = make(block, init="random", dropout=0.0)
    router = make(block, init="random", dropout=0.5, aux_coef=0.0)
    torch.testing.assert_close(router(x, block), plain(x, block))  # eval: no dropout
    torch.manual_seed(0)
    assert not torch.allclose(router.train()(x, block), plain(x, block))


def test_jitter_multiplies_the_block_input_and_the_experts_see_it_too():
    block, x = MLP(), inputs()
    noisy = make(block, init="random", jitter=0.5, aux_coef=0.0).train()
    torch.manual_seed(3)
    out = noisy(x, block)
    torch.manual_seed(3)
    u = torch.empty(10, D).uniform_(0.5, 1.5)  # the same draw: h ← h ⊙ U(1 − ε, 1 + ε), h (N, d)
    torch.testing.assert_close(out, make(block, init="random")(x * u.reshape(2, 5, D), block))


def test_top_one_gives_each_token_its_own_experts_ffn_with_gate_one():
    block, x = MLP(), inputs()
    router = make(block, k=1, init="random", router_init_range=1.0)
    out, rec = record_of(router, x, block)
    best = rec.scores.argmax(-1)  # (B, T)
    assert best.unique().numel() > 1  # several experts in use
    for b in range(2):
        for t in range(5):
            want = expert_output(router, block, int(best[b, t]), x[b, t])  # w = p / p = 1
            torch.testing.assert_close(out[b, t], want)
