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


def test_renormalize_straight_through_sign_bias_and_entropy_by_hand():
    import math

    import pytest

    from workbench.errors import WorkbenchError
    from workbench.routing.gates import check_k, entropy, renormalize, sign_bias_update, straight_through

    torch.testing.assert_close(renormalize(torch.tensor([[1.0, 3.0, 0.0]]), total=2.0),
                               torch.tensor([[0.5, 1.5, 0.0]]))
    torch.testing.assert_close(renormalize(torch.tensor([2.0, 6.0])), torch.tensor([0.25, 0.75]))
    soft = torch.tensor([0.2, 0.8], requires_grad=True)
    hard = torch.tensor([0.0, 1.0])
    out = straight_through(hard, soft)
    torch.testing.assert_close(out.detach(), hard)  # the hard value forward
    (out * torch.tensor([3.0, 5.0])).sum().backward()
    assert torch.equal(soft.grad, torch.tensor([3.0, 5.0]))  # the soft gradient backward
    bias = torch.tensor([0.0, 1.0, -1.0, 0.5])
    sign_bias_update(bias, torch.tensor([4, 1, 1, 2]), 0.5)  # mean 2: signs -, +, +, 0
    torch.testing.assert_close(bias, torch.tensor([-0.5, 1.5, -0.5, 0.5]))
    torch.testing.assert_close(entropy(torch.tensor([[0.5, 0.5], [1.0, 0.0]])),
                               torch.tensor([math.log(2), 0.0]))
    assert check_k(1, 3) == 1 and check_k(3, 3) == 3
    for bad in (0, 4, 2.0):
        with pytest.raises(WorkbenchError, match="1 <= k <= 3"):
            check_k(bad, 3)
