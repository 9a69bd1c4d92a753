"""LoRAMoE: dense softmax over LoRA experts per FFN linear, localized balancing constraint by data type."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import output_of, tiny_inputs, tiny_lab
from workbench.errors import WorkbenchError
from workbench.routing import aux_loss, routing_context
from workbench.routing.mechanisms.loramoe import LoRAMoE

IN, OUT = 16, 12


def make(experts: int = 4, seed: int = 0, **params) -> LoRAMoE:
    params = {"r": 4, "dropout": 0.0} | params
    return LoRAMoE(IN, OUT, generator=torch.Generator().manual_seed(seed), experts=experts, **params)


def inputs(seed: int = 1, shape=(2, 5)) -> torch.Tensor:
    return torch.randn(*shape, IN, generator=torch.Generator().manual_seed(seed))


def record_of(router, x):
    records = []
    handle = router.hook_route.register_forward_hook(lambda m, i, o: records.append(o))
    out = router(x, None)
    handle.remove()
    return out, records[0]


def cv2(z: torch.Tensor) -> torch.Tensor:
    return z.var() / z.mean() ** 2


def test_dense_gates_sum_to_one_and_the_update_is_their_mixture():
    router, x = make(init="random").eval(), inputs()
    out, rec = record_of(router, x)
    assert rec.shape == (2, 5, 4) and rec.selected is None
    torch.testing.assert_close(rec.weights.sum(-1), torch.ones(2, 5))
    assert (rec.weights > 0).all() and rec.active.all()
    omega = torch.softmax(x @ router.router.T, -1)
    expected = sum(omega[..., e, None] * router.scaling * x @ (router.B[e] @ router.A[e]).T for e in range(4))
    torch.testing.assert_close(out, expected)


def test_zero_B_gives_the_base_output():
    assert torch.equal(make(init="lora")(inputs(), None), torch.zeros(2, 5, OUT))
    lab = tiny_lab()
    x = tiny_inputs(lab.model)
    base = output_of(lab.model(**x))
    routed = lab.add_router("moe", "loramoe", experts=4, r=4)
    assert sorted({p.rsplit(".", 1)[-1] for p in routed.modules}) == ["down_proj", "gate_proj", "up_proj"]
    lab.use("moe")
    torch.testing.assert_close(output_of(lab.model(**x)), base)


def test_one_expert_equals_the_plain_adapter():
    lab = tiny_lab()
    x = tiny_inputs(lab.model)
    lab.new_adapter("plain", r=4, alpha=32, targets="mlp", init="random", seed=4)
    routed = lab.add_router("moe", "loramoe", experts=1, r=4, alpha=32)
    with torch.no_grad():
        for path, router in routed.modules.items():
            router.A[0] = lab.layers[path].lora_A["plain"]
            router.B[0] = lab.layers[path].lora_B["plain"]
    with lab.using("plain"):
        plain = output_of(lab.model(**x))
    with lab.using("moe"):
        torch.testing.assert_close(output_of(lab.model(**x)), plain)


def test_without_delta_the_constraint_is_the_plain_cv2_of_importance():
    router, x = make(init="random", blc_weight=0.5).train(), inputs()
    with routing_context(task=torch.tensor([0, 1])):
        router(x, None)
    total, parts = aux_loss(router)
    assert set(parts) == {"/loramoe_lbc"} and total.requires_grad
    importance = torch.softmax(x @ router.router.T, -1).sum(1)  # (B, E), every position
    assert total.item() == pytest.approx(0.5 * cv2(importance.flatten()).item(), rel=1e-5)


def test_delta_weighs_each_samples_own_group_up():
    x = inputs()
    router = make(init="random", blc_weight=1.0, blc_alpha=0.2, groups=[[0], [1, 2, 3]],
                  type_of_task={7: 0, 3: 1}).train()
    with routing_context(task=torch.tensor([3, 7])):  # types 1, 0
        router(x, None)
    total, _ = aux_loss(router)
    importance = torch.softmax(x @ router.router.T, -1).sum(1)
    coef = torch.tensor([[0.8, 1.2, 1.2, 1.2], [1.2, 0.8, 0.8, 0.8]])
    assert total.item() == pytest.approx(cv2((importance * coef).flatten()).item(), rel=1e-5)


def test_default_groups_are_halves_first_half_for_type_one():
    router = make(experts=4)
    assert router.member.tolist() == [[False, False, True, True], [True, True, False, False]]


def test_missing_or_unmapped_task_is_a_clear_error():
    x = inputs()
    router = make(blc_weight=0.1).train()
    with pytest.raises(WorkbenchError, match="'task'"):
        router(x, None)
    with routing_context(task=torch.tensor([0, 2])), pytest.raises(WorkbenchError, match="expert groups"):
        router(x, None)
    with routing_context(task=torch.tensor([0])), pytest.raises(WorkbenchError, match="one task index"):
        router(x, None)
    mapped = make(blc_weight=0.1, type_of_task={0: 1}).train()
    with routing_context(task=torch.tensor([0, 5])), pytest.raises(WorkbenchError, match="type_of_task"):
        mapped(x, None)
    router.eval()(x, None)  # no constraint outside training: no task needed
    make(blc_weight=0.0).train()(x, None)  # nor with β = 0
    with pytest.raises(WorkbenchError, match="groups name experts"):
        make(groups=[[0, 9], [1]])


def test_the_constraint_sums_over_modules_and_training_reaches_the_router():
    from workbench.training import fit

    lab = tiny_lab()
    routed = lab.add_router("moe", "loramoe", experts=4, r=4, init="random", blc_alpha=0.1, blc_weight=0.1)
    before = {k: v.clone() for k, v in routed.state_dict().items()}
    feats = [{"input_ids": [1, 2, 3, 4], "labels": [-100, 2, 3, 4], "task": t} for t in (0, 1, 0, 1)]
    history = fit(lab, routed.trainable(), feats, use="moe", label="moe", steps=2, lr=1e-2, batch_size=4,
                  seed=0, progress=False)
    assert (history["aux/moe/loramoe_lbc"] > 0).all()
    after = routed.state_dict()
    changed = {k.rsplit(".", 1)[-1] for k in before if not torch.equal(before[k], after[k])}
    assert {"router", "A", "B"} <= changed


# -- the defining details, against hand computations ------------------------------------------------
def test_scale_is_alpha_over_r_by_hand():
    router = make(experts=2, r=4, alpha=8.0, init="random").eval()  # s = 8/4 = 2 (not α·r = 32)
    with torch.no_grad():
        router.router.zero_()  # ω = (½, ½)
    x = inputs(shape=(1, 1))
    by_hand = 2.0 * 0.5 * (x @ (router.B[0] @ router.A[0]).T + x @ (router.B[1] @ router.A[1]).T)
    torch.testing.assert_close(router(x, None), by_hand)


def test_dropout_hits_the_lora_input_in_training_only():
    router, x = make(init="random", dropout=0.5), inputs()
    plain = make(init="random", dropout=0.0).eval()
    torch.testing.assert_close(router.eval()(x, None), plain(x, None))
    torch.manual_seed(0)
    assert not torch.allclose(router.train()(x, None), plain(x, None))


def test_cv_squared_of_one_entry_is_zero_and_eps_adds_to_the_squared_mean():
    from workbench.routing.mechanisms.loramoe import localized_balance

    one = localized_balance([{"z": torch.tensor([3.0], requires_grad=True)}])
    assert one.item() == 0.0 and one.requires_grad  # not var() of one value (NaN), not the value itself
    tiny = torch.tensor([1e-6, 3e-6])  # Var = 2e-12 (unbiased), Mean² = 4e-12, the code's eps 1e-10
    by_hand = 2e-12 / (4e-12 + 1e-10)
    assert localized_balance([{"z": tiny}]).item() == pytest.approx(by_hand, rel=1e-4)
