"""Gradient conflicts in ΔW space: the tangent projection of ∂L/∂W, independent of the A/B split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import tiny_lab
from tests.training.helpers import two_tasks
from workbench.analysis import conflicts
from workbench.analysis.delta_space import tangent_dense, tangent_gram
from workbench.errors import WorkbenchError
from workbench.training import MultiTaskTrainer
from workbench.training.capture import ConflictCapture
from workbench.training.lorapro import adjusted_gradients

R, IN, OUT, T = 3, 7, 5, 4


def _case(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(R, IN, generator=g, dtype=torch.float64)
    B = torch.randn(OUT, R, generator=g, dtype=torch.float64)
    G = torch.randn(T, OUT, IN, generator=g, dtype=torch.float64)  # one full gradient per task
    return A, B, G


def _factor_grads(A, B, s, G):
    return s * B.T @ G, s * G @ A.T  # (T, r, in), (T, out, r): what autograd gives the factors


def _cos(gram: torch.Tensor) -> np.ndarray:
    return conflicts.cosines(np.asarray(gram))


@pytest.mark.parametrize("seed", range(3))
def test_tangent_gram_is_the_gram_of_the_projected_full_gradients(seed):
    A, B, G = _case(seed)
    s = 1.5
    G_A, G_B = _factor_grads(A, B, s, G)
    P_B = B @ torch.linalg.inv(B.T @ B) @ B.T
    P_A = A.T @ torch.linalg.inv(A @ A.T) @ A
    dense = P_B @ G + (torch.eye(OUT, dtype=G.dtype) - P_B) @ G @ P_A  # (T, out, in)
    torch.testing.assert_close(tangent_dense(A, B, s, G_A, G_B), dense)
    flat = dense.reshape(T, -1)
    torch.testing.assert_close(tangent_gram(A, B, s, G_A, G_B), flat @ flat.T)


@pytest.mark.parametrize("seed", range(3))
def test_delta_w_cosines_do_not_depend_on_the_split_but_factor_cosines_do(seed):
    A, B, G = _case(seed)
    s = 2.0
    g = torch.Generator().manual_seed(100 + seed)
    M = torch.randn(R, R, generator=g, dtype=torch.float64) + 2 * torch.eye(R, dtype=torch.float64)
    A2, B2 = torch.linalg.inv(M) @ A, B @ M  # the same ΔW = s·B·A
    torch.testing.assert_close(B2 @ A2, B @ A)
    G_A, G_B = _factor_grads(A, B, s, G)
    G_A2, G_B2 = _factor_grads(A2, B2, s, G)
    torch.testing.assert_close(_cos(tangent_gram(A2, B2, s, G_A2, G_B2)),
                               _cos(tangent_gram(A, B, s, G_A, G_B)), atol=1e-9, rtol=1e-9)

    def factor(ga, gb):
        f = torch.cat([ga.reshape(T, -1), gb.reshape(T, -1)], dim=1)
        return _cos(f @ f.T)

    def first_order(a, b, ga, gb):  # s(B g_A + g_B A): the naive map, invariant for orthogonal M only
        f = (s * (b @ ga + gb @ a)).reshape(T, -1)
        return _cos(f @ f.T)

    assert np.abs(factor(G_A2, G_B2) - factor(G_A, G_B)).max() > 1e-2
    assert np.abs(first_order(A2, B2, G_A2, G_B2) - first_order(A, B, G_A, G_B)).max() > 1e-2


def test_at_b_zero_the_projection_is_the_row_space_part():
    A, _, G = _case(3)
    B = torch.zeros(OUT, R, dtype=torch.float64)
    G_A, G_B = _factor_grads(A, B, 1.0, G)
    P_A = A.T @ torch.linalg.inv(A @ A.T) @ A
    torch.testing.assert_close(tangent_dense(A, B, 1.0, G_A, G_B), G @ P_A)


def test_capture_records_factor_delta_w_and_lorapro_adjusted_spaces():
    """ConflictCapture.record on known gradients: each space's Gram equals a direct computation."""
    s = 2.0
    cases = [_case(4), _case(5)]
    pairs = [(A, B, s) for A, B, _ in cases]
    parts, slices, k = [], [], 0
    for A, B, G in cases:
        G_A, G_B = _factor_grads(A, B, s, G)
        parts.append(torch.cat([G_A.reshape(T, -1), G_B.reshape(T, -1)], dim=1))
        slices.append(slice(k, k + parts[-1].shape[1]))
        k += parts[-1].shape[1]
    grads = torch.cat(parts, dim=1)  # (T, D): A then B per module, as the trainer flattens them
    modules = ["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"]
    tasks = list("abcd")
    cap = ConflictCapture(modules, tasks, slices, pairs=pairs, optimizer="lorapro")
    assert cap.spaces == ["factor", "delta_w", "adjusted"]
    cap.record(0, grads)
    for m, (A, B, G) in enumerate(cases):
        G_A, G_B = _factor_grads(A, B, s, G)
        np.testing.assert_allclose(cap.by_space["delta_w"][0][m], tangent_gram(A, B, s, G_A, G_B).numpy())
        adj = torch.stack([torch.cat([x.reshape(-1) for x in adjusted_gradients(A, B, s, G_A[t], G_B[t])])
                           for t in range(T)])
        np.testing.assert_allclose(cap.by_space["adjusted"][0][m], (adj @ adj.T).numpy(), rtol=1e-9)
        np.testing.assert_allclose(cap.grams[0][m], (parts[m] @ parts[m].T).numpy(), rtol=1e-9)
    both = cap.cosines(by="total", space="all")
    assert set(both.space) == {"factor", "delta_w", "adjusted"}
    one = cap.cosines(by="total", space="delta_w")
    assert "space" not in one.columns and len(one) == T * T
    assert not np.allclose(both[both.space == "factor"].value.to_numpy(), one.value.to_numpy())
    assert cap.nbytes == 3 * 2 * T * T * 8


def test_trainer_captures_delta_w_space_and_routers_their_parameters():
    lab = tiny_lab()
    tr = MultiTaskTrainer(lab, "j", two_tasks(), r=4, steps=2, lr=1e-2, batch_size=4, capture_every=1,
                          progress=False)
    tr.run()
    cap = tr.conflicts
    assert cap.spaces == ["factor", "delta_w"] and cap.steps == [0, 1]
    cos = cap.cosines(by="layer", space="all")
    assert set(cos.space) == {"factor", "delta_w"} and cos.value.dropna().between(-1 - 1e-9, 1 + 1e-9).all()
    with pytest.raises(WorkbenchError, match="adjustment"):
        cap.conflicts(space="adjusted")
    lab.add_router("mix", "mixlora", experts=2, k=1, r=2)
    rt = MultiTaskTrainer(lab, "mix", two_tasks(), steps=1, lr=1e-2, batch_size=4, capture_every=1,
                          progress=False)
    rt.run()
    assert rt.conflicts.spaces == ["factor"] and len(rt.conflicts.cosines(by="total")) == 4
    with pytest.raises(WorkbenchError, match="router"):
        rt.conflicts.cosines(space="delta_w")
