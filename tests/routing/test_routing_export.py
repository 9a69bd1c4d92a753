"""export: every exportable router as one static LoRA adapter that peft loads with the lab's logits.

For each mechanism: an averaged export over prompts (in the routing context the router reads) gives the
same logits in the lab and in ``peft.PeftModel``; the configurations the math makes static export
exactly, without prompts, with the router's own logits; the router is left as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import torch

from tests.conftest import output_of, tiny_inputs, tiny_lab
from workbench import analysis, zoo
from workbench.errors import WorkbenchError
from workbench.routing import ROUTERS, Router, routing_context
from workbench.routing.freeze import freeze
from workbench.routing.static_form import EXPORTS


def _bank(targets: str = "attention", names: str = "ab"):
    def setup(lab):
        for i, n in enumerate(names):
            lab.new_adapter(n, r=2 + i, init="random", targets=targets, seed=i)
    return setup


@dataclass
class Case:
    params: dict
    setup: Callable | None = None
    context: Callable = field(default=lambda ids: {})
    exact: dict | None = None  # params of a configuration that exports exactly (None: none exists)
    after: Callable | None = None  # after(routed): make the exact configuration (e.g. W_o = 0)
    exact_context: Callable | None = None  # the context of the exact configuration (default: context)


SCALES = {w: torch.linspace(0.5, 2.0, w) for w in (64, 32)}  # tiny-llama's output widths
CASES: dict[str, Case] = {
    "smora": Case(dict(r=8, k=2, init="random"), exact=dict(r=4, k=4, rank_partition=4, init="random")),
    "flylora": Case(dict(r=8, k=2, init="random"), exact=dict(r=4, k=4, init="random")),
    "mora": Case(dict(r=4, k=2, init="random"), exact=dict(r=1, k=1, init="random")),
    "loramoe": Case(dict(experts=4, r=4, init="random"), exact=dict(experts=1, r=4, init="random")),
    "lora-mixer": Case(dict(experts=4, k=2, r=4, init="random"),
                       exact=dict(experts=1, k=1, r=4, init="random")),
    "meteora": Case(dict(bank=["a", "b"], k=2, targets="attention"), setup=_bank(),
                    exact=dict(bank=["a"], k=1, targets="attention")),
    "mixlora": Case(dict(experts=4, k=2, r=4, init="random"),
                    exact=dict(experts=1, k=1, r=4, init="random")),
    "prompt-scale": Case(dict(r=4, init="random"),
                         context=lambda ids: {"prompt_scale": {
                             w: s * (1 + torch.arange(ids.shape[0]))[:, None] for w, s in SCALES.items()}}),
    "mask-routed": Case(dict(branches={"language": 4, "vision": 2}, init="random"),
                        context=lambda ids: {"token_types": ids % 2},
                        exact=dict(branches={"language": 4}, init="random"),
                        exact_context=lambda ids: {"token_types": torch.zeros_like(ids)}),
    "reclora": Case(dict(ctr_dim=4, M=3, r=4, init="random"),
                    context=lambda ids: {"context": torch.randn(ids.shape[0], 4,
                                                                generator=torch.Generator().manual_seed(0))},
                    exact=dict(ctr_dim=4, M=1, r=4, init="random")),
    "tara": Case(dict(bank=["a", "b"]), setup=_bank(),
                 context=lambda ids: {"token_masks": {"a": (ids % 2).float(), "b": (ids % 3 == 0).float()}},
                 exact=dict(bank=["a", "b"], targets=["q_proj", "o_proj"])),
    "alora": Case(dict(r=4, heads=2, init="random"), exact=dict(r=4, heads=2, init="random"),
                  after=lambda routed: [r.W_o.data.zero_() for r in routed.modules.values()]),
}


def test_every_exportable_router_has_a_static_form_and_a_case():
    assert ROUTERS.names(flag="exportable") == EXPORTS.names() == sorted(CASES)
    for name in EXPORTS.names():
        assert EXPORTS.info(name).summary and EXPORTS.get(name).exact_when


def _lab(name: str, params: dict):
    lab = tiny_lab()
    if CASES[name].setup:
        CASES[name].setup(lab)
    lab.add_router("r", name, seed=3, **params)
    return lab


def _logits(lab, use, x, context) -> torch.Tensor:
    with lab.using(use), routing_context(**context, attention_mask=x["attention_mask"]):
        return output_of(lab.run(x)[0])


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_averaged_export_loads_in_peft_with_the_labs_logits(name, tmp_path):
    from peft import PeftModel

    case = CASES[name]
    lab = _lab(name, case.params)
    x = tiny_inputs(lab.model)
    context = case.context(x["input_ids"])
    state = {k: v.clone() for k, v in lab.routers["r"].state_dict().items()}
    adapter = lab.export_router("r", x, context=context)
    report = lab.last_export
    assert adapter.name == "r_export" and "r_export" in lab.adapters and not report["exact"]
    assert adapter.lineage["method"] == "export" and adapter.lineage["mechanism"] == name
    assert report["tokens"] == int(x["attention_mask"].sum()) and 0 < report["top1_agreement"] <= 1
    assert 0 <= report["rel_logit_error"] < 1 and report["kl"] >= 0
    assert all(torch.equal(v, state[k]) for k, v in lab.routers["r"].state_dict().items())  # left as it was
    ours = _logits(lab, "r_export", x, {})
    assert (ours - _logits(lab, None, x, {})).abs().max() > 1e-3, "the export must change the model"
    lab.save_adapter(adapter, tmp_path / "export")
    peft_model = PeftModel.from_pretrained(zoo.load("tiny-llama").model, tmp_path / "export").eval()
    with torch.no_grad():
        theirs = output_of(peft_model(**x))
    torch.testing.assert_close(theirs, ours, atol=2e-5, rtol=0)


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if c.exact))
def test_static_configurations_export_exactly_without_prompts(name):
    case = CASES[name]
    lab = _lab(name, case.exact)
    if case.after:
        case.after(lab.routers["r"])
    x = tiny_inputs(lab.model)
    context = (case.exact_context or case.context)(x["input_ids"])
    adapter = lab.export_router("r", context=context)
    assert lab.last_export["exact"] and adapter.lineage["exact"] and lab.last_export["tokens"] == 0
    routed = _logits(lab, "r", x, context)
    assert (routed - _logits(lab, None, x, context)).abs().max() > 1e-3, "the router must change the model"
    torch.testing.assert_close(_logits(lab, adapter.name, x, {}), routed, atol=2e-5, rtol=0)
    lab.export_router("r", x, adapter_name="measured", context=context)  # measured: zero distance
    assert lab.last_export["exact"] and lab.last_export["rel_logit_error"] < 1e-5
    assert lab.last_export["top1_agreement"] == 1.0


def test_a_prompt_scale_with_one_sigma_for_every_prompt_exports_at_zero_distance():
    lab = _lab("prompt-scale", CASES["prompt-scale"].params)
    x = tiny_inputs(lab.model)
    lab.export_router("r", x, context={"prompt_scale": SCALES})
    assert not lab.last_export["exact"] and lab.last_export["rel_logit_error"] < 1e-5


def test_the_statistic_is_the_mean_decision_over_real_tokens():
    lab = _lab("smora", dict(r=8, k=2, init="random", targets="q_proj"))
    x = tiny_inputs(lab.model)
    with lab.using("r"):
        _, cache = lab.run(x, record="*.hook_route")
    path = "model.layers.0.self_attn.q_proj"
    want = cache[f"{path}.routes.r.hook_route"].weights[x["attention_mask"].bool()].mean(0)  # (r,)
    adapter = lab.export_router("r", x)
    got = lab.last_export["statistics"].query("module == @path")["value"]
    torch.testing.assert_close(torch.tensor(got.tolist()), want)
    router = lab.routers["r"].modules[path]
    torch.testing.assert_close(adapter.delta(path), router.scaling * router.B @ torch.diag(want) @ router.A,
                               atol=1e-6, rtol=1e-5)


def test_a_bank_router_exports_what_freeze_makes():
    lab = _lab("meteora", CASES["meteora"].params)
    x = tiny_inputs(lab.model)
    exported = lab.export_router("r", x)
    frozen, report = freeze(lab, "r", x)
    for path in frozen.modules:
        torch.testing.assert_close(exported.delta(path), frozen.delta(path), atol=1e-6, rtol=1e-5)
    assert lab.last_export["rel_logit_error"] == pytest.approx(report["rel_logit_error"], rel=1e-4)


def test_routers_enter_the_angle_matrix_and_spectra_through_their_export():
    lab = _lab("smora", CASES["smora"].params)
    lab.new_adapter("a", r=2, init="random", targets="all-linear")
    x = tiny_inputs(lab.model)
    named = lab.as_adapters(["a", "r"], prompts=x)
    assert list(named) == ["a", "r"] and set(lab.adapters) == {"a"}  # the export is not kept
    frame = analysis.angles(named)
    assert set(frame.adapter_a) | set(frame.adapter_b) == {"a", "r"}
    assert not analysis.spectrum(named["r"]).empty
    with pytest.raises(WorkbenchError, match="neither adapters nor routers"):
        lab.as_adapters(["a", "zz"])
    exported = lab.export_router("r", x)  # kept: it sums with adapters like any other
    summed = lab.merge(["a", exported.name], weights=[1.0, 1.0])
    path = "model.layers.1.self_attn.q_proj"
    torch.testing.assert_close(summed.delta(path), lab.adapters["a"].delta(path) + exported.delta(path),
                               atol=1e-6, rtol=1e-5)


def test_clear_errors():
    lab = _lab("smora", CASES["smora"].params)
    with pytest.raises(WorkbenchError, match="pass prompts=.*exactly, without prompts, when k = r"):
        lab.export_router("r")
    with pytest.raises(WorkbenchError, match="no router 'zz'"):
        lab.export_router("zz")
    assert not lab.adapters


class _Opaque(Router):
    """A router without a static form (for the refusal)."""

    reference = "test only"

    def __init__(self, in_features: int, out_features: int, *, generator: torch.Generator):
        super().__init__()

    def forward(self, x, base):
        return torch.zeros(*x.shape[:-1], base.out_features)


def test_a_mechanism_without_the_flag_is_refused_by_name():
    ROUTERS.register("opaque-test")(_Opaque)
    try:
        lab = tiny_lab()
        lab.add_router("o", "opaque-test", targets="q_proj")
        with pytest.raises(WorkbenchError, match="'exportable' flag.*Use it as a router"):
            lab.export_router("o", tiny_inputs(lab.model))
        assert not lab.adapters
    finally:
        del ROUTERS._items["opaque-test"]
