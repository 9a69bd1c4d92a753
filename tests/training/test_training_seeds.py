"""Training-side seed methods, each on its defining property (tiny models, real autograd)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.conftest import tiny_inputs, tiny_lab
from tests.training.helpers import id_task, two_tasks
from workbench.adapters import SCALINGS
from workbench.training import OPTIMIZERS, MultiTaskTrainer, train_multitask
from workbench.training.layers import flexora_search, flexora_select, layra_targets
from workbench.training.lorapro import adjusted_gradients, equivalent_gradient, solve_sylvester
from workbench.training.nola import basis
from workbench.training.pissa import base_weight, pissa_finish, pissa_start
from workbench.training.scalezero import CurriculumController, CurriculumLoRALinear


def test_rslora_keeps_the_update_scale_stable_across_ranks():
    """s = α/√r: with A, B entries of fixed size, ‖s·B·A x‖ stays flat in r (standard: shrinks as 1/√r)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 256, generator=g)
    norms = {"standard": [], "rslora": []}
    for r in (4, 64, 1024):
        A, B = torch.randn(r, 256, generator=g) / 16, torch.randn(256, r, generator=g) / 16
        for rule in norms:
            norms[rule].append((SCALINGS.get(rule)(8.0, r) * x @ A.T @ B.T).norm().item())
    assert SCALINGS.get("rslora")(8.0, 16) == 2.0
    assert max(norms["rslora"]) / min(norms["rslora"]) < 1.3
    assert norms["standard"][0] / norms["standard"][-1] > 10


def test_loraplus_moves_b_ratio_times_faster_than_a():
    lab = tiny_lab()
    tr = MultiTaskTrainer(lab, "p", two_tasks(), r=4, steps=1, lr=1e-3, batch_size=4, warmup=0.0,
                          init="random", optimizer="loraplus", optimizer_options={"ratio": 8.0},
                          progress=False)
    before = {m: (f.A.detach().clone(), f.B.detach().clone()) for m, f in tr.adapter.modules.items()}
    tr.run()
    for m, f in tr.adapter.modules.items():
        dA, dB = (f.A.detach() - before[m][0]).abs(), (f.B.detach() - before[m][1]).abs()
        # Adam's first step moves every parameter with a gradient by lr (|m̂/√v̂| = 1)
        assert dA[dA > 0].median().item() == pytest.approx(1e-3, rel=0.02)
        assert dB[dB > 0].median().item() == pytest.approx(8e-3, rel=0.02)
    with pytest.raises(KeyError, match="loraplus"):
        OPTIMIZERS.get("lora+")


def test_pissa_starts_on_the_top_r_part_and_converts_to_a_plain_lora():
    lab = tiny_lab()
    x = tiny_inputs(lab.model)
    ref = lab.model(**x).logits
    W = {p: base_weight(lab, p).clone() for p in lab.shapes("attention")}
    a = pissa_start(lab, "pi", r=4)
    for path in a.modules:
        U, S, Vh = torch.linalg.svd(W[path].double())
        top = (U[:, :4] * S[:4]) @ Vh[:4]
        torch.testing.assert_close(a.delta(path).double(), top, atol=1e-5, rtol=1e-5)  # ΔW = top-r
        W_res = base_weight(lab, path)
        torch.testing.assert_close(W_res + a.delta(path), W[path], atol=1e-6, rtol=1e-6)  # W_res + sBA = W
    with lab.using("pi"):
        torch.testing.assert_close(lab.model(**x).logits, ref, atol=1e-5, rtol=1e-5)  # unchanged at start
    train_multitask(lab, "pi", two_tasks(), steps=3, lr=1e-2, batch_size=4, progress=False)
    with lab.using("pi"):
        trained = lab.model(**x).logits
    plain = pissa_finish(lab, "pi")
    assert all(torch.equal(base_weight(lab, p), w) for p, w in W.items())  # the base is back, exactly
    assert set(plain.ranks.values()) == {8} and "pi_pissa_init" not in lab.adapters
    with lab.using("pi"):
        torch.testing.assert_close(lab.model(**x).logits, trained, atol=1e-4, rtol=1e-4)


def random_lora(seed: int, out: int = 12, inp: int = 10, r: int = 3):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(r, inp, generator=g, dtype=torch.float64),
            torch.randn(out, r, generator=g, dtype=torch.float64),
            torch.randn(out, inp, generator=g, dtype=torch.float64))


@pytest.mark.parametrize("seed", range(3))
def test_lorapro_equivalent_gradient_is_the_projection_of_the_full_gradient(seed):
    A, B, G = random_lora(seed)
    s = 2.0
    G_A, G_B = s * B.T @ G, s * G @ A.T  # what autograd gives a LoRA
    g_A, g_B = adjusted_gradients(A, B, s, G_A, G_B)
    P_B = B @ torch.linalg.pinv(B.T @ B) @ B.T
    P_A = A.T @ torch.linalg.pinv(A @ A.T) @ A
    target = P_B @ G + (torch.eye(12, dtype=G.dtype) - P_B) @ G @ P_A
    torch.testing.assert_close(equivalent_gradient(A, B, s, g_A, g_B), target, atol=1e-8, rtol=1e-8)
    # (b) X solves the Sylvester equation (BᵀB) X + X (AAᵀ) = C
    C = torch.randn(3, 3, dtype=torch.float64)
    X = solve_sylvester(B.T @ B, A @ A.T, C)
    torch.testing.assert_close(B.T @ B @ X + X @ A @ A.T, C, atol=1e-9, rtol=1e-9)
    # (c) closer to the full gradient than vanilla LoRA's equivalent gradient
    vanilla = equivalent_gradient(A, B, s, G_A, G_B)
    assert (target - G).norm() <= (vanilla - G).norm()


def test_lorapro_trains_in_the_trainer():
    lab = tiny_lab()
    res = train_multitask(lab, "pro", two_tasks(), r=4, steps=4, lr=1e-3, batch_size=4, optimizer="lorapro",
                          progress=False)
    assert all(torch.isfinite(f.B).all() for f in res.adapter.modules.values())
    assert any(f.B.abs().max() > 0 for f in res.adapter.modules.values())


def test_nola_bases_regenerate_bit_exactly_and_the_adapter_is_plain():
    assert torch.equal(basis(11, 16, (4, 64)), basis(11, 16, (4, 64)))
    assert not torch.equal(basis(11, 16, (4, 64)), basis(12, 16, (4, 64)))
    lab = tiny_lab()
    tr = MultiTaskTrainer(lab, "n", two_tasks(), r=4, steps=3, lr=5e-3, batch_size=4, optimizer="nola",
                          optimizer_options={"k": 16, "l": 16}, progress=False)
    A0 = {m: f.A.detach().clone() for m, f in tr.adapter.modules.items()}
    tr.run()
    opt = tr.optimizer
    state = opt.compressed()
    assert opt.num_trainable() == len(A0) * 32 < tr.adapter.num_parameters() / 10
    for m, path in enumerate(tr.modules):  # A, B are exactly the regenerated bases mixed by the coefficients
        A, B, _ = opt.pairs[m]
        sa, sb = opt.seeds(m)
        explicit_A = A0[path] + (state["alpha"][m][:, None, None] * basis(sa, 16, tuple(A.shape))).sum(0)
        explicit_B = (state["beta"][m][:, None, None] * basis(sb, 16, tuple(B.shape))).sum(0)
        torch.testing.assert_close(A.detach(), explicit_A, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(B.detach(), explicit_B, atol=1e-6, rtol=1e-6)
    assert any(f.B.abs().max() > 0 for f in tr.adapter.modules.values())
    copy = tr.adapter.copy("exported")  # a plain LoRA: nothing NOLA-specific is needed to use it
    assert type(copy.modules[tr.modules[0]].A) is torch.Tensor


def test_nola_coefficient_gradient_is_the_basis_inner_product():
    """∂L/∂α_i = ⟨∂L/∂A, Â_i⟩_F: checked against autograd through an explicit A(α)."""
    Ab = basis(3, 8, (2, 5))
    A0 = torch.randn(2, 5)
    x, y = torch.randn(7, 5), torch.randn(7, 2)
    alpha = torch.zeros(8, requires_grad=True)
    A = A0 + torch.einsum("k,kri->ri", alpha, Ab)
    ((x @ A.T - y) ** 2).sum().backward()
    A_leaf = A0.clone().requires_grad_(True)
    ((x @ A_leaf.T - y) ** 2).sum().backward()
    torch.testing.assert_close(alpha.grad, torch.einsum("kri,ri->k", Ab, A_leaf.grad))


def test_layra_keeps_first_and_last_layers():
    lab = tiny_lab()  # 2 layers
    only_first = layra_targets(lab, first_k=1, last_k=0)
    assert only_first and all(".layers.0." in p for p in only_first)
    both = layra_targets(lab, first_k=1, last_k=1)
    assert {".layers.0." in p for p in both} == {True, False}
    with pytest.raises(Exception, match="has 2 layers"):
        layra_targets(lab, first_k=2, last_k=1)


def test_flexora_gate_gradient_matches_autograd_and_selects_layers():
    lab = tiny_lab()
    lab.new_adapter("fx", r=4, init="random")
    path = next(iter(lab.adapters["fx"].modules))
    layer = lab.layers[path]
    feats = id_task(3, n=4)
    tr = MultiTaskTrainer(lab, "tmp", {"t": feats}, r=2, steps=1, lr=1e-3, progress=False)
    gate = torch.tensor(1.3, requires_grad=True)
    s = layer.scaling["fx"]
    B = layer.lora_B["fx"]
    with lab.using("fx"):
        layer.scaling["fx"] = s * 1.3
        B.requires_grad_(True)
        loss = tr._task_loss(0, feats)
        (gB,) = torch.autograd.grad(loss, [B])
        B.requires_grad_(False)
        formula = float((gB * B).sum()) / 1.3
        # the same loss with the gate as a real leaf multiplying the layer's rank activations
        layer.scaling["fx"] = s
        handle = layer.hook_rank["fx"].register_forward_hook(lambda m, i, o: o * gate)
        loss2 = tr._task_loss(0, feats)
        (g_gate,) = torch.autograd.grad(loss2, [gate])
        handle.remove()
    assert formula == pytest.approx(g_gate.item(), rel=1e-4)
    gates = flexora_search(lab, "fx", id_task(3, n=16), id_task(3, n=8, seed=1), steps=3, batch_size=4)
    assert set(gates.columns) == {"step", "layer", "value"} and gates.step.max() == 2
    assert len(flexora_select(gates, 1)) == 1
    assert layer.scaling["fx"] == s  # the per-layer scales are put back


def test_scalezero_stages_keep_outputs_and_bound_scales():
    base = nn.Linear(6, 5)
    layer = CurriculumLoRALinear(base, r=2, alpha=4, stages=3, seed=0)
    x = torch.randn(4, 6)
    torch.testing.assert_close(layer(x), base(x))  # stage 0 is the base
    layer.set_stage(1)
    torch.testing.assert_close(layer(x), base(x))  # switch: new B = 0, α = c = 1
    assert layer.A[0].requires_grad and not layer.A[1].requires_grad
    assert layer.scales[0].theta.requires_grad and not layer.scales[1].theta.requires_grad
    assert not base.weight.requires_grad
    opt = torch.optim.SGD([p for p in layer.parameters() if p.requires_grad], lr=0.05)
    for _ in range(5):
        opt.zero_grad()
        ((layer(x) - 1) ** 2).sum().backward()
        opt.step()
    before = layer(x).detach()
    layer.set_stage(2)
    torch.testing.assert_close(layer(x), before)  # outputs unchanged at the switch
    assert layer.scales[1].theta.requires_grad and not layer.scales[2].theta.requires_grad
    with torch.no_grad():
        layer.scales[0].theta.fill_(1e6)
    assert 0.8 < layer.scales[0]().item() <= 1.2 + 1e-6  # α ∈ (c − ρ, c + ρ], float32


def test_scalezero_controller_switch_rule():
    ctl = CurriculumController(3, min_stage0_iters=5, max_stage_iters=100)
    assert not any(ctl.step(solved=4, unsolved=0) for _ in range(4))  # never before min_stage0_iters
    assert ctl.step(solved=4, unsolved=2) and ctl.stage == 1
    assert not ctl.step(solved=4, unsolved=2)  # 0 newly solved < ceil(2 / 1)
    assert ctl.step(solved=6, unsolved=0) and ctl.stage == 2
    ctl2 = CurriculumController(3, min_stage0_iters=0, max_stage_iters=3)
    assert [ctl2.step(0, 10) for _ in range(3)] == [False, False, True]  # the iteration cap


def test_wavllm_curriculum_trains_single_tasks_then_combined_ones():
    from tests.tasks.helpers import build_tokenizer
    from workbench import Workbench, zoo
    from workbench.tasks import Example, Task
    from workbench.training.curriculum import combine_tasks, two_stage

    z = zoo.load("tiny-llama")
    lab = Workbench(z.model, build_tokenizer(), name="tiny-llama", fingerprint=z.fingerprint)
    ex = [Example("what is one plus two ?", "three"), Example("what is two plus two ?", "four"),
          Example("one plus four ?", "five")]
    colours = [Example("which colour is the apple ?", "red"), Example("which fruit is green ?", "apple"),
               Example("which colour is the banana ?", "green")]
    arith = Task("arith", "toy sums", "exact_match", ex[:2], ex[2:], max_length=40)
    colour = Task("colour", "toy colours", "exact_match", colours[:2], colours[2:], max_length=40)
    combined = combine_tasks([arith, colour], 6, seed=0)
    assert all(e.prompt.startswith("Answer both") and "\n" in e.target for e in combined.train)
    assert {e.target.split("\n")[0] for e in combined.train} <= {"three", "four", "red", "apple"}
    res = two_stage(lab, "w", [arith, colour], single_steps=2, combined_steps=3, n_combined=6, r=2,
                    batch_size=4, lr=1e-2, progress=False)
    assert "combined" not in set(res.single.history.task)
    assert "combined" in set(res.combined.history.task)
    assert res.combined.adapter is res.single.adapter  # stage 2 continues stage 1's adapter
    assert res.single.checkpoints[-1].lineage["tasks"] == ["arith", "colour"]
    assert res.combined.checkpoints[-1].lineage["tasks"] == ["arith", "colour", "combined"]
    stage1_end = res.single.checkpoints[-1]
    assert any(not torch.equal(stage1_end.modules[m].B, f.B) for m, f in res.adapter.modules.items())
    assert res.adapter.lineage["curriculum"]["combined_steps"] == 3


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_trains_the_adapter_and_is_reproducible(name):
    runs = []
    for _ in range(2):
        res = train_multitask(tiny_lab(), "o", two_tasks(), r=4, steps=2, lr=1e-3, batch_size=4,
                              optimizer=name, progress=False)
        runs.append({m: f.B.detach().clone() for m, f in res.adapter.modules.items()})
    assert all(torch.isfinite(b).all() for b in runs[0].values())
    assert any(b.abs().max() > 0 for b in runs[0].values())  # B left zero: it moved
    assert all(torch.equal(runs[0][m], runs[1][m]) for m in runs[0])
