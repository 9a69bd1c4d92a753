"""Arrow routing: prototypes and per-token selection against a hand computation and against peft's
``ArrowLoraLinearLayer``; in the lab it routes the library and freezes into one adapter."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.conftest import tiny_inputs, tiny_lab
from workbench.errors import WorkbenchError
from workbench.routing import ROUTERS

IN, OUT = 24, 20


def library(ranks=(3, 4, 2), seed=0, gap=True):
    """(A (r, in), B (out, r), s) per adapter; with ``gap`` the first singular value dominates."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for r in ranks:
        A, B = torch.randn(r, IN, generator=g), torch.randn(OUT, r, generator=g)
        if gap:
            B[:, 0] *= 6.0
        out.append((A, B, 0.5 + len(out)))
    return out


def router(factors, top_k=2, temperature=0.7):
    cls = ROUTERS.get("arrow")
    return cls(IN, OUT, generator=torch.Generator(), bank=[f"t{i}" for i in range(len(factors))],
               factors=factors, top_k=top_k, temperature=temperature)


def test_prototype_is_the_top_right_singular_vector():
    factors = library(gap=False)
    r = router(factors)
    for proto, (A, B, s) in zip(r.prototypes, factors, strict=True):
        _, _, Vh = torch.linalg.svd((s * B @ A).double())
        assert abs(float(proto.double() @ Vh[0])) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_selection_and_update_match_a_hand_computation(top_k):
    factors = library(gap=False)
    r = router(factors, top_k=top_k)
    x = torch.randn(2, 5, IN, generator=torch.Generator().manual_seed(1))
    got = r(x, None)
    protos = []
    for A, B, s in factors:
        _, _, Vh = torch.linalg.svd((s * B @ A).double())
        protos.append(Vh[0])
    for b in range(2):
        for t in range(5):
            xt = x[b, t].double()
            sim = torch.stack([(xt @ p).abs() for p in protos])  # |⟨x, p_e⟩|
            chosen = sorted(range(3), key=lambda e: -float(sim[e]))[:top_k]
            w = torch.softmax(sim[chosen] / 0.7, 0)
            expected = sum(wi * s * (B.double() @ (A.double() @ xt))
                           for wi, (A, B, s) in zip(w, [factors[e] for e in chosen], strict=True))
            assert torch.allclose(got[b, t].double(), expected, atol=1e-4, rtol=1e-4)


def test_agrees_with_peft_arrow():
    arrow = pytest.importorskip("peft.tuners.lora.arrow")
    from peft.tuners.lora.config import ArrowConfig

    factors = library(ranks=(3, 3, 3, 3), seed=2)  # peft needs one rank
    cfg = ArrowConfig(top_k=2, router_temperature=0.7, rng_seed=0)
    cfg.task_adapter_names = [f"t{i}" for i in range(4)]
    layer = arrow.ArrowLoraLinearLayer(IN, cfg)
    lora_A, lora_B = nn.ModuleDict(), nn.ModuleDict()
    for i, (A, B, _) in enumerate(factors):
        lora_A[f"t{i}"], lora_B[f"t{i}"] = nn.Linear(IN, 3, bias=False), nn.Linear(3, OUT, bias=False)
        lora_A[f"t{i}"].weight.data, lora_B[f"t{i}"].weight.data = A.clone(), B.clone()
    # peft's prototype ignores the scale (it cannot change a direction): pass s = 1 to both
    layer.build_prototypes(lora_A, lora_B)
    ours = router([(A, B, 1.0) for A, B, _ in factors], top_k=2, temperature=0.7)
    for p_peft, p_ours in zip(layer.prototypes, ours.prototypes, strict=True):
        assert abs(float(p_peft @ p_ours)) == pytest.approx(1.0, abs=1e-4)
    x = torch.randn(3, 6, IN, generator=torch.Generator().manual_seed(3))
    expected = layer(x, lora_A, lora_B, nn.Identity(), {f"t{i}": 1.0 for i in range(4)})
    torch.testing.assert_close(ours(x, None), expected, atol=1e-4, rtol=1e-4)


def test_in_the_lab_it_routes_records_and_freezes():
    from workbench.routing import freeze

    lab = tiny_lab()
    for i, n in enumerate(["a", "b", "c"]):
        lab.new_adapter(n, r=2 + i, targets="attention", seed=i, init="random")
    lab.add_router("arrow", "arrow", bank=["a", "b", "c"], top_k=2)
    x = tiny_inputs(lab.model)
    lab.use("arrow")
    _, cache = lab.run(x, record="*.hook_route")
    assert len(cache) == len(lab.adapters["a"].modules)
    for rec in cache.values():
        assert torch.allclose(rec.weights.sum(-1), torch.ones(rec.weights.shape[:-1]), atol=1e-5)
        assert ((rec.weights > 0).sum(-1) == 2).all()
    adapter, report = freeze(lab, "arrow", x, name="arrow_static")
    assert set(adapter.modules) == set(lab.adapters["a"].modules) and report["tokens"] > 0


def test_bad_library_names_the_fix():
    lab = tiny_lab()
    lab.new_adapter("a", r=2, targets="attention")
    with pytest.raises(WorkbenchError, match="needs bank=.*library"):
        lab.add_router("r", "arrow")
    with pytest.raises(WorkbenchError, match="does not hold"):
        lab.add_router("r", "arrow", bank=["a", "zz"])
    with pytest.raises(WorkbenchError, match="1 <= k <= 1"):
        lab.add_router("r", "arrow", bank=["a"])  # peft's default top_k = 3 > the library
    assert not lab.routers


def test_router_is_a_detached_copy_of_the_library():
    """No parameter trains and the lab's adapters are never touched: with factors that require grad
    (the lab's adapters are Parameters), nothing of the router holds their graph, and nothing is saved."""
    factors = [(A.requires_grad_(), B.requires_grad_(), s) for A, B, s in library()]
    r = router(factors)
    assert not any(t.requires_grad for t in (r.A, r.B, r.scales, r.prototypes))
    out = r(torch.randn(3, IN, generator=torch.Generator().manual_seed(4)), None)
    assert not out.requires_grad
    assert r.state_dict() == {}  # rebuilt from the bank, never saved
    for (A, B, s), (a, b, t) in zip(factors, r.bank_factors(), strict=True):
        assert a.shape == A.shape and b.shape == B.shape and t == s  # unpadded: (r_j, in), (out, r_j)
        assert torch.equal(a, A.detach()) and torch.equal(b, B.detach())


def test_temperature_zero_is_refused():
    with pytest.raises(WorkbenchError, match="temperature"):
        router(library(), temperature=0.0)
