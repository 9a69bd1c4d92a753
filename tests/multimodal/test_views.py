"""Multimodal views, headless: what the engine computes and what the widgets carry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.multimodal.test_slm import tiny_slm
from tests.multimodal.test_vlm import image, tiny_task, tiny_vlm
from widgets import ModalityMap, PromptScaleExplorer, QLadderAttention, ScaleScatter
from workbench.errors import WorkbenchError
from workbench.multimodal.analysis import ladder_attention, modality_map, prompt_scales


def test_modality_map_measures_each_branch_where_its_tokens_are():
    vlm = tiny_vlm()
    routed = vlm.add_mm_lora("mm", r_vision=2, r_language=4, dropout=0.0)
    for r in routed.modules.values():
        r.B["vision"].data.fill_(0.05)  # only the vision branch moves anything
    task = tiny_task()
    run = modality_map(vlm, "mm", task, task.train[0])
    assert len(run.tokens) == len(run.types) and sum(run.types) == vlm.n_visual
    assert run.tokens[run.types.index(1)] == "<image 0>"
    assert set(run.norms.columns) == {"layer", "module", "adapter", "value"}
    by = run.norms.groupby("adapter").value.sum()
    assert by["vision"] > 0 and by["language"] == 0
    view = ModalityMap.from_run(run, title="tiny")
    norms = view.layer_norms()
    assert norms.shape == (2, 2) and view.norms["branches"] == ["language", "vision"]
    assert (norms[:, 1] > 0).all() and (norms[:, 0] == 0).all()
    assert isinstance(view.norms["values"], bytes)
    with pytest.raises(WorkbenchError, match="mask-routed"):
        modality_map(vlm, "nope", task, task.train[0])


def test_qladder_attention_view():
    vlm = tiny_vlm(ladder_queries=3)
    maps = ladder_attention(vlm, image(0))
    assert [m.shape for m in maps] == [(3, 16, 16), (3, 8, 8), (3, 4, 4)]
    assert np.allclose([m.sum((1, 2)) for m in maps], 1.0, atol=1e-5)  # each query's weights sum to 1
    view = QLadderAttention.from_arrays(image(0), maps)
    assert view.stages[0] == "rung 0 · 16×16" and view.n_queries == 3
    np.testing.assert_allclose(view.shown(), maps[0].mean(0), rtol=1e-6)
    view.stage, view.query = 2, 1
    np.testing.assert_allclose(view.shown(), maps[2][1], rtol=1e-6)
    with pytest.raises(Exception, match="stage"):
        view.stage = 5
    with pytest.raises(WorkbenchError, match="no QLadder"):
        ladder_attention(tiny_vlm(), image(0))


def test_prompt_scale_explorer_moves_the_edited_prompt():
    slm = tiny_slm()
    slm.add_prompt_aware("wav", r=2, alpha=4.0)
    prompts = {"digits": ["Which digit is spoken?", "Say the digit."],
               "voice": ["Who is speaking?", "Name the voice."]}
    scales = prompt_scales(slm, "wav", prompts)
    assert list(scales.frame.task) == ["digits", "digits", "voice", "voice"]
    assert scales.sigma.shape == (4, 64) and (scales.sigma >= 0).all() and (scales.sigma <= 3).all()
    np.testing.assert_allclose(scales.project(scales.sigma), scales.frame[["x", "y"]].to_numpy(), atol=1e-5)
    assert 0.0 <= scales.task_share() <= 1.0
    view = ScaleScatter.from_scales(scales)
    assert view.points["tasks"] == list(scales.frame.task)
    explorer = PromptScaleExplorer.from_model(slm, "wav", prompts)
    first = dict(explorer.view.highlight)
    assert first["x"] == pytest.approx(float(scales.frame.x[0]), abs=1e-4)  # starts on the first prompt
    explorer.prompt.value = "Who is speaking?"
    moved = explorer.view.highlight
    assert (moved["x"], moved["y"]) != (first["x"], first["y"])
    assert moved["x"] == pytest.approx(float(scales.frame.x[2]), abs=1e-4)
    assert "mean σ" in explorer.status.value
    torch.manual_seed(0)  # nothing above touched the global generator's use in later tests

