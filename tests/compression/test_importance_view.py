"""The importance frame matches the prune result, and the heatmap only renders it."""

from __future__ import annotations

import pytest

from tests.conftest import tiny_inputs
from widgets.importance_map import importance_map
from workbench import zoo
from workbench.compression import importance_frame, prune
from workbench.errors import WorkbenchError


def test_frame_has_one_row_per_group_and_the_kept_mask_of_the_map():
    model = zoo.load("tiny-gemma3").model
    p = prune(model, 0.25, method="taylor", batch=tiny_inputs(model, batch=2, length=6))
    frame = importance_frame(p)
    assert len(frame) == 2 * (4 + 128)
    for layer, m in p.map.layers.items():
        part = frame[frame.layer == layer]
        assert sorted(part[(part.kind == "neuron") & part.kept].group) == m.neurons
        assert sorted(part[(part.kind == "query") & part.kept].group) == m.heads
    assert (~frame.kept).sum() == 2 * (1 + 32)
    fig = importance_map(frame)
    heat = [t for t in fig.data if t.type == "heatmap"]
    marks = [t for t in fig.data if t.type == "scatter"]
    assert len(heat) == 2 and heat[0].z.shape == (2, 4) and heat[1].z.shape == (2, 128)
    assert sum(len(t.x) for t in marks) == (~frame.kept).sum()
    with pytest.raises(WorkbenchError, match="importance_map needs"):
        importance_map(frame.drop(columns="kept"))


def test_loram_masks_render_the_zero_bands_of_a_recovered_adapter():
    from widgets.loram_masks import loram_masks
    from workbench import Workbench
    from workbench.compression import recover

    full = zoo.load("tiny-llama")
    p = prune(full.model, 0.5, method="l2")
    a = Workbench(p.model, None).new_adapter("a", r=2, targets="all-linear", init="random", seed=0)
    r = recover(a, p.map)
    mods = ["model.layers.0.self_attn.q_proj", "model.layers.0.mlp.down_proj"]
    fig = loram_masks({m: r.delta(m) for m in mods})
    q, down = fig.data
    m = p.map.layers[0]
    gone_rows = sorted(set(range(64)) - set(m.q_channels.tolist()))
    assert q.z.shape == (64, 64) and (q.z[gone_rows] == 0).all() and (q.z[m.q_channels] > 0).any()
    gone_cols = sorted(set(range(128)) - set(m.neurons))
    assert down.z.shape == (64, 128) and (down.z[:, gone_cols] == 0).all()
    with pytest.raises(WorkbenchError, match="at least one"):
        loram_masks({})
