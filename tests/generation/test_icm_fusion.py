"""ICMFusion on a tiny model: the fusion weights pick what is decoded, the fused condition by hand,
first-order meta-learning moves the weights and P, and the generator saves and loads."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import tiny_lab
from tests.generation.helpers import EXAMPLES, first_order_maml_gradient, planted_family
from workbench.errors import WorkbenchError
from workbench.generation import ICMFusion, ICMLoRA, flatten

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def fitted():
    torch.set_num_threads(1)
    lab = tiny_lab()
    families = {"left": planted_family(lab, "left", seed=10), "right": planted_family(lab, "right", seed=11)}
    fusion = ICMFusion(lab, proj_dim=4, channels=(4, 8, 8, 4), latent=8)
    fusion.fit(families, EXAMPLES, late=1.0, steps=150, lr=2e-3, batch_size=4, seed=0, progress=False)
    means = {t: torch.stack([flatten(c).x for c in cks]).mean(0) for t, cks in families.items()}
    return lab, fusion, families, means


def _dist(adapter, mean) -> float:
    return float((flatten(adapter).x - mean).pow(2).mean())


def _support(offset: int, n: int = 8) -> list[dict]:
    out = []
    for i in range(n):
        ids = [offset + (i + j) % 20 for j in range(6)]
        out.append({"input_ids": ids, "labels": [-100, -100, *ids[2:]]})
    return out


def test_the_fusion_weights_pick_what_is_decoded(fitted):
    _, fusion, _, means = fitted
    assert fusion.weights.tolist() == [0.5, 0.5]  # uniform before meta-learning
    left, right = fusion.fuse([1, 0], name="l"), fusion.fuse({"right": 1.0}, name="r")
    # with the weights ignored both would be the same adapter, equally far from both families
    assert _dist(left, means["left"]) < 0.5 * _dist(left, means["right"])
    assert _dist(right, means["right"]) < 0.5 * _dist(right, means["left"])
    both = fusion.fuse()
    m = next(iter(both.modules))
    assert not torch.equal(both.modules[m].A, left.modules[m].A)


def test_the_fused_condition_is_the_weighted_projection(fitted):
    _, fusion, *_ = fitted
    P = fusion.vae.proj
    v = fusion.standardize(fusion.conditions)
    with torch.no_grad():
        want = 0.25 * P(v[0]) + 0.75 * P(v[1])
    torch.testing.assert_close(fusion.fused_condition([1, 3]), want)
    assert fusion.projected().shape == (2, 4)


def test_fused_lineage_and_samples(fitted):
    lab, fusion, *_ = fitted
    one = fusion.fuse()
    lin = one.lineage
    assert lin["method"] == "fuse" and lin["generator"]["name"] == "icm_fusion"
    assert lin["condition"]["weights"] == [0.5, 0.5] and lin["condition"]["z"] == "zero"
    assert "reconstruction" in lin["generator"]["reference"]
    json.dumps(lin)
    a, b = fusion.fuse(n=2, seed=3)
    m = next(iter(a.modules))
    assert not torch.equal(a.modules[m].A, b.modules[m].A) and b.lineage["sample"] == 1
    assert one.base_fingerprint == lab.fingerprint
    for bad in ([1.0], [-1, 2], [0, 0], {"nowhere": 1}):
        with pytest.raises(WorkbenchError):
            fusion.fuse(bad)


def test_meta_learning_moves_the_weights_and_the_projection_and_leaves_the_lab_clean(fitted):
    lab, fusion, *_ = fitted
    before_logits = fusion.logits.clone()
    before_p = fusion.vae.proj.weight.detach().clone()
    cvae_before = {k: v.clone() for k, v in fusion.vae.cvae.state_dict().items()}
    support = {"left": _support(5), "right": _support(40)}
    history = fusion.meta_fit(support, steps=2, shots=2, inner_lr=0.5, outer_lr=0.1, progress=False)
    assert list(history.columns) == ["step", "task", "support_loss", "query_loss"] and len(history) == 4
    assert history[["support_loss", "query_loss"]].notna().all().all()
    assert not torch.equal(fusion.logits, before_logits)
    assert not torch.equal(fusion.vae.proj.weight, before_p)
    assert all(torch.equal(v, cvae_before[k]) for k, v in fusion.vae.cvae.state_dict().items())  # frozen
    assert "_icm_fusion_probe" not in lab.adapters and not fusion.vae.proj.weight.requires_grad
    assert fusion.fuse().lineage["condition"]["meta"]["steps"] == 2
    with pytest.raises(WorkbenchError, match="support examples"):
        fusion.meta_fit({"left": _support(5)}, steps=1, shots=2, progress=False)


def test_one_meta_step_is_first_order_maml_then_adam(fitted):
    """Adam's first step moves each parameter by −lr·g/(|g| + ε): by −lr·sign(g) where |g| ≫ ε, with g the
    first-order MAML gradient computed independently (inner step against the support gradient, outer
    gradient at the adapted φ'_t, averaged over the tasks)."""
    _, fusion, *_ = fitted
    support = {"left": _support(5, 4), "right": _support(40, 4)}
    P = fusion.vae.proj
    saved = fusion.logits.clone(), P.weight.detach().clone(), P.bias.detach().clone()
    try:
        fusion.logits = torch.tensor([0.3, -0.2])
        phi0, g = first_order_maml_gradient(fusion, support, shots=2, inner_lr=5.0, seed=7)
        fusion.meta_fit(support, steps=1, shots=2, inner_lr=5.0, outer_lr=1e-3, seed=7, progress=False)
        after = [fusion.logits, fusion.vae.proj.weight.detach(), fusion.vae.proj.bias.detach()]
        for before, now, grad in zip(phi0, after, g, strict=True):
            big = grad.abs() > 1e-6  # Adam's ε = 1e-8: there the step is −lr·sign(g) to 1%
            assert big.any()
            torch.testing.assert_close((now - before)[big], -1e-3 * grad.sign()[big], rtol=0.02, atol=1e-6)
    finally:
        fusion.logits = saved[0]
        with torch.no_grad():
            fusion.vae.proj.weight.copy_(saved[1])
            fusion.vae.proj.bias.copy_(saved[2])


def test_the_task_loss_gradient_reaches_the_weights(fitted):
    _, fusion, *_ = fitted
    w = torch.tensor([0.3, 0.7], requires_grad=True)
    loss = fusion.task_loss(w, _support(5, 2))
    assert loss.item() > 0 and w.grad is not None and w.grad.abs().sum() > 0
    fusion.vae.proj.zero_grad(set_to_none=True)


def test_save_and_load_keeps_the_fusion(fitted, tmp_path):
    lab, fusion, *_ = fitted
    fusion.logits = torch.tensor([0.2, -0.4])
    path = fusion.save(tmp_path / "fusion")
    back = ICMFusion.load(lab, path)
    assert torch.equal(back.logits, fusion.logits) and back.proj_dim == 4
    x, y = fusion.fuse(), back.fuse()
    assert all(torch.equal(x.modules[m].B, y.modules[m].B) for m in x.modules)
    with pytest.raises(WorkbenchError, match="icm_fusion"):
        ICMLoRA.load(lab, path)
