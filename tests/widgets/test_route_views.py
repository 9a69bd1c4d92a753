"""The eight route-lab mechanism views, headless: each renders its frame, and a change of its selection
(what a click or a select in the browser sends) redraws the map from the frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from widgets._heatmap import decode
from widgets.head_maps import MEAN, HeadMaps
from widgets.leakage_map import LeakageMap
from widgets.rank_reuse import ACTIVE, RankReuseMap
from widgets.reward_mixture import CAPABILITIES, RewardMixture
from widgets.smora_gates import BIAS, GATES, SMoRAGates
from widgets.task_load import GATE, TaskLoad
from widgets.type_importance import EXPERTS, TypeImportance
from widgets.user_mixture_map import UserMixtureMap
from workbench.analysis.bias_trace import RouteTrace, bias_trajectory, gate_values
from workbench.analysis.head_attention import head_attention
from workbench.analysis.leakage import leakage
from workbench.analysis.rank_reuse import rank_block_mass
from workbench.analysis.reward_mixture import router_bars
from workbench.analysis.task_load import task_load
from workbench.analysis.type_importance import type_importance
from workbench.analysis.user_mixtures import user_mixture
from workbench.errors import WorkbenchError
from workbench.hooks import Cache
from workbench.routing import RoutingRecord

G = torch.Generator().manual_seed(0)


def key(layer: int, module: str = "self_attn.q_proj", hook: str = "hook_route") -> str:
    return f"model.layers.{layer}.{module}.routes.r.{hook}"


def topk_record(b=2, t=3, e=4, k=2, bias=None) -> RoutingRecord:
    scores = torch.rand(b, t, e, generator=G)
    top = (scores + (0 if bias is None else bias)).topk(k, -1)
    weights = torch.zeros_like(scores).scatter(-1, top.indices, top.values)
    return RoutingRecord(scores, k * weights / weights.sum(-1, keepdim=True), top.indices, bias)


def test_smora_gates_switch_layer_and_map():
    bias = torch.tensor([0.1, -0.1, 0.0, 0.05])
    cache = Cache({key(0): topk_record(bias=bias), key(1): topk_record(bias=-bias)})
    trace = RouteTrace()
    for layer in (0, 1):
        for s in range(3):
            trace.add(key(layer), topk_record(bias=bias * s * (1 if layer == 0 else -1)), training=True)
    traj = bias_trajectory(trace)
    view = SMoRAGates.from_frames(gate_values(cache), traj, bins=5)
    assert view.choices == [BIAS, GATES] and view.options == ["all layers", "layer 0", "layer 1"]
    assert decode(view.heatmap).shape == (4, 3) and view.curve["x"] == [0.0, 1.0, 2.0]
    view.set_state({"option": "layer 1"})  # what the select sends
    assert view.heatmap["option"] == "layer 1"
    np.testing.assert_allclose(decode(view.heatmap)[:, 2], (-2 * bias).numpy(), rtol=1e-6)  # rank × step
    view.set_state({"choice": GATES})
    hist = decode(view.heatmap)
    assert hist.shape == (3, 5) and np.allclose(hist.sum(1), 1.0)  # three stages, each a histogram
    assert view.curve == {} and decode(view.aside).shape == (1, 4)
    assert decode(view.aside).sum() == pytest.approx(2.0)  # k ranks per token
    assert SMoRAGates.from_frames(gate_values(cache)).choices == [GATES]  # no trajectory: gates only
    with pytest.raises(WorkbenchError, match="gate_values"):
        SMoRAGates.from_frames(traj)


def test_type_importance_switch_layer_and_level():
    w = {layer: torch.softmax(torch.randn(2, 3, 4, generator=G), -1) for layer in (0, 1)}
    cache = Cache({key(la, "mlp.up_proj"): RoutingRecord(v, v) for la, v in w.items()})
    imp = type_importance(cache, ["knowledge", "task"], expert_groups={"K": [0, 1], "T": [2, 3]})
    view = TypeImportance.from_frame(imp)
    shares = decode(view.heatmap)  # type × group, all layers
    assert shares.shape == (2, 2) and np.allclose(shares.sum(1), 1.0, atol=1e-6)
    view.set_state({"option": "layer 1", "choice": EXPERTS})
    np.testing.assert_allclose(decode(view.heatmap), w[1].mean(1).numpy(), rtol=1e-5)
    assert view.heatmap["cols"] == ["0·K", "1·K", "2·T", "3·T"]


def test_head_maps_switch_module_and_head():
    future = torch.ones(3, 3).triu(1).bool()
    attn = {m: torch.softmax(torch.randn(1, 2, 3, 3, generator=G).masked_fill(future, float("-inf")), -1)
            for m in ("self_attn.q_proj", "self_attn.v_proj")}
    cache = Cache({key(0, m, "hook_attn"): a for m, a in attn.items()})
    view = HeadMaps.from_frame(head_attention(cache, tokens=["a", "b", "c"]))
    assert view.choices == ["head 0", "head 1", MEAN]
    assert view.options == ["layer 0 · self_attn.q_proj", "layer 0 · self_attn.v_proj"]
    assert view.heatmap["rows"] == ["0 a", "1 b", "2 c"]
    view.set_state({"option": "layer 0 · self_attn.v_proj", "choice": "head 1"})
    np.testing.assert_allclose(decode(view.heatmap), attn["self_attn.v_proj"][0, 1].numpy(), rtol=1e-6)
    view.set_state({"choice": MEAN})
    np.testing.assert_allclose(decode(view.heatmap), attn["self_attn.v_proj"][0].mean(0).numpy(), rtol=1e-6)
    spans = HeadMaps.from_frame(head_attention(cache), spans=["general", "domain", "domain"])
    first = decode(spans.aside)  # head × span of the first module; rows sum to 1
    assert first.shape == (2, 2) and np.allclose(first.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(first[:, 0], attn["self_attn.q_proj"][0, :, :, 0].mean(-1).numpy(), rtol=1e-5)
    spans.set_state({"option": "layer 0 · self_attn.v_proj"})
    on_first_token = attn["self_attn.v_proj"][0, :, :, 0].mean(-1)  # (heads,): the "general" key
    np.testing.assert_allclose(decode(spans.aside)[:, 0], on_first_token.numpy(), rtol=1e-5)


def test_task_load_switch_layer_and_measure():
    cache = Cache({key(la, "mlp"): topk_record(b=2, t=4, e=4, k=2) for la in (0, 1)})
    load = task_load(cache, ["a", "b"])
    view = TaskLoad.from_frame(load)
    assert decode(view.aside).shape == (2, 1) and view.heatmap["rows"] == ["a", "b"]
    view.set_state({"option": "layer 0"})
    want = load[load.layer == 0].pivot(index="group", columns="expert", values="load")
    np.testing.assert_allclose(decode(view.heatmap), want.to_numpy(), rtol=1e-6)
    view.set_state({"choice": GATE})
    want = load[load.layer == 0].pivot(index="group", columns="expert", values="gate")
    np.testing.assert_allclose(decode(view.heatmap), want.to_numpy(), rtol=1e-6)


def test_leakage_map_switches_condition():
    full = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    targets = {"a": torch.tensor([True, False]), "b": torch.tensor([False, True])}
    frame = pd.concat([leakage(full, {"a": torch.zeros(2, 2), "b": torch.tensor([[2.0, 0.0], [s, 0.0]])},
                               targets, condition=c) for c, s in (("plain sum", 3.0), ("tara", 0.0))])
    view = LeakageMap.from_frame(frame)
    assert view.choices == ["plain sum", "tara"] and decode(view.heatmap)[1, 1] > 0
    view.set_state({"choice": "tara"})
    assert decode(view.heatmap)[1, 1] == pytest.approx(0.0) and view.heatmap["choice"] == "tara"


def test_user_mixture_map_switches_layer_and_module():
    w = {"model.layers.0.self_attn.q_proj": torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
         "model.layers.1.self_attn.q_proj": torch.tensor([[0.0, 1.0], [0.0, 1.0]]),
         "model.layers.1.self_attn.v_proj": torch.tensor([[0.5, 0.5], [0.5, 0.5]])}
    view = UserMixtureMap.from_frame(user_mixture(w, ["u", "v"]))
    view.set_state({"option": "layer 1"})
    np.testing.assert_allclose(decode(view.heatmap), [[0.25, 0.75], [0.25, 0.75]])
    view.set_state({"choice": "self_attn.q_proj"})
    np.testing.assert_allclose(decode(view.heatmap), [[0.0, 1.0], [0.0, 1.0]])


def test_rank_reuse_map_switches_layer_and_measure():
    cache = Cache({key(la): topk_record(b=2, t=3, e=4, k=2) for la in (0, 1)})
    mass = rank_block_mass(cache, [("first", 2), ("second", 2)], groups=["first", "second"])
    view = RankReuseMap.from_frame(mass)
    assert np.allclose(decode(view.heatmap).sum(1), 1.0, atol=1e-6)
    view.set_state({"option": "layer 1", "choice": ACTIVE})
    want = mass[mass.layer == 1].pivot(index="group", columns="block", values="active")
    np.testing.assert_allclose(decode(view.heatmap), want.to_numpy(), rtol=1e-6)


def test_reward_mixture_switches_level():
    bars = router_bars(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), ["chat", "qa"], ["chat", "qa"])
    weights = pd.DataFrame({"group": ["chat", "chat", "qa", "qa"], "expert": ["fluency", "facts"] * 2,
                            "weight": [0.7, 0.3, 0.2, 0.8]})
    view = RewardMixture.from_frames(bars, weights)
    np.testing.assert_allclose(decode(view.heatmap), [[0.9, 0.1], [0.2, 0.8]], rtol=1e-6)
    view.set_state({"choice": CAPABILITIES})
    np.testing.assert_allclose(decode(view.heatmap), [[0.7, 0.3], [0.2, 0.8]], rtol=1e-6)
    view.set_state({"selected": ["qa", "facts"]})
    assert view.detail == "capability experts: qa → facts: 0.800"
