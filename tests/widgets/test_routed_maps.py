"""The leakage map (TARA) and the user × LoRA map (RecLoRA): they render their frames, nothing else."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from widgets.leakage_map import leakage_map
from widgets.user_mixture_map import user_mixture_map
from workbench.analysis.leakage import leakage
from workbench.analysis.user_mixtures import user_mixture
from workbench.errors import WorkbenchError


def test_leakage_map_draws_one_source_by_target_heatmap_per_condition():
    full = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    targets = {"a": torch.tensor([True, False]), "b": torch.tensor([False, True])}
    frame = pd.concat([leakage(full, {"a": torch.zeros(2, 2), "b": torch.tensor([[2.0, 0.0], [3.0, 0.0]])},
                               targets, condition=c)
                       for c in ("plain_sum", "tara")])
    fig = leakage_map(frame)
    assert len(fig.data) == 2 and [a.text for a in fig.layout.annotations] == ["plain_sum", "tara"]
    z = fig.data[0].z  # rows = sources, columns = targets, in first-seen order
    assert z[0][1] == pytest.approx(0.0) and z[1][0] == pytest.approx(0.0) and z[0][0] > 0
    assert list(fig.data[0].y) == ["a", "b"]
    with pytest.raises(WorkbenchError, match="leakage_map needs"):
        leakage_map(pd.DataFrame({"x": [1]}))


def test_user_mixture_map_averages_modules_or_shows_one_layer():
    w = {"model.layers.0.self_attn.q_proj": torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
         "model.layers.1.self_attn.q_proj": torch.tensor([[0.0, 1.0], [0.0, 1.0]])}
    frame = user_mixture(w, ["u", "v"])
    z = user_mixture_map(frame).data[0].z
    assert z[0][0] == pytest.approx(0.5) and z[1][1] == pytest.approx(1.0)
    assert user_mixture_map(frame, layer=1).data[0].z[0][1] == pytest.approx(1.0)
    with pytest.raises(WorkbenchError, match="no layer 7"):
        user_mixture_map(frame, layer=7)
