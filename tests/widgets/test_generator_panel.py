"""GeneratorPanel: its traits after a description, generate and evaluate (the jobs run on the worker),
and the generation figures drawn from the frames."""

from __future__ import annotations

import pytest
import torch

from tests.experiments.helpers import text_lab, toy_task
from tests.generation.helpers import planted_family
from widgets import GeneratorPanel, expert_map_figure, fusion_pca_figure, histogram_figure, proximity_bars
from workbench.errors import WorkbenchError
from workbench.generation import HashingEncoder, SGLoRA
from workbench.generation.frames import expert_map, proximity_frame, tensor_histograms

DESCRIPTIONS = {
    "sports": "classify quotes about sports",
    "food": "classify quotes about food",
    "german": "identify german sentences",
}


@pytest.fixture(scope="module")
def fitted():
    torch.set_num_threads(1)
    lab = text_lab()
    families = {t: planted_family(lab, t, seed=i, n=3) for i, t in enumerate(DESCRIPTIONS)}
    gen = SGLoRA(lab, encoder=HashingEncoder(32), k=2, tau=0.2, channels=(2, 4, 2), latent=4)
    gen.fit(families, DESCRIPTIONS, late=1.0, steps=3, batch_size=2, progress=False)
    for t, cks in families.items():
        lab.add_adapter(cks[-1].copy(t))
    task = toy_task("held", n_eval=4)
    task.metric = "loss"
    return lab, gen, families, task


def test_the_panel_shows_proximity_generates_and_evaluates(fitted):
    lab, gen, _, task = fitted
    panel = GeneratorPanel.from_generator(gen, task=task, eval_limit=2, n=2)
    assert panel.experts == list(DESCRIPTIONS) and panel.expert_descriptions == list(DESCRIPTIONS.values())
    assert panel.proximity == {} and panel.task == "held"
    panel.description = "classify quotes about sports and food"
    panel.wait()
    want = proximity_frame(gen, panel.description)
    assert panel.proximity["experts"] == list(DESCRIPTIONS)
    assert panel.proximity["weights"] == pytest.approx(want.weight.tolist(), abs=1e-6)
    assert panel.expert_map["kinds"] == ["expert"] * 3 + ["query"] and panel.status.startswith("nearest")
    made = panel.generate()
    assert [a.name for a in made] == panel.samples == ["sg_panel_0", "sg_panel_1"]
    assert made[0].lineage["condition"]["text"] == panel.description and not panel.busy
    assert not set(panel.samples) & set(lab.adapters)  # generated adapters stay out of the lab
    scores = panel.evaluate()
    kinds = [r["kind"] for r in scores["rows"]]
    assert kinds == ["sample", "sample", "nearest", "uniform", "base"] and scores["metric"] == "loss"
    assert panel.progress == {"done": 5, "total": 5, "label": "done"} and not panel.busy
    nearest = str(gen.proximity(panel.description).idxmax())
    assert scores["rows"][2]["label"] == f"nearest: {nearest}"
    direct = lab.evaluate([nearest], task, limit=2, progress=False).value.iloc[0]
    assert scores["rows"][2]["value"] == pytest.approx(direct)
    assert set(lab.adapters) == set(DESCRIPTIONS)  # the evaluation left the lab as it was
    panel.close()


def test_errors_are_shown_not_raised(fitted):
    _, gen, _, _ = fitted
    panel = GeneratorPanel.from_generator(gen)  # no task
    panel.act("evaluate")
    panel.wait()
    assert panel.status.startswith("error: ") and "task=" in panel.status
    panel.act("generate")  # no description yet
    panel.wait()
    assert "description" in panel.status
    panel.act("dance")
    assert "unknown action" in panel.status
    with pytest.raises(WorkbenchError, match="not in the generator's lab"):
        GeneratorPanel.from_generator(gen, trained="nowhere")
    panel.close()


def test_the_figures_draw_the_frames(fitted):
    _, gen, families, _ = fitted
    text = "classify quotes about sports"
    bars = proximity_bars(proximity_frame(gen, text))
    assert list(bars.data[0].y)[0] == proximity_frame(gen, text).sort_values("cosine").expert.iloc[-1]
    fig = expert_map_figure(expert_map(gen, text))
    assert [d.name for d in fig.data] == ["experts", "new task"]
    made = gen.generate(text, seed=0)
    hist = tensor_histograms(families["sports"][-1], made, bins=4)
    fig = histogram_figure(hist)
    assert [d.name for d in fig.data] == ["original", "generated"] and len(fig.data[0].x) == 4
    import pandas as pd

    frame = pd.DataFrame(
        {
            "space": ["s"] * 3,
            "name": ["a", "b", "fused"],
            "kind": ["task", "task", "fused"],
            "x": [0.0, 1.0, 0.5],
            "y": [0.0, 1.0, 0.5],
            "weight": [0.5, 0.5, 1.0],
        }
    )
    fig = fusion_pca_figure(frame)
    assert len(fig.layout.annotations) == 1 + 2  # the subplot title and an arrow per task
