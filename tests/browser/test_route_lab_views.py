"""The eight route-lab mechanism views in a real JupyterLab: each renders, answers one gesture, and the
kernel reads the new selection back.

One small notebook (written through the contents API): SMoRA, LoRAMoE, ALoRA and MixLoRA run on the tiny
random Llama (SMoRA's bias traced over a few training forwards); the TARA, RecLoRA, MoRA and DMoERM views
get frames computed from small tensors by their analysis functions. No SmolLM2, no training step.
Screenshots: ``route_views_*.png``.
"""

from __future__ import annotations

import ast
import json
import urllib.request

import pytest

from tests.browser.helpers import rerun_cell, run_notebook

pytestmark = pytest.mark.browser

NOTEBOOK = "route_views.ipynb"
SETUP = """\
import pandas as pd
import torch
from workbench import Workbench, zoo
from workbench.hooks import Cache
from workbench.routing import RoutingRecord
from widgets import (HeadMaps, LeakageMap, RankReuseMap, RewardMixture, SMoRAGates, TaskLoad, TypeImportance,
                     UserMixtureMap)
from workbench.analysis.bias_trace import bias_trajectory, gate_values, trace_routes
from workbench.analysis.head_attention import head_attention
from workbench.analysis.leakage import leakage
from workbench.analysis.rank_reuse import rank_block_mass
from workbench.analysis.reward_mixture import capability_weights, router_bars
from workbench.analysis.task_load import task_load
from workbench.analysis.type_importance import type_importance
from workbench.analysis.user_mixtures import user_mixture

torch.manual_seed(0)
tiny = zoo.load("tiny-llama")
lab = Workbench(tiny.model, tiny.tokenizer, name="tiny-llama", fingerprint=tiny.fingerprint)
ids = torch.randint(0, lab.model.config.vocab_size, (4, 8), generator=torch.Generator().manual_seed(0))
mask = torch.ones_like(ids)
mask[-1, -3:] = 0
batch = {"input_ids": ids, "attention_mask": mask}
tasks = ["arithmetic", "topic", "arithmetic", "topic"]
"""
CELLS = [
    SETUP,
    """\
lab.add_router("smora", "smora", r=8, k=2, bias_u=0.01, init="random", targets="attention")
with trace_routes(lab.model) as trace, lab.session("smora", train=True):
    for _ in range(12):
        lab.model(**batch)  # training forwards move the balancing bias (no optimizer step)
with lab.using("smora"):
    _, cache = lab.run(batch, record="*.routes.smora.hook_route")
smora_view = SMoRAGates.from_frames(gate_values(cache, mask=mask), bias_trajectory(trace))
smora_view""",
    """\
lab.add_router("loramoe", "loramoe", experts=4, r=2, init="random")
with lab.using("loramoe"):
    _, cache = lab.run(batch, record="*.routes.loramoe.hook_route")
types = ["knowledge", "task", "knowledge", "task"]
loramoe_view = TypeImportance.from_frame(type_importance(cache, types, mask=mask,
                                                         expert_groups={"knowledge": [0, 1], "task": [2, 3]}))
loramoe_view""",
    """\
lab.add_router("alora", "alora", r=4, heads=2, init="random", targets="attention")
with lab.using("alora"):
    _, cache = lab.run(batch, record="*.routes.alora.hook_attn")
alora_view = HeadMaps.from_frame(head_attention(cache, row=0, tokens=[f"t{i}" for i in range(8)], mask=mask))
alora_view""",
    """\
lab.add_router("mixlora", "mixlora", experts=4, k=2, r=2, init="random", router_init_range=1.0)
with lab.using("mixlora"):
    _, cache = lab.run(batch, record="*.routes.mixlora.hook_route")
mixlora_view = TaskLoad.from_frame(task_load(cache, tasks, mask=mask))
mixlora_view""",
    """\
g = torch.Generator().manual_seed(1)
full = torch.randn(6, 10, generator=g)
targets = {"alice": torch.tensor([1, 1, 1, 0, 0, 0]).bool(), "bob": torch.tensor([0, 0, 0, 1, 1, 1]).bool()}
def without(owner, spill):  # logits with one adapter out: its own tokens change, the other's by `spill`
    other = full.clone()
    other[targets[owner]] += torch.randn(3, 10, generator=g)
    other[~targets[owner]] += spill * torch.randn(3, 10, generator=g)
    return other
tara_view = LeakageMap.from_frame(pd.concat([
    leakage(full, {n: without(n, 1.0) for n in targets}, targets, condition="plain sum"),
    leakage(full, {n: without(n, 0.1) for n in targets}, targets, condition="tara")]))
tara_view""",
    """\
weights = {f"model.layers.{i}.self_attn.{m}": torch.softmax(3 * torch.randn(3, 4, generator=g), -1)
           for i in range(2) for m in ("q_proj", "v_proj")}
reclora_view = UserMixtureMap.from_frame(user_mixture(weights, ["user A", "user B", "user C"]))
reclora_view""",
    """\
def record(layer):
    w = torch.softmax(2 * torch.randn(4, 8, 6, generator=g), -1)
    top = w.topk(2, -1)
    return RoutingRecord(w, torch.zeros_like(w).scatter(-1, top.indices, top.values), top.indices)
blocks = [("arithmetic", 2), ("topic", 2), ("language", 2)]
mora_cache = Cache({f"model.layers.{i}.self_attn.q_proj.routes.mora.hook_route": record(i) for i in range(2)})
mora_view = RankReuseMap.from_frame(rank_block_mass(mora_cache, blocks, groups=tasks, mask=mask))
mora_view""",
    """\
groups = ["chat", "chat", "qa", "qa", "roleplay", "roleplay"]
bars = router_bars(torch.softmax(2 * torch.randn(6, 3, generator=g), -1), groups, ["chat", "qa", "roleplay"])
inner = torch.nn.Linear(12, 1)
caps = capability_weights(lambda f: inner(f).squeeze(-1), torch.randn(6, 12, generator=g),
                          ["fluency", "facts", "safety"], groups)
dmoerm_view = RewardMixture.from_frames(bars, caps)
dmoerm_view""",
    "views = [smora_view, loramoe_view, alora_view, mixlora_view, tara_view, reclora_view, mora_view, "
    "dmoerm_view]\n[(v.choice, v.option) for v in views]  # read back",
]

# (screenshot name, gesture: ("button", text) or ("select", option), what the new map's title starts with)
GESTURES = [
    ("smora", ("select", "layer 1"), "layer 1: balancing bias"),
    ("loramoe", ("button", "per expert"), "all layers: mean routing weight"),
    ("alora", ("button", "head 1"), "layer 0 · self_attn.q_proj, head 1"),
    ("mixlora", ("select", "layer 1"), "layer 1: token load"),
    ("tara", ("button", "tara"), "tara: KL"),
    ("reclora", ("select", "layer 1"), "layer 1, all modules"),
    ("mora", ("button", "selected share"), "all layers: selected share"),
    ("dmoerm", ("button", "capability experts"), "inner MLP"),
]
EXPECTED = [("bias over steps", "layer 1"), ("per expert", "all layers"),
            ("head 1", "layer 0 · self_attn.q_proj"), ("token load", "layer 1"), ("tara", ""),
            ("all modules", "layer 1"), ("selected share", "all layers"), ("capability experts", "")]


def put_notebook(url: str, path: str, cells: list[str]) -> None:
    """Write a notebook of code ``cells`` into the lab's directory (the test lab has no token)."""
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {
        "name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}},
        "cells": [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "source": src, "outputs": [],
                   "execution_count": None} for i, src in enumerate(cells)]}
    body = json.dumps({"type": "notebook", "format": "json", "content": nb}).encode()
    request = urllib.request.Request(f"{url}/api/contents/{path}", data=body, method="PUT",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as r:
        assert r.status in (200, 201)


def test_route_views_render_answer_a_gesture_and_reach_the_kernel(lab_server, page, screenshots):
    page.set_default_timeout(120_000)
    page.set_viewport_size({"width": 1400, "height": 1000})
    put_notebook(lab_server, f"tutorials/{NOTEBOOK}", CELLS)
    run_notebook(page, lab_server, NOTEBOOK, screenshots)
    views = page.locator(".lw-chooser")
    assert views.count() == len(GESTURES)
    for i, (name, (kind, target), title) in enumerate(GESTURES):
        view = views.nth(i)
        view.scroll_into_view_if_needed()
        assert view.locator(".lw-main .lw-cell").count() > 0, name
        if kind == "select":
            view.locator("select.lw-option").select_option(target)
        else:
            view.get_by_role("button", name=target, exact=True).click()
        # Python answers with the new map (not dimmed, its title made in Python for the new selection)
        page.wait_for_function(
            "([i, title]) => { const t = document.querySelectorAll('.lw-chooser')[i]"
            ".querySelector('.lw-main:not(.lw-stale) .lw-title');"
            " return t && t.textContent.startsWith(title); }",
            arg=[i, title])
        view.screenshot(path=str(screenshots / f"route_views_{name}.png"))
    assert ast.literal_eval(rerun_cell(page, "views = [")) == EXPECTED  # the kernel sees each gesture
    page.screenshot(path=str(screenshots / "route_views_page.png"))
