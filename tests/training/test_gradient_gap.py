"""GradientGap: the full gradient G from the layer hooks, the gaps of LoRA's and LoRA-Pro's g̃ to it."""

from __future__ import annotations

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from tests.conftest import tiny_lab
from workbench.errors import WorkbenchError
from workbench.training import fit
from workbench.training.gradient_gap import GradientGap, relative_gap

FEATURES = [{"input_ids": [1, 2, 3, 4, 5, 6, 7], "labels": [-100, -100, 3, 4, 5, 6, 7], "task": 0},
            {"input_ids": [3, 9, 2, 8, 5], "labels": [-100, 9, 2, 8, 5], "task": 0}] * 2


def test_relative_gap_by_hand():
    G = torch.tensor([[3.0, 0.0], [0.0, 4.0]])  # ‖G‖ = 5
    assert relative_gap(2 * G, G) == pytest.approx((1.0, 0.0))  # ‖2G − G‖/‖G‖ = 1, same direction
    orth = torch.tensor([[0.0, 5.0], [0.0, 0.0]])  # ⟨orth, G⟩ = 0, ‖orth‖ = 5
    assert relative_gap(orth, G) == pytest.approx((2**0.5, 1.0))
    assert relative_gap(G, G) == pytest.approx((0.0, 0.0))


@pytest.mark.parametrize("optimizer", ["adamw", "lorapro"])
def test_probe_builds_the_full_gradient_and_lorapro_is_never_farther(optimizer):
    lab = tiny_lab()
    adapter = lab.new_adapter("a", r=2, targets="attention", init="random", seed=1)  # B ≠ 0
    layers = {p: layer for p, layer in lab.layers.items() if "a" in layer.names}
    pairs = [(layer.lora_A["a"], layer.lora_B["a"], layer.scaling["a"]) for layer in layers.values()]
    seen = []

    def grads(opt, args, kwargs):  # registered after the probe's: runs after it, before the step
        seen.append({p: (layer.lora_A["a"].detach().clone(), layer.lora_B["a"].detach().clone(),
                         layer.lora_A["a"].grad.clone(), layer.lora_B["a"].grad.clone(), dict(gap.last))
                     for p, layer in layers.items()})

    with GradientGap(lab, "a") as gap:
        handle = register_optimizer_step_pre_hook(grads)
        try:
            fit(lab, [p for A, B, _ in pairs for p in (A, B)], FEATURES, use="a", label="a", steps=3, lr=1e-2,
                batch_size=4, seed=0, progress=False, optimizer=optimizer, pairs=pairs)
        finally:
            handle.remove()
    frame = gap.frame()
    assert len(frame) == 3 * len(adapter.modules) * 2 and set(frame.kind) == {"lora", "lorapro"}
    # the hooks' G is ∂L/∂W: the LoRA factor gradients are exactly s·BᵀG and s·G·Aᵀ of it
    for step in seen:
        for path, (A, B, gA, gB, last) in step.items():
            s, G = layers[path].scaling["a"], last[path].double()
            assert not torch.equal(G, torch.zeros_like(G))
            torch.testing.assert_close(gA.double(), s * B.double().T @ G, rtol=1e-4, atol=1e-7)
            torch.testing.assert_close(gB.double(), s * G @ A.double().T, rtol=1e-4, atol=1e-7)
    # the lorapro kind is the projection P_B G + (I − P_B) G P_A of G, by hand; the lora kind s(B G_A + G_B A)
    for step, record in enumerate(seen):
        for path, (A, B, gA, gB, last) in record.items():
            G, A, B = last[path].double(), A.double(), B.double()
            P_B = B @ torch.linalg.pinv(B.T @ B) @ B.T
            P_A = A.T @ torch.linalg.pinv(A @ A.T) @ A
            target = P_B @ G + (torch.eye(len(P_B), dtype=G.dtype) - P_B) @ G @ P_A
            s = layers[path].scaling["a"]
            vanilla = s * (B @ gA.double() + gB.double() @ A)
            row = frame[(frame.step == step) & (frame.module == path)].set_index("kind")["gap"]
            assert row["lorapro"] == pytest.approx(float((target - G).norm() / G.norm()), rel=1e-5)
            assert row["lora"] == pytest.approx(float((vanilla - G).norm() / G.norm()), rel=1e-5)
    wide = frame.pivot_table(index=["step", "module"], columns="kind", values="gap")
    assert (wide["lorapro"] <= wide["lora"] + 1e-9).all()  # LoRA-Pro's g̃ is the closest one to G
    assert gap.per_step().groupby("kind").size().to_dict() == {"lora": 3, "lorapro": 3}


def test_probe_refuses_dropout_and_unknown_adapters():
    lab = tiny_lab()
    with pytest.raises(WorkbenchError, match="no layer holds adapter"):
        GradientGap(lab, "nope")
    lab.new_adapter("a", r=2, targets="attention", init="random", seed=1)
    pairs = [(layer.lora_A["a"], layer.lora_B["a"], layer.scaling["a"])
             for layer in lab.layers.values() if "a" in layer.names]
    for layer in lab.layers.values():
        if "a" in layer.names:
            layer.dropout["a"] = 0.1
    with GradientGap(lab, "a"), pytest.raises(WorkbenchError, match="dropout"):
        fit(lab, [p for A, B, _ in pairs for p in (A, B)], FEATURES, use="a", label="a", steps=1, lr=1e-2,
            batch_size=4, seed=0, progress=False)
