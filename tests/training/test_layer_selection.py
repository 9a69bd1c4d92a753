"""Flexora's later steps and selection, LayRA's layer choice: what defines them, seen from outside.

The first-step direction is tests/training/test_flexora_direction.py; here the gate stays folded into
the layer's scale for the next steps (the second update is taken at the gates the first one left), and
the selection keeps the largest last gates.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from tests.conftest import tiny_lab
from tests.training.helpers import id_task
from workbench.training import MultiTaskTrainer
from workbench.training.layers import flexora_search, flexora_select, layer_paths, layra_targets


def gate_gradients_at(lab, name: str, val: list[dict], at: dict[int, float]) -> dict[int, float]:
    """∂L_val/∂α_ℓ at α = ``at`` through real gate leaves multiplying each layer's rank activations."""
    tr = MultiTaskTrainer(lab, "probe", {"v": val}, r=2, steps=1, lr=1e-3, batch_size=len(val),
                          progress=False)
    gates, handles = {}, []
    for layer, paths in layer_paths(lab, "attention").items():
        gates[layer] = torch.tensor(float(at[layer]), requires_grad=True)
        for p in paths:
            hook = lab.layers[p].hook_rank[name]
            handles.append(hook.register_forward_hook(lambda m, i, o, gl=gates[layer]: o * gl))
    try:
        with lab.using(name):
            grads = torch.autograd.grad(tr._task_loss(0, val), list(gates.values()))
    finally:
        for h in handles:
            h.remove()
    lab.remove_adapter("probe")
    return {layer: float(g) for layer, g in zip(gates, grads, strict=True)}


def test_the_second_gate_step_is_taken_at_the_gates_the_first_left():
    lab = tiny_lab()
    lab.new_adapter("fx", r=4, init="random", seed=3)
    val = id_task(5, n=4, seed=1)
    gate_lr = 40.0  # large: the first step moves the gates well away from 1
    gates = flexora_search(lab, "fx", id_task(5, n=8), val, steps=2, batch_size=4, gate_lr=gate_lr)
    first = gates[gates.step == 0].set_index("layer")["value"]
    second = gates[gates.step == 1].set_index("layer")["value"]
    assert (abs(first - 1.0) > 1e-3).all()
    want = gate_gradients_at(lab, "fx", val, first.to_dict())  # on the LoRA the second inner step left
    for layer, g in want.items():
        assert second[layer] == pytest.approx(first[layer] - gate_lr * g, rel=1e-3, abs=1e-6)
    fresh = tiny_lab().new_adapter("fx", r=4, init="random", seed=3)  # the same adapter, untrained
    for path, f in fresh.modules.items():  # the search trained the LoRA (the inner step) as it went
        assert not torch.equal(lab.layers[path].lora_B["fx"].detach(), f.B)
    scales = {p: lab.layers[p].scaling["fx"] for p in lab.adapters["fx"].modules}
    assert len(set(scales.values())) == 1  # the per-layer scales are back to the adapter's own


def test_flexora_select_keeps_the_largest_last_gates_in_layer_order():
    gates = pd.DataFrame({"step": [0] * 4 + [1] * 4, "layer": [0, 1, 2, 3] * 2,
                          "value": [5.0, 5.0, 0.0, 0.0, 0.9, 1.2, 0.7, 1.1]})
    assert flexora_select(gates, 1) == [1]
    assert flexora_select(gates, 2) == [1, 3]  # by value 1.2, 1.1; returned in layer order
    assert flexora_select(gates, 3) == [0, 1, 3]


def test_layra_targets_are_exactly_the_first_and_last_layers():
    lab = tiny_lab()  # 2 layers
    layers = layer_paths(lab, "attention")
    assert layra_targets(lab, first_k=0, last_k=1) == layers[1]
    assert layra_targets(lab, first_k=1, last_k=0) == layers[0]
    assert layra_targets(lab, first_k=1, last_k=1) == layers[0] + layers[1]
    for bad in [(-1, 1), (0, 0), (1, -1)]:
        with pytest.raises(Exception, match="LayRA needs"):
            layra_targets(lab, *bad)
