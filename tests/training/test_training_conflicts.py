"""Gradient-conflict capture: cosines equal a direct computation, and only reductions are kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import tiny_lab
from tests.training.helpers import two_tasks
from workbench.analysis import conflicts
from workbench.training import MultiTaskTrainer
from workbench.training.sampling import TaskSampler


def test_reductions_match_direct_cosines():
    g = torch.Generator().manual_seed(0)
    grads = torch.randn(3, 50, generator=g, dtype=torch.float64)
    slices = [slice(0, 20), slice(20, 35), slice(35, 50)]
    modules = ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj",
               "model.layers.1.self_attn.q_proj"]
    grams = conflicts.module_grams(grads, slices)
    tasks = ["a", "b", "c"]
    by_module = conflicts.cosine_frame([7], [grams], modules, tasks, by="module")
    layer0 = conflicts.cosine_frame([7], [grams], modules, tasks, by="layer")
    total = conflicts.cosine_frame([7], [grams], modules, tasks, by="total")
    cos = torch.nn.functional.cosine_similarity
    for (i, a), (j, b) in [((0, "a"), (1, "b")), ((1, "b"), (2, "c"))]:
        pair = (by_module.task == a) & (by_module.task_b == b)
        v = by_module[pair].query("layer == 0 and module == 'self_attn.v_proj'")
        assert v.value.item() == pytest.approx(cos(grads[i, 20:35], grads[j, 20:35], dim=0).item())
        v = layer0[(layer0.task == a) & (layer0.task_b == b) & (layer0.layer == 0)]
        assert v.value.item() == pytest.approx(cos(grads[i, :35], grads[j, :35], dim=0).item())
        v = total[(total.task == a) & (total.task_b == b)]
        assert v.value.item() == pytest.approx(cos(grads[i], grads[j], dim=0).item())
    assert set(by_module.columns) == {"step", "layer", "module", "task", "task_b", "value"}
    frac = conflicts.conflict_frame([7], [grams], modules, by="total").value.item()
    direct = np.mean([cos(grads[i], grads[j], dim=0).item() < 0 for i, j in [(0, 1), (0, 2), (1, 2)]])
    assert frac == pytest.approx(direct)
    norms = conflicts.norm_frame([7], [grams], modules, tasks)
    assert norms.value.tolist() == pytest.approx(grads.norm(dim=1).tolist())


def test_captured_cosines_equal_gradients_computed_by_hand():
    """Step 0's capture against per-task gradients of the same batch taken with autograd directly."""
    tasks = two_tasks()
    lab = tiny_lab()
    tr = MultiTaskTrainer(lab, "j", tasks, r=4, steps=1, lr=1e-2, batch_size=6, seed=2, capture_every=1,
                          init="random", progress=False)
    sampler = TaskSampler([12, 12], tr.sampler.p, torch.Generator().manual_seed(2), seed=2)
    draws = sampler.draw(6)
    params = tr.params
    with lab.using("j"):
        for p in params:
            p.requires_grad_(True)
        lab.model.train()
        rows = []
        for t in (0, 1):
            feats = [tr.features[t][i] for tt, i in draws if tt == t]
            loss = tr._task_loss(t, feats)
            rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]))
        for p in params:
            p.requires_grad_(False)
    direct = torch.nn.functional.cosine_similarity(rows[0], rows[1], dim=0).item()
    tr.run()
    total = tr.conflicts.cosines(by="total").query("task == 'left' and task_b == 'right'")
    assert total.value.item() == pytest.approx(direct, abs=1e-5)
    first = tr.modules[0]
    A, B = lab.layers[first].lora_A["j"], lab.layers[first].lora_B["j"]
    n = A.numel() + B.numel()
    by_mod = tr.conflicts.cosines(by="module").iloc[1]  # first module, (left, right)
    assert by_mod.value == pytest.approx(
        torch.nn.functional.cosine_similarity(rows[0][:n], rows[1][:n], dim=0).item(), abs=1e-5)


def test_capture_memory_is_bounded_by_the_reductions():
    lab = tiny_lab()
    tr = MultiTaskTrainer(lab, "j", two_tasks(), r=8, steps=6, lr=1e-2, batch_size=4, capture_every=2,
                          progress=False)
    res = tr.run()
    cap = res.conflicts
    M, T = len(tr.modules), 2
    assert cap.spaces == ["factor", "delta_w"]  # one Gram per module, step and space
    assert cap.steps == [0, 2, 4] and cap.nbytes == 2 * 3 * M * T * T * 8
    assert cap.nbytes < tr.dim  # far less than one gradient (4 bytes a parameter)
    held = [v for v in vars(cap).values() if isinstance(v, torch.Tensor | np.ndarray)]
    held += [x for v in vars(cap).values() if isinstance(v, list) for x in v
             if isinstance(x, torch.Tensor | np.ndarray)]
    assert all(x.size <= M * T * T for x in held)
    cf = cap.conflicts(by="layer")
    assert set(cf.columns) == {"step", "layer", "value"} and cf.value.between(0, 1).all()
    every = MultiTaskTrainer(tiny_lab(), "j", two_tasks(), r=8, steps=3, lr=1e-2, batch_size=4,
                             capture_every=1, progress=False).run()
    assert every.conflicts.steps == [0, 1, 2]
