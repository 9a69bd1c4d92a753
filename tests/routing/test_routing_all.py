"""Invariants every registered router shares, checked on a tiny model.

Each mechanism file adds one entry to CASES: constructor params (with ``init="lora"``, i.e. B = 0,
where it has factors), an optional ``setup(lab)`` (e.g. a bank of adapters), and the routing
context its forward needs for a batch of token ids.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import torch

from tests.conftest import output_of, tiny_inputs, tiny_lab
from workbench.routing import ROUTERS, routing_context


@dataclass
class Case:
    params: dict
    setup: Callable | None = None  # setup(lab) before add_router
    context: Callable = field(default=lambda ids: {})  # context(input_ids) -> routing_context kwargs
    zero_at_init: bool = True  # B = 0 at init: the routed model starts as the base


CASES: dict[str, Case] = {
    "smora": Case(dict(r=8, k=2, targets="all-linear")),
    "mixlora": Case(dict(experts=4, k=2, r=4)),
    "mixlora-dynamic": Case(dict(experts=4, r=4, top_p=1.0)),  # top_p < 1 scales the FFN by Σp_kept
    "mixlora-switch": Case(dict(experts=4, r=4), zero_at_init=False),  # the gate p_max < 1 scales the FFN
    "loramoe": Case(dict(experts=4, r=4, blc_alpha=0.1, blc_weight=0.1)),
    "lora-mixer": Case(dict(experts=4, k=2, r=4)),
    "meteora": Case(dict(bank=["a", "b"], k=1),  # a bank over all-linear: the default targets
                    setup=lambda lab: [lab.new_adapter(n, r=2, targets="all-linear", seed=i)
                                       for i, n in enumerate("ab")]),
    "reclora": Case(dict(ctr_dim=4, M=4, r=4), context=lambda ids: {"context": torch.ones(ids.shape[0], 4)}),
    "mask-routed": Case(dict(branches={"language": 4, "vision": 2}),
                        context=lambda ids: {"token_types": ids % 2}),
    "prompt-scale": Case(dict(r=4), context=lambda ids: {"prompt_scale": {w: torch.ones(ids.shape[0], w)
                                                                          for w in (64, 32)}}),  # tiny-llama
    "arrow": Case(dict(bank=["a", "b"], top_k=1),  # B = 0 bank: the routed model starts as the base
                  setup=lambda lab: [lab.new_adapter(n, r=2 + i, targets="all-linear", seed=i)
                                     for i, n in enumerate("ab")]),
    "tara": Case(dict(bank=["a", "b"]),
                 setup=lambda lab: [lab.new_adapter(n, r=2, targets="attention", seed=i)
                                    for i, n in enumerate("ab")],
                 context=lambda ids: {"token_masks": {"a": torch.ones(ids.shape),
                                                      "b": torch.zeros(ids.shape)}}),
    "alora": Case(dict(r=4, heads=2)),
    "flylora": Case(dict(r=8, k=2)),
    "mora": Case(dict(r=4, k=2)),
}


def test_every_router_has_a_case_and_a_reference():
    assert set(ROUTERS.names()) == set(CASES), "add a Case for each registered router"
    for name in ROUTERS.names():
        assert ROUTERS.get(name).reference, f"{name} has no reference"


def _lab_with(name: str, model: str = "tiny-llama"):
    lab = tiny_lab(model)
    case = CASES[name]
    if case.setup:
        case.setup(lab)
    x = tiny_inputs(lab.model)
    with lab.using(None):
        base = output_of(lab.model(**x))
    lab.add_router("r", name, seed=3, **case.params)
    return lab, x, base, case


@pytest.mark.parametrize("name", ROUTERS.names())
def test_starts_as_the_base_and_records_its_routing(name):
    lab, x, base, case = _lab_with(name)
    lab.use("r")
    with routing_context(**case.context(x["input_ids"])):
        out, cache = lab.run(x, record="*.hook_route")
    if case.zero_at_init:
        torch.testing.assert_close(output_of(out), base)
    assert len(cache) == len(lab.routers["r"].modules)
    for rec in cache.values():
        assert rec.weights.shape[:2] == x["input_ids"].shape
        assert torch.isfinite(rec.scores).all() and torch.isfinite(rec.weights).all()


@pytest.mark.parametrize("name", ROUTERS.names())
def test_same_seed_same_router(name):
    one = _lab_with(name)[0].routers["r"].state_dict()
    two = _lab_with(name)[0].routers["r"].state_dict()
    assert one.keys() == two.keys() and all(torch.equal(one[k], two[k]) for k in one)
