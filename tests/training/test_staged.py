"""ScaleZero's staged adapters on the lab: the stage formula, what trains, the switch, the hooks' removal."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_lab
from tests.training.helpers import id_task
from workbench.errors import WorkbenchError
from workbench.training.staged import StagedAdapters, StageSource, train_staged

X = torch.randint(10, 200, (2, 6), generator=torch.Generator().manual_seed(0))


def logits(lab, use=None):
    with torch.no_grad(), lab.using(use):
        return lab.model(input_ids=X).logits


def test_stage_output_is_alpha0_base_plus_scaled_adapters_by_hand():
    lab = tiny_lab()
    base = logits(lab)
    st = StagedAdapters(lab, "sz", stages=3, r=2, seed=1)
    path = st.paths[0]
    layer = lab.layers[path]
    x = torch.randn(3, layer.in_features)
    with torch.no_grad():
        for n in st.names:
            layer.lora_B[n].normal_()  # give both adapters an output
    scales = st.scales[path.replace(".", "/")]
    with torch.no_grad():
        scales[0].theta.fill_(0.7)
        scales[1].theta.fill_(-0.4)
        scales[2].theta.fill_(1.3)
    st.set_stage(2)
    W = layer.base_layer.weight
    want = (1 + 0.2 * torch.tanh(torch.tensor(0.7))) * x @ W.T
    for j, n in enumerate(st.names, start=1):
        a = 1 + 0.2 * torch.tanh(torch.tensor([0.0, -0.4, 1.3][j]))
        want = want + a * layer.scaling[n] * x @ layer.lora_A[n].T @ layer.lora_B[n].T
    with torch.no_grad(), lab.using(st.names):
        got = layer(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    st.set_stage(0)  # stage 0 is the base: no base scale
    with torch.no_grad():
        torch.testing.assert_close(layer.base_layer(x), x @ W.T)
    st.remove()
    assert not lab.adapters and not layer.base_layer._forward_hooks
    torch.testing.assert_close(logits(lab), base)


def test_what_trains_at_each_stage():
    lab = tiny_lab()
    st = StagedAdapters(lab, "sz", stages=4, r=2)
    st.set_stage(2)
    assert all(t.requires_grad for t in st.factors(2)) and not any(t.requires_grad for t in st.factors(1))
    assert not any(t.requires_grad for t in st.factors(3))
    assert all(t.requires_grad for t in st.thetas(0) + st.thetas(1))
    assert not any(t.requires_grad for t in st.thetas(2) + st.thetas(3))  # the current and later scales
    st.freeze()
    assert not any(t.requires_grad for t in st.parameters())
    with pytest.raises(WorkbenchError, match="stage 4 does not exist"):
        st.set_stage(4)
    with pytest.raises(WorkbenchError, match="already has adapters"):
        StagedAdapters(lab, "sz", stages=2)


def test_stage_source_draws_the_current_stage_task_only():
    stage = [1]
    src = StageSource([[{"t": 0, "i": i} for i in range(3)], [{"t": 1, "i": i} for i in range(5)]],
                      lambda: stage[0], seed=0)
    first = src.draw(4)
    assert {t for t, _ in first} == {0} and sorted(f["i"] for _, f in first[:3]) == [0, 1, 2]
    stage[0] = 2
    assert {t for t, _ in src.draw(7)} == {1}


def test_train_staged_keeps_outputs_at_the_switch_and_freezes_the_past():
    lab = tiny_lab()
    ends, snaps = [], {}

    def at_end(stage, loop):
        ends.append((stage, loop.step_index))
        snaps[stage] = (logits(lab, [f"sz_{j}" for j in (1, 2)]),
                        lab.layers[path].lora_B["sz_1"].detach().clone())

    path = None
    st_probe = StagedAdapters(lab, "probe", stages=2, r=2)
    path = st_probe.paths[0]
    st_probe.remove()
    run = train_staged(lab, "sz", [id_task(3, n=8), id_task(7, n=8, seed=1)], r=2, stage_steps=3, lr=2e-2,
                       batch_size=4, on_stage_end=at_end)
    assert run.starts == [0, 3] and ends == [(1, 3), (2, 6)]
    B1_after_stage1 = snaps[1][1]
    torch.testing.assert_close(lab.layers[path].lora_B["sz_1"].detach(), B1_after_stage1)  # frozen in stage 2
    assert lab.layers[path].lora_B["sz_2"].abs().sum() > 0  # adapter 2 trained
    alphas = run.staged.scale_frame()
    assert alphas.value.between(0.8, 1.2).all() and (alphas[alphas.scale == 2].value == 1.0).all()
    assert (alphas[alphas.scale == 1].value != 1.0).any()  # adapter 1's scale trained in stage 2
    run.remove()
    assert not lab.adapters


def test_plain_baseline_runs_the_same_stages_with_one_adapter():
    lab = tiny_lab()
    run = train_staged(lab, "pl", [id_task(3, n=8), id_task(7, n=8)], r=4, stage_steps=2, lr=2e-2,
                       batch_size=4, plain=True)
    assert run.names == ["pl"] and run.starts == [0, 2] and len(run.history) == 4
    assert list(lab.adapters) == ["pl"]
