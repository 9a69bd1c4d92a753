"""topk_dense: the one top-k-to-dense gate every top-k router uses."""

from __future__ import annotations

import torch

from workbench.routing.gates import topk_dense


def test_topk_dense_keeps_the_top_values_or_what_weigh_makes_of_them():
    v = torch.tensor([[0.1, 0.7, -0.2, 0.4], [3.0, 1.0, 2.0, 0.0]])
    idx, dense = topk_dense(v, 2)
    assert idx.tolist() == [[1, 3], [0, 2]]
    assert torch.equal(dense, torch.tensor([[0.0, 0.7, 0.0, 0.4], [3.0, 0.0, 2.0, 0.0]]))
    _, mask = topk_dense(v, 2, torch.ones_like)
    assert torch.equal(mask, (dense != 0).float())
    _, soft = topk_dense(v, 2, lambda top: top.softmax(-1))
    assert torch.equal(soft.gather(-1, idx), v.topk(2, dim=-1).values.softmax(-1))
    assert torch.allclose(soft.sum(-1), torch.ones(2)) and (soft[mask == 0] == 0).all()


def test_topk_dense_passes_gradient_to_the_selected_entries_only():
    v = torch.randn(3, 5, generator=torch.Generator().manual_seed(0), requires_grad=True)
    idx, dense = topk_dense(v, 2, lambda top: top.softmax(-1))
    (dense * torch.arange(5.0)).sum().backward()
    off = torch.ones_like(v, dtype=torch.bool).scatter(-1, idx, False)
    assert (v.grad[off] == 0).all() and (v.grad[~off] != 0).any()
