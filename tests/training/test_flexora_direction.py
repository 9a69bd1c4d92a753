"""Flexora's outer step, seen: each gate moves DOWN the validation-loss gradient, by gate_lr × it.

The gate gradient is taken independently here, through a real gate leaf multiplying the layer's rank
activations (a forward hook), on the LoRA as the inner step left it; moving the gates up, or by
another amount, fails. (The planted-teacher selection is not a unit test: see the report of issue 18.)
"""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_lab
from tests.training.helpers import id_task
from workbench.training import MultiTaskTrainer
from workbench.training.layers import flexora_search, layer_paths


def _gate_gradients(lab, name: str, val: list[dict]) -> dict[int, float]:
    """∂L_val/∂α_ℓ at α = 1 through real gate leaves, one per layer."""
    tr = MultiTaskTrainer(lab, "probe", {"v": val}, r=2, steps=1, lr=1e-3, batch_size=len(val),
                          progress=False)  # only for its loss
    gates, handles = {}, []
    for layer, paths in layer_paths(lab, "attention").items():
        gates[layer] = torch.tensor(1.0, requires_grad=True)
        for p in paths:
            hook = lab.layers[p].hook_rank[name]
            handles.append(hook.register_forward_hook(lambda m, i, o, gl=gates[layer]: o * gl))
    try:
        with lab.using(name):
            loss = tr._task_loss(0, val)
            grads = torch.autograd.grad(loss, list(gates.values()))
    finally:
        for h in handles:
            h.remove()
    return {layer: float(g) for layer, g in zip(gates, grads, strict=True)}


@pytest.mark.parametrize("gate_lr", [0.5, 2.0])
def test_flexora_gates_move_down_the_validation_gradient(gate_lr):
    lab = tiny_lab()
    lab.new_adapter("fx", r=4, init="random", seed=3)  # B ≠ 0: the gates have a gradient at once
    val = id_task(5, n=4, seed=1)  # len(val) == batch_size: the validation batch is all of it
    gates = flexora_search(lab, "fx", id_task(5, n=8), val, steps=1, batch_size=4, gate_lr=gate_lr)
    want = _gate_gradients(lab, "fx", val)  # on the LoRA after the inner step (the search keeps it)
    assert any(abs(g) > 1e-4 for g in want.values())
    for row in gates.itertuples():
        assert row.value == pytest.approx(1.0 - gate_lr * want[row.layer], rel=1e-3, abs=1e-6)
