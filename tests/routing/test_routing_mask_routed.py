"""Mask-routed LoRA (Arcana MM-LoRA): one branch per token, chosen by its type id."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import output_of, tiny_inputs, tiny_lab
from workbench.errors import WorkbenchError
from workbench.routing import ROUTERS, routing_context

BRANCHES = {"language": 4, "vision": 2}


def make(init="random", **kw):
    return ROUTERS.get("mask-routed")(16, 12, generator=torch.Generator().manual_seed(0),
                                      branches=kw.pop("branches", BRANCHES), init=init, dropout=0.0, **kw)


def test_each_token_goes_through_exactly_its_branch():
    router = make()
    x = torch.randn(2, 5, 16)
    types = torch.tensor([[0, 1, 1, 0, 0], [1, 1, 1, 1, 0]])
    with routing_context(token_types=types):
        delta = router(x, None)
    for k, n in enumerate(BRANCHES):
        alone = 2.0 * x @ router.A[n].T @ router.B[n].T  # s = 2 (Arcana's hard-coded scaling)
        torch.testing.assert_close(delta[types == k], alone[types == k])


def test_record_is_one_hot_and_branch_norms_are_recorded():
    router = make()
    types = torch.tensor([[0, 1, 0]])
    seen = {}
    router.hook_route.register_forward_hook(lambda m, i, o: seen.setdefault("rec", o))
    router.hook_branch_norm.register_forward_hook(lambda m, i, o: seen.setdefault("norm", o))
    x = torch.randn(1, 3, 16)
    with routing_context(token_types=types):
        delta = router(x, None)
    rec = seen["rec"]
    assert rec.shape == (1, 3, 2) and (rec.active.sum(-1) == 1).all()
    assert rec.selected[..., 0].tolist() == types.tolist()
    norms = seen["norm"]  # (B, T, K): the update's norm in the token's own branch, zero elsewhere
    torch.testing.assert_close(norms.sum(-1), delta.norm(dim=-1))
    assert (norms[0, [0, 2], 1] == 0).all() and (norms[0, 1, 0] == 0)


def test_scaling_and_alpha():
    assert make(alpha=8.0).scaling == {"language": 2.0, "vision": 4.0}  # α / r per branch
    assert make(scaling={"language": 1.0, "vision": 3.0}).scaling == {"language": 1.0, "vision": 3.0}
    with pytest.raises(WorkbenchError, match="not both"):
        make(alpha=8.0, scaling=2.0)
    with pytest.raises(WorkbenchError, match="every branch"):
        make(scaling={"language": 1.0})
    defaults = ROUTERS.get("mask-routed")(8, 8, generator=torch.Generator())
    assert {n: a.shape[0] for n, a in defaults.A.items()} == {"language": 192, "vision": 64}


def test_bad_masks_are_clear_errors():
    router = make()
    x = torch.randn(2, 5, 16)
    with pytest.raises(WorkbenchError, match=r"\(2, 4\).*\(2, 5\)"):
        with routing_context(token_types=torch.zeros(2, 4, dtype=torch.long)):
            router(x, None)
    with pytest.raises(WorkbenchError, match=r"\[0, 2\)"):
        with routing_context(token_types=torch.full((2, 5), 2)):
            router(x, None)
    with pytest.raises(WorkbenchError, match="integer"):
        with routing_context(token_types=torch.zeros(2, 5)):
            router(x, None)
    with pytest.raises(WorkbenchError, match="token_types"):
        router(x, None)


def test_all_language_equals_the_plain_language_lora():
    lab = tiny_lab()
    x = tiny_inputs(lab.model)
    lab.add_router("mm", "mask-routed", targets="attention", branches=BRANCHES, dropout=0.0, init="random")
    lab.new_adapter("plain", r=4, alpha=8.0, targets="attention")  # s = 2, like the branch
    for path, router in lab.routers["mm"].modules.items():
        layer = lab.layers[path]
        layer.lora_A["plain"].data.copy_(router.A["language"])
        layer.lora_B["plain"].data.copy_(router.B["language"])
    with lab.using("plain"):
        plain = output_of(lab.model(**x))
    lab.use("mm")
    with routing_context(token_types=torch.zeros_like(x["input_ids"])):
        routed = output_of(lab.model(**x))
    torch.testing.assert_close(routed, plain, rtol=0, atol=0)
    with routing_context(token_types=torch.ones_like(x["input_ids"])):
        vision = output_of(lab.model(**x))
    assert not torch.allclose(vision, plain)


def test_zero_B_is_the_base_and_records_come_through_the_lab():
    lab = tiny_lab()
    x = tiny_inputs(lab.model)
    base = output_of(lab.model(**x))
    lab.add_router("mm", "mask-routed", targets="attention", branches=BRANCHES)  # init="lora": B = 0
    lab.use("mm")
    types = torch.randint(0, 2, x["input_ids"].shape, generator=torch.Generator().manual_seed(1))
    with routing_context(token_types=types):
        out, cache = lab.run(x, record=["*.hook_route", "*.hook_branch_norm"])
    torch.testing.assert_close(output_of(out), base, rtol=0, atol=0)
    routes = [v for k, v in cache.items() if k.endswith("hook_route")]
    assert len(routes) == 8 and all((r.weights.argmax(-1) == types).all() for r in routes)
    assert all(v.shape == (3, 7, 2) for k, v in cache.items() if k.endswith("hook_branch_norm"))


def test_gradients_reach_both_branches():
    from workbench.training import fit

    lab = tiny_lab()
    routed = lab.add_router("mm", "mask-routed", targets="q_proj", branches=BRANCHES)
    before = {k: v.clone() for k, v in routed.state_dict().items()}
    feats = [{"input_ids": [1, 2, 3, 4], "labels": [-100, 2, 3, 4], "task": 0}] * 4
    with routing_context(token_types=torch.tensor([[0, 1, 0, 1]] * 2)):
        fit(lab, routed.trainable(), feats, use="mm", label="mm", steps=2, lr=1e-2, batch_size=2, seed=0,
            progress=False)
    after = routed.state_dict()
    for n in BRANCHES:
        assert any(not torch.equal(before[k], after[k]) for k in before if k.endswith(f"B.{n}"))
