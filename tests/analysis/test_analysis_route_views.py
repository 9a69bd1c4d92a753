"""The route-lab mechanism frames against hand computations on tiny routers.

Each test recomputes the mechanism's defining step by hand (SMoRA: the biased top-k values as gates and
a bias moved by the padding-inclusive counts; LoRAMoE: a dense softmax over every expert; ALoRA:
causal scaled attention per head; MixLoRA: top-k of the FFN router's softmax), so changing that step
in the mechanism or the frame fails here.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import tiny_inputs, tiny_lab
from workbench.analysis.bias_trace import (
    KINDS,
    bias_trajectory,
    gate_histogram,
    gate_values,
    load_cv,
    selection_share,
    trace_routes,
)
from workbench.analysis.head_attention import head_attention, span_attention
from workbench.analysis.task_load import specialization, task_load
from workbench.analysis.type_importance import group_share, type_importance
from workbench.errors import WorkbenchError
from workbench.hooks import Cache
from workbench.routing import ROUTERS, routing_context

Q0 = "model.layers.0.self_attn.q_proj"


@pytest.fixture(scope="module")
def smora_lab():
    lab = tiny_lab()
    lab.add_router("sm", "smora", r=8, k=2, init="random", targets="attention", bias_u=0.01)
    return lab


def test_gate_values_are_the_biased_top_k_renormalised_to_k_by_hand(smora_lab):
    lab, x = smora_lab, tiny_inputs(smora_lab.model)
    bias = torch.tensor([0.3, -0.2, 0.1, 0.0, -0.1, 0.25, -0.3, 0.05])
    routers = [m for n, m in lab.model.named_modules() if n.endswith("routes.sm")]
    saved = [r.bias.clone() for r in routers]
    try:
        for r in routers:
            r.bias.copy_(bias)
        with lab.using("sm"):
            _, cache = lab.run(x, record=["*.routes.sm.hook_route", f"{Q0}.hook_in"])
    finally:
        for r, b in zip(routers, saved, strict=True):
            r.bias.copy_(b)
    router = next(m for n, m in lab.model.named_modules() if n == f"{Q0}.routes.sm")
    mask = x["attention_mask"]
    values = gate_values(cache, mask=mask)
    mine = values[(values.layer == 0) & (values.module == "self_attn.q_proj")]
    with torch.no_grad():
        z = cache[f"{Q0}.hook_in"][mask.bool()]  # (N, in): the real tokens
        g = torch.sigmoid(z @ router.router.T)  # (N, r) unbiased scores
        v, idx = (g + bias).topk(2, -1)  # top-k of the BIASED scores, and their biased values
        gate = 2 * v / v.sum(-1, keepdim=True)  # renormalised to sum to k
        unbiased_gate = 2 * g.gather(-1, idx) / g.gather(-1, idx).sum(-1, keepdim=True)
    np.testing.assert_array_equal(mine["expert"].to_numpy(), idx.reshape(-1).numpy())
    np.testing.assert_allclose(mine["score"], g.gather(-1, idx).reshape(-1), rtol=1e-5)
    np.testing.assert_allclose(mine["biased"], v.reshape(-1), rtol=1e-5)
    np.testing.assert_allclose(mine["gate"], gate.reshape(-1), rtol=1e-5)
    assert not np.allclose(mine["gate"], unbiased_gate.reshape(-1), rtol=1e-3)  # the bias matters here
    assert (mine["k"] == 2).all()
    hist = gate_histogram(values, bins=4)
    one = hist[(hist.layer == 0) & (hist.module == "self_attn.q_proj")]
    assert one.groupby("kind")["share"].sum().to_numpy() == pytest.approx([1.0] * 3)
    assert list(dict.fromkeys(one.kind)) == list(KINDS)
    gk = one[one.kind == KINDS[2]]
    assert gk["lo"].min() == pytest.approx(float((gate / 2).min()), rel=1e-5)  # G / k, not G
    share = selection_share(values)
    q = share[(share.layer == 0) & (share.module == "self_attn.q_proj")].set_index("expert")["share"]
    counts = torch.bincount(idx.reshape(-1), minlength=8).float() / len(z)
    np.testing.assert_allclose(q.reindex(range(8), fill_value=0.0), counts, rtol=1e-6)


def test_bias_trajectory_moves_by_u_sign_of_mean_minus_padding_inclusive_counts(smora_lab):
    lab, x = smora_lab, tiny_inputs(smora_lab.model)
    routers = [m for n, m in lab.model.named_modules() if n.endswith("routes.sm")]
    for r in routers:
        r.bias.zero_()
    with trace_routes(lab.model) as trace:
        with lab.session("sm", train=True):
            for _ in range(3):
                lab.model(**x)
        with lab.using("sm"):
            lab.run(x)  # an eval forward: not kept (it does not move the bias)
    traj = bias_trajectory(trace)
    q = traj[(traj.layer == 0) & (traj.module == "self_attn.q_proj")].pivot(index="step", columns="expert")
    assert list(q.index) == [0, 1, 2]
    b, c = q["bias"].to_numpy(), q["count"].to_numpy()  # (S, E)
    assert (b[0] == 0).all()
    np.testing.assert_allclose(c.sum(1), [x["input_ids"].numel() * 2] * 3)  # every token, padding included
    for s in range(2):
        np.testing.assert_allclose(b[s + 1], b[s] + 0.01 * np.sign(c[s].mean() - c[s]), atol=1e-7)
    cv = load_cv(traj)
    one = cv[(cv.layer == 0) & (cv.module == "self_attn.q_proj")]["cv"].to_numpy()
    np.testing.assert_allclose(one, c.std(1) / c.mean(1), rtol=1e-6)
    with pytest.raises(WorkbenchError, match="no biased routing records"):
        with trace_routes(lab.model) as empty:
            pass
        bias_trajectory(empty)


def test_type_importance_is_the_dense_softmax_over_every_expert_by_hand():
    router = ROUTERS.get("loramoe")(6, 5, generator=torch.Generator().manual_seed(0), experts=4, r=2,
                                    init="random")
    x = torch.randn(3, 4, 6, generator=torch.Generator().manual_seed(1))
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]])
    seen = {}
    router.hook_route.register_forward_hook(lambda m, i, o: seen.setdefault("rec", o))
    router.eval()
    with torch.no_grad():
        router(x, None)
    cache = Cache({"model.layers.1.mlp.up_proj.routes.moe.hook_route": seen["rec"]})
    types = ["knowledge", "task", "knowledge"]
    imp = type_importance(cache, types, mask=mask, expert_groups={"K": [0, 1], "T": [2, 3]})
    with torch.no_grad():
        omega = torch.softmax(x @ router.router.T, -1)  # every expert, no top-k
    for rows, kind in (([0, 2], "knowledge"), ([1], "task")):
        real = mask[rows].bool()
        want = omega[rows][real].mean(0)
        got = imp[imp.type == kind].set_index("expert")["importance"]
        np.testing.assert_allclose(got.to_numpy(), want.numpy(), rtol=1e-5)
    assert imp.set_index("expert")["expert_group"].to_dict() == {0: "K", 1: "K", 2: "T", 3: "T"}
    share = group_share(imp).set_index(["type", "expert_group"])["share"]
    real = mask[[0, 2]].bool()
    want_k = omega[[0, 2]][real][:, :2].sum(-1).mean()  # a token's weights sum to 1: share = mean mass
    assert share[("knowledge", "K")] == pytest.approx(float(want_k), rel=1e-5)
    assert share[("knowledge", "K")] + share[("knowledge", "T")] == pytest.approx(1.0)
    with pytest.raises(WorkbenchError, match="without a group"):
        type_importance(cache, types, expert_groups={"K": [0]})


def test_head_attention_is_causal_scaled_attention_per_head_by_hand():
    router = ROUTERS.get("alora")(6, 5, generator=torch.Generator().manual_seed(2), init="random", r=4,
                                  heads=2)
    x = torch.randn(2, 4, 6, generator=torch.Generator().manual_seed(3))
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    seen = {}
    router.hook_attn.register_forward_hook(lambda m, i, o: seen.setdefault("attn", o))
    with torch.no_grad(), routing_context(attention_mask=mask):
        router(x, None)
    cache = Cache({"model.layers.0.self_attn.v_proj.routes.al.hook_attn": seen["attn"]})
    maps = head_attention(cache, row=1, tokens=["a", "b", "c", "<pad>"], mask=mask)
    assert set(maps["query"]) == {0, 1, 2} and set(maps["key"]) == {0, 1, 2}  # padding dropped
    with torch.no_grad():
        z = x[1] @ router.A.T  # (T, r)
        q, k = z @ router.W_q.T, z @ router.W_k.T
        for h in range(2):
            cols = slice(2 * h, 2 * h + 2)
            logits = q[:3, cols] @ k[:3, cols].T / math.sqrt(2)  # scaled by sqrt(r / heads)
            logits = logits.masked_fill(torch.ones(3, 3).triu(1).bool(), float("-inf"))  # causal
            want = logits.softmax(-1)
            got = maps[maps["head"] == h].pivot(index="query", columns="key", values="weight").fillna(0.0)
            np.testing.assert_allclose(got.to_numpy(), want.numpy(), rtol=1e-5, atol=1e-7)
            mass = span_attention(maps, ["general", "domain", "domain", "domain"])
            mass = mass[mass["head"] == h].set_index("span")["weight"]
            assert mass["general"] == pytest.approx(float(want[:, 0].mean()), rel=1e-5)  # mean over queries
            assert mass["domain"] == pytest.approx(float(want[:, 1:].sum(-1).mean()), rel=1e-5)
    assert maps.loc[(maps["query"] == 2) & (maps["key"] == 0), "key_token"].iloc[0] == "a"
    with pytest.raises(WorkbenchError, match="no hook_attn"):
        head_attention(Cache({"a.hook_in": torch.zeros(1, 2, 3)}))


def test_task_load_counts_top_k_of_the_ffn_softmax_by_hand():
    from tests.routing.test_routing_mixlora import MLP, make

    block = MLP()
    router = make(block, experts=4, k=2, init="random", r=2)
    with torch.no_grad():
        router.router.mul_(50)  # a sharp router, so that tasks differ
    x = torch.randn(3, 5, block.gate_proj.in_features, generator=torch.Generator().manual_seed(4))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    seen = {}
    router.hook_route.register_forward_hook(lambda m, i, o: seen.setdefault("rec", o))
    router.eval()
    with torch.no_grad(), routing_context(attention_mask=mask):
        router(x, block)
    cache = Cache({"model.layers.0.mlp.routes.mix.hook_route": seen["rec"]})
    groups = ["arith", "topic", "arith"]
    load = task_load(cache, groups, mask=mask)
    with torch.no_grad():
        p = torch.softmax(x @ router.router.T, -1)  # (B, T, E): the FFN input, softmax over E
        top = p.topk(2, -1)
    for rows, g in (([0, 2], "arith"), ([1], "topic")):
        idx = top.indices[rows][mask[rows].bool()]  # (n, k)
        want = torch.bincount(idx.reshape(-1), minlength=4).float() / idx.numel()
        got = load[load.group == g].set_index("expert")
        np.testing.assert_allclose(got["load"].to_numpy(), want.numpy(), rtol=1e-6)
        assert got["tokens"].iloc[0] == int(mask[rows].sum())
        w = top.values[rows][mask[rows].bool()]
        w = w / w.sum(-1, keepdim=True)  # renormalised over the k kept
        mass = torch.zeros(4).index_add(0, top.indices[rows][mask[rows].bool()].reshape(-1), w.reshape(-1))
        np.testing.assert_allclose(got["gate"].to_numpy(), (mass / mass.sum()).numpy(), rtol=1e-5)


def test_specialization_is_the_task_expert_mutual_information():
    def frame(loads):
        return pd.DataFrame([(0, "mlp", "mix", g, e, v, v, 10) for g, row in loads.items()
                             for e, v in enumerate(row)],
                            columns=["layer", "module", "router", "group", "expert", "load", "gate",
                                     "tokens"])

    own = specialization(frame({"a": [1.0, 0.0], "b": [0.0, 1.0]}))
    same = specialization(frame({"a": [0.5, 0.5], "b": [0.5, 0.5]}))
    assert own["mutual_information"].iloc[0] == pytest.approx(math.log(2))
    assert own["max"].iloc[0] == pytest.approx(math.log(2))
    assert same["mutual_information"].iloc[0] == pytest.approx(0.0, abs=1e-12)
