"""Routers in mixed batches (workbench.routing.rows): a router's rows equal those rows run alone with
the router, beside plain adapters and base rows, for a rank-level router (SMoRA), a bank MoE on the
linear layers (LoRAMoE), a block router (MixLoRA), a context-reading one (RecLoRA), and in generation
with a KV cache; training refuses (its losses are batch statistics)."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import assert_rows_generate_alone, output_of, tiny_inputs, tiny_lab
from workbench.errors import WorkbenchError
from workbench.routing import routing_context


def _lab(router: str, **params):
    lab = tiny_lab()
    for i, r in enumerate((2, 8)):
        lab.new_adapter(f"a{i}", r=r, targets="all-linear", init="random", seed=i)
    lab.add_router("rt", router, seed=5, **params)
    lab.model.eval()
    return lab


def _alone(lab, x, rows, ctx=None) -> torch.Tensor:
    outs = []
    for i, r in enumerate(rows):
        part = {k: v[i:i + 1] for k, v in (ctx or {}).items()}
        with lab.using(r), routing_context(**part):
            outs.append(output_of(lab.run({k: v[i:i + 1] for k, v in x.items()})[0]))
    return torch.cat(outs)


ROUTERS = {
    "smora": dict(targets="all-linear", r=8, k=2, init="random"),
    "loramoe": dict(experts=4, r=4, init="random"),
    "mixlora": dict(experts=4, k=2, r=4, init="random"),
}
ROWS = ["rt", "a0", None, "rt", "a1", "rt"]


@pytest.mark.parametrize("router", sorted(ROUTERS))
def test_router_rows_equal_each_row_alone(router):
    lab = _lab(router, **ROUTERS[router])
    x = tiny_inputs(lab.model, batch=len(ROWS), length=7)
    with lab.using(rows=ROWS):
        mixed = output_of(lab.run(x)[0])
    with lab.using(None):
        base = output_of(lab.run(x)[0])
    paths = {layer.mixed_path for layer in lab.layers.values() if layer.mixed_path}
    assert "pool + router rt" in paths if router != "mixlora" else paths == {"pool"}
    routed = torch.tensor([r == "rt" for r in ROWS])
    assert (mixed - base)[routed].abs().amax() > 1e-3, "the router must change its rows"
    torch.testing.assert_close(mixed, _alone(lab, x, ROWS), atol=1e-5, rtol=0)


def test_context_is_cut_to_the_routers_rows():
    """RecLoRA reads one context vector per row: its rows get theirs, not the batch's first ones."""
    lab = _lab("reclora", ctr_dim=5, M=4, init="random")
    rows = ["a0", "rt", None, "rt"]
    x = tiny_inputs(lab.model, batch=4, length=6)
    ctx = {"context": torch.randn(4, 5, generator=torch.Generator().manual_seed(2))}
    with lab.using(rows=rows), routing_context(**ctx):
        mixed = output_of(lab.run(x)[0])
    torch.testing.assert_close(mixed, _alone(lab, x, rows, ctx), atol=1e-5, rtol=0)


def test_generation_with_a_kv_cache_keeps_each_rows_router_or_adapter():
    lab = _lab("smora", **ROUTERS["smora"])
    x = tiny_inputs(lab.model, batch=4, length=6)
    x["attention_mask"] = torch.ones_like(x["input_ids"])
    rows = ["rt", "a1", None, "rt"]
    kw = dict(max_new_tokens=5, do_sample=False, return_dict_in_generate=True, output_logits=True,
              pad_token_id=0)
    with lab.using(rows=rows), torch.no_grad():
        mixed = lab.model.generate(**x, **kw)
    assert_rows_generate_alone(lab, x, rows, mixed, **kw)


@pytest.mark.parametrize("router", ["smora", "mixlora"])
def test_training_a_router_in_a_mixed_batch_is_refused(router):
    lab = _lab(router, **ROUTERS[router])
    x = tiny_inputs(lab.model, batch=3, length=5)
    with lab.session(rows=["rt", "a0", None], train=True), pytest.raises(WorkbenchError,
                                                                         match="statistics over the whole"):
        lab.model(**x)
