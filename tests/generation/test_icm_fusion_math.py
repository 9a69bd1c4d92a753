"""ICMFusion's math by hand on a generator fitted for one step (seconds, not the fixture's minutes):
the fusion weights, the projection into the latent, the decode and its de-normalization, the task
loss's gradient (against finite differences) and two meta-learning steps (first-order MAML + Adam).

The fitted state is overwritten with hand values (two tasks, H = 64, d = 2): raw conditions
c_left = 2·e₀, c_right = 4·e₁ with scale 2, so the standardized ones are ±(0.5, −1, 0, …); P has
W[0, 0] = W[0, 1] = 1, W[1, 0] = 2, b = (0.1, −0.1), so P(v_left) = (−0.4, 0.9) and
P(v_right) = (0.6, −1.1); per-tensor stats (mean, std) are (0.1·k, 1) for left and (−0.1·k, 3)
for right.
"""

from __future__ import annotations

import math
import random

import pytest
import torch

from tests.conftest import tiny_lab
from tests.generation.helpers import first_order_maml_gradient, planted_family
from workbench.generation import ICMFusion
from workbench.generation.icm_fusion import PROBE

PROJECTED = torch.tensor([[-0.4, 0.9], [0.6, -1.1]])  # P(v_t), worked out in the module docstring


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def small():
    torch.set_num_threads(1)
    lab = tiny_lab()
    families = {"left": planted_family(lab, "left", seed=10, n=2),
                "right": planted_family(lab, "right", seed=11, n=2)}
    fusion = ICMFusion(lab, proj_dim=2, channels=(2,), latent=2, kernel=1)
    conditions = torch.zeros(2, lab.model.config.hidden_size)  # given as tensors: no task-vector pass
    conditions[0, 0], conditions[1, 1] = 2.0, 4.0
    fusion.fit(families, {"left": conditions[0], "right": conditions[1]}, late=1.0, steps=1, lr=1e-3,
               batch_size=2, seed=0, progress=False)
    fusion.scale = 2.0  # by hand (fit's is the centred conditions' RMS)
    with torch.no_grad():
        fusion.vae.proj.weight.zero_()
        fusion.vae.proj.weight[0, :2] = 1.0
        fusion.vae.proj.weight[1, 0] = 2.0
        fusion.vae.proj.bias.copy_(torch.tensor([0.1, -0.1]))
    k = torch.arange(fusion.layout.n_tensors, dtype=torch.float64)
    fusion.stats = {"left": torch.stack([0.1 * k, torch.full_like(k, 1.0)], 1),
                    "right": torch.stack([-0.1 * k, torch.full_like(k, 3.0)], 1)}
    return lab, fusion


def _example(offset: int) -> dict:
    ids = [offset + j for j in range(6)]
    return {"input_ids": ids, "labels": [-100, -100, *ids[2:]]}


def _loss_with(lab, adapter, example) -> float:
    """The base's token loss on one example with ``adapter`` applied (added, used, removed)."""
    lab.add_adapter(adapter)
    try:
        with lab.using(adapter.name), torch.no_grad():
            return float(lab.model(input_ids=torch.tensor([example["input_ids"]]),
                                   labels=torch.tensor([example["labels"]])).loss)
    finally:
        lab.remove_adapter(adapter.name)


def _decoded_by_hand(fusion, w, z) -> torch.Tensor:
    """dec(z_i, Σ_t w_t P(v_t)) row by row, (n, L), with P(v_t) the hand values."""
    p = torch.as_tensor(w, dtype=torch.float32) @ PROJECTED
    with torch.no_grad():
        return torch.cat([fusion.vae.cvae.decode(z[i:i + 1], p[None])[:, :fusion.layout.length]
                          for i in range(z.shape[0])])


def test_fit_starts_uniform_and_the_weights_are_the_softmax_of_the_logits(small):
    _, fusion = small
    assert torch.equal(fusion.logits, torch.zeros(2)) and fusion.weights.tolist() == [0.5, 0.5]
    saved = fusion.logits
    try:
        fusion.logits = torch.tensor([0.0, math.log(3.0)])
        assert fusion.weights.tolist() == pytest.approx([0.25, 0.75])
        torch.testing.assert_close(fusion._weights(None), torch.tensor([0.25, 0.75]))
    finally:
        fusion.logits = saved
    torch.testing.assert_close(fusion._weights([1, 3]), torch.tensor([0.25, 0.75]))
    torch.testing.assert_close(fusion._weights({"right": 2.0}), torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(fusion._weights({"left": 0.5}), torch.tensor([1.0, 0.0]))  # absent: 0


def test_the_projection_and_the_fused_condition_by_hand(small):
    _, fusion = small
    torch.testing.assert_close(fusion.projected(), PROJECTED)
    torch.testing.assert_close(fusion.fused_condition([1, 3]), torch.tensor([0.35, -0.6]))  # ¼·P₀ + ¾·P₁
    torch.testing.assert_close(fusion.fused_condition(), torch.tensor([0.1, -0.1]))  # uniform


def test_decode_is_the_decoder_at_the_fused_condition_with_the_weighted_stats(small):
    _, fusion = small
    z = torch.tensor([[0.5, -1.0], [2.0, 0.25]])
    x, stats = fusion._decode(torch.tensor([0.25, 0.75]), z)
    torch.testing.assert_close(x, _decoded_by_hand(fusion, [0.25, 0.75], z))
    k = torch.arange(fusion.layout.n_tensors, dtype=torch.float32)
    # mean ¼·0.1k − ¾·0.1k = −0.05k, std ¼·1 + ¾·3 = 2.5
    torch.testing.assert_close(stats, torch.stack([-0.05 * k, torch.full_like(k, 2.5)], 1))


def _factors_by_hand(fusion, x_row: torch.Tensor) -> dict:
    """module -> (A, B): each tensor k of ``x_row`` times 2.5 plus −0.05k, reshaped (weights ¼, ¾)."""
    pieces = torch.split(x_row.double(), list(fusion.layout.lengths))
    out = {}
    for i, (m, (sa, sb)) in enumerate(zip(fusion.layout.modules, fusion.layout.shapes, strict=True)):
        a, b = (pieces[j] * 2.5 - 0.05 * j for j in (2 * i, 2 * i + 1))
        out[m] = (a.float().reshape(sa), b.float().reshape(sb))
    return out


def test_fuse_decodes_z_zero_or_seeded_draws_and_denormalizes_by_the_weighted_stats(small):
    _, fusion = small
    zero = fusion.fuse([1, 3], name="hand")
    want = _factors_by_hand(fusion, _decoded_by_hand(fusion, [0.25, 0.75], torch.zeros(1, 2))[0])
    for m, (a, b) in want.items():
        torch.testing.assert_close(zero.modules[m].A, a)
        torch.testing.assert_close(zero.modules[m].B, b)
    drawn = fusion.fuse([1, 3], n=3, seed=5)  # n ≠ latent: z is (n, latent), not its transpose
    z = torch.randn(3, 2, generator=torch.Generator().manual_seed(5))
    for adapter, row in zip(drawn, _decoded_by_hand(fusion, [0.25, 0.75], z), strict=True):
        for m, (a, b) in _factors_by_hand(fusion, row).items():
            torch.testing.assert_close(adapter.modules[m].A, a)
            torch.testing.assert_close(adapter.modules[m].B, b)


def test_task_loss_is_the_fused_loras_loss_and_its_gradient_matches_finite_differences(small):
    lab, fusion = small
    example = _example(5)
    P = fusion.vae.proj

    def loss_at(w) -> tuple[float, torch.Tensor]:
        w = torch.as_tensor(w, dtype=torch.float32).clone().requires_grad_(True)
        value = fusion.task_loss(w, [example])
        return float(value), w

    P.requires_grad_(True)
    try:
        w0 = [0.3, 0.7]
        lab.add_adapter(fusion.fuse(name=PROBE))  # a stale probe (an interrupted call) is replaced
        loss = fusion.task_loss(torch.tensor(w0, requires_grad=True), [example])
        assert not loss.requires_grad and PROBE not in lab.adapters
        by_hand = _loss_with(lab, fusion.fuse(w0, name="by_hand"), example)
        assert float(loss) == pytest.approx(by_hand, rel=1e-5)
        P.zero_grad(set_to_none=True)
        _, w = loss_at(w0)
        g_w, g_weight, g_bias = w.grad.clone(), P.weight.grad.clone(), P.bias.grad.clone()
        assert g_w.abs().min() > 5e-4 and g_weight.abs().max() > 5e-4 and g_bias.abs().max() > 5e-4
        eps = 0.1
        for i in range(2):  # task_loss takes any w (no normalization): each coordinate alone
            up, down = list(w0), list(w0)
            up[i] += eps
            down[i] -= eps
            fd = (loss_at(up)[0] - loss_at(down)[0]) / (2 * eps)
            assert fd == pytest.approx(float(g_w[i]), rel=0.05)  # float32 losses: ~1% noise at this ε
        for param, grad in ((P.weight, g_weight), (P.bias, g_bias)):
            d = grad / grad.norm()
            base = param.detach().clone()
            with torch.no_grad():
                param.copy_(base + eps * d)
            plus = loss_at(w0)[0]
            with torch.no_grad():
                param.copy_(base - eps * d)
            minus = loss_at(w0)[0]
            with torch.no_grad():
                param.copy_(base)
            assert (plus - minus) / (2 * eps) == pytest.approx(float(grad.norm()), rel=0.02)
    finally:
        P.requires_grad_(False)
        P.zero_grad(set_to_none=True)


def test_two_meta_steps_are_first_order_maml_gradients_fed_to_adam(small):
    """meta_fit(steps=2) against an independent Adam fed the first-order MAML gradient of each step
    (per task: inner step against the support gradient, query gradient at φ'_t; mean over tasks),
    with the same draws: a gradient off by a per-coordinate factor or sign moves Adam's second step.
    Gradients left on P before the call must not leak into the first inner step."""
    lab, fusion = small
    support = {"left": [_example(5 + i) for i in range(4)], "right": [_example(40 + i) for i in range(4)]}
    P = fusion.vae.proj
    saved = fusion.logits.clone(), P.weight.detach().clone(), P.bias.detach().clone()
    cvae_before = {k: v.clone() for k, v in fusion.vae.cvae.state_dict().items()}

    def set_phi(values):
        fusion.logits = values[0].detach().clone()
        with torch.no_grad():
            P.weight.copy_(values[1])
            P.bias.copy_(values[2])

    try:
        start = [torch.tensor([0.3, -0.2]), saved[1], saved[2]]
        ref = [v.clone().requires_grad_(True) for v in start]
        adam = torch.optim.Adam(ref, lr=1e-2)
        rng = random.Random(7)
        for _ in range(2):
            set_phi(ref)
            _, g = first_order_maml_gradient(fusion, support, shots=2, inner_lr=5.0, seed=rng)
            for r, gr in zip(ref, g, strict=True):
                r.grad = gr
            adam.step()
        set_phi(start)
        P.weight.grad, P.bias.grad = torch.ones_like(P.weight), torch.ones_like(P.bias)  # stale: ignored
        history = fusion.meta_fit(support, steps=2, shots=2, inner_lr=5.0, outer_lr=1e-2, seed=7,
                                  progress=False)
        assert len(history) == 4
        for got, want in zip([fusion.logits, P.weight, P.bias], ref, strict=True):
            torch.testing.assert_close(got.detach(), want.detach(), rtol=1e-4, atol=1e-7)
        assert not fusion.logits.requires_grad and not P.weight.requires_grad and P.weight.grad is None
        assert all(torch.equal(v, cvae_before[k]) for k, v in fusion.vae.cvae.state_dict().items())
        assert PROBE not in lab.adapters
    finally:
        set_phi(saved)
