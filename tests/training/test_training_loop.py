"""The one training loop: every front runs through it, optimizers and variants reach every front,
routers train under per-task gradient methods, seeds reproduce, and the lab comes back as it was."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from tests.conftest import tiny_lab
from tests.training.helpers import id_task, two_tasks
from tests.training.test_training_sweep import toy
from workbench.errors import WorkbenchError
from workbench.training import GRAD_METHODS, Loop, MultiTaskTrainer, fit, train_multitask
from workbench.training.objectives import TokenLoss
from workbench.training.sources import Shuffled

WORKBENCH = Path(__file__).resolve().parents[2] / "workbench"


def factors(adapter):
    return {m: (f.A.detach().clone(), f.B.detach().clone()) for m, f in adapter.modules.items()}


def test_only_the_loop_steps_an_optimizer():
    """``optimizer.step()`` is called in one place; NOLA's inner Adam is that optimizer's own step.
    Two known seams, to move onto the loop: AdaMerging's coefficient search steps its own Adam on merge
    coefficients with a projection onto the weight bounds after each step (the loop has no projection),
    and ICM-Fusion's first-order meta-learning steps its outer optimizer with gradients it averages over
    tasks (the loop has no meta step)."""
    pattern = re.compile(r"(?<![`\w.])[\w.]*(opt|optim|adam)\w*\.step\(", re.I)  # code, not ``prose``
    sites = sorted(f"{p.relative_to(WORKBENCH)}:{line.strip()}" for p in WORKBENCH.rglob("*.py")
                   for line in p.read_text().splitlines() if pattern.search(line))
    assert sites == ["generation/icm_fusion.py:optimizer.step()",
                     "search/searchers/adamerging.py:self.adam.step()",
                     "training/loop.py:self.optimizer.step()", "training/nola.py:self.adam.step()"]
    backward = sorted(str(p.relative_to(WORKBENCH)) for p in WORKBENCH.rglob("*.py")
                      if re.search(r"\.backward\(|autograd\.grad\(", p.read_text()))
    # Flexora's gate gradient, DMoERM's gradient × input attribution, LLM-Pruner's Taylor importance,
    # the merges' Fisher statistics and AdaMerging's entropy gradient read gradients, never step;
    # LoRA-Composer's box guidance and CLoRA's contrastive update move the latent being sampled, not weights
    assert backward == ["analysis/reward_mixture.py", "composition/methods/clora.py",
                        "composition/methods/composer.py", "compression/importance.py",
                        "generation/icm_fusion.py", "merging/statistics.py",
                        "search/adamerging.py", "training/layers.py", "training/steps.py"]
    lambdas = [p for p in WORKBENCH.rglob("*.py") if "(s + 1) / n_warm" in p.read_text()]
    assert [p.name for p in lambdas] == ["schedule.py"]


def test_train_lora_takes_any_optimizer_through_the_loop():
    runs = {}
    for name in ("adamw", "lorapro", "lorapro"):
        lab, task = toy()
        a, h = lab.train_lora("t", task, r=2, steps=3, batch_size=2, lr=1e-2, optimizer=name, progress=False)
        assert h.loss.notna().all() and len(h) == 3 and a.lineage["optimizer"] == name
        runs.setdefault(name, []).append((factors(a), h))
    (pro, hp), (pro2, hp2) = runs["lorapro"]
    (plain, _), = runs["adamw"]
    assert hp.equals(hp2) and all(torch.equal(pro[m][1], pro2[m][1]) for m in pro)  # same seed, same bits
    assert any(not torch.equal(pro[m][1], plain[m][1]) for m in pro)  # LoRA-Pro steps differently
    assert any(f[1].abs().max() > 0 for f in pro.values())


def test_train_lora_variants_set_scaling_optimizer_and_pissa_finishes():
    lab, task = toy()
    a, _ = lab.train_lora("rs", task, r=2, steps=2, batch_size=2, variant="rslora", progress=False)
    assert a.scaling == "rslora" and a.lineage["variant"] == "rslora"
    b, _ = lab.train_lora("lp", task, r=2, steps=2, batch_size=2, variant="loraplus", progress=False)
    assert b.lineage["optimizer"] == "loraplus"
    weights = {k: v.clone() for k, v in lab.model.state_dict().items() if "lora_" not in k}
    p, _ = lab.train_lora("pi", task, r=2, steps=2, batch_size=2, variant="pissa", progress=False)
    assert set(p.ranks.values()) == {4} and "pi_pissa_init" not in lab.adapters  # rank 2r, residual gone
    after = lab.model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in weights.items())  # the base is back, bit for bit
    with pytest.raises(KeyError, match="pissa"):
        lab.train_lora("x", task, variant="dora", progress=False)


def test_multitask_trainer_trains_a_router_with_pcgrad_and_its_aux_losses():
    runs = []
    for _ in range(2):
        lab = tiny_lab()
        lab.add_router("mix", "mixlora", experts=4, k=2, r=4)
        routed = lab.routers["mix"]
        before = {k: v.clone() for k, v in routed.state_dict().items()}
        lab.model.eval()
        res = train_multitask(lab, "mix", two_tasks(), steps=3, lr=1e-2, batch_size=4, method="pcgrad",
                              capture_every=1, seed=1, progress=False)
        runs.append((res, {k: v.clone() for k, v in routed.state_dict().items()}))
        assert res.adapter is routed and res.checkpoints == []
        total = res.history[res.history.task == "total"]
        assert "aux" in res.history.columns and (total["aux"] > 0).all()
        assert "aux/mix/load_balance" in res.history.columns
        assert any(not torch.equal(before[k], v) for k, v in runs[-1][1].items())
        assert res.conflicts.steps == [0, 1, 2] and res.conflicts.modules == list(routed.modules)
        assert lab.active.names == set() and not lab.model.training
        assert routed.params["training"]["method"] == "train_multitask"
        assert all(p.grad is None for p in routed.trainable())
    (a, sa), (b, sb) = runs
    assert a.history.equals(b.history) and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_fit_refuses_pair_optimizers_for_other_parameters():
    lab = tiny_lab()
    lab.add_router("sm", "smora", r=4, k=2, targets="q_proj")
    feats = [{"input_ids": [1, 2, 3, 4], "labels": [-100, 2, 3, 4], "task": 0}] * 4
    with pytest.raises(WorkbenchError, match="'lorapro' trains LoRA factor pairs"):
        fit(lab, lab.routers["sm"].trainable(), feats, use="sm", label="sm", steps=1, lr=1e-2, batch_size=2,
            seed=0, optimizer="lorapro", progress=False)
    with pytest.raises(KeyError, match="ratio"):
        fit(lab, lab.routers["sm"].trainable(), feats, use="sm", label="sm", steps=1, lr=1e-2, batch_size=2,
            seed=0, optimizer="loraplus", optimizer_options={"ration": 2.0}, progress=False)
    h = fit(lab, lab.routers["sm"].trainable(), feats, use="sm", label="sm", steps=2, lr=1e-2, batch_size=2,
            seed=0, optimizer="loraplus", accumulate=2, progress=False)
    assert len(h) == 2 and h.loss.notna().all()


def test_fit_stops_on_a_non_finite_loss_with_the_last_good_weights():
    lab = tiny_lab()
    lab.new_adapter("a", r=2, init="random")
    params = [p for layer in lab.layers.values() for p in (layer.lora_A["a"], layer.lora_B["a"])]
    good = id_task(3, n=6)
    broken = [{"input_ids": f["input_ids"], "labels": [-100] * len(f["labels"]), "task": 0} for f in good[:2]]
    start = [p.detach().clone() for p in params]
    stopped = r"stopped at step \d+: the loss is nan\. The trained parameters"
    with pytest.raises(WorkbenchError, match=stopped):
        fit(lab, params, good + broken, use="a", label="a", steps=20, lr=1e-2, batch_size=1, seed=0,
            progress=False)
    assert all(torch.isfinite(p).all() for p in params) and not any(p.requires_grad for p in params)
    assert lab.active.names == set()
    assert any(not torch.equal(p, s) for p, s in zip(params, start, strict=True))


def test_loop_callbacks_eval_every_and_checkpoints():
    lab = tiny_lab()
    tr = MultiTaskTrainer(lab, "j", two_tasks(), r=2, steps=5, lr=1e-2, batch_size=2, checkpoint_every=2,
                          progress=False)
    seen = []
    tr.loop.callbacks.on_eval(lambda loop: loop.step_index, every=2)
    tr.loop.callbacks.on_checkpoint(lambda loop, c: seen.append(c.lineage["step"]))
    tr.run()
    assert tr.loop.callbacks.results == [(2, 2), (4, 4), (5, 5)]
    assert seen == [2, 4, 5] and [c.lineage["step"] for c in tr.checkpoints] == [2, 4, 5]


def test_a_loop_built_by_hand_equals_fit():
    feats = [f | {"task": 0} for f in id_task(3, n=6)]
    histories, weights = [], []
    for by_hand in (False, True):
        lab = tiny_lab()
        lab.new_adapter("a", r=2, init="random")
        params = [p for layer in lab.layers.values() for p in (layer.lora_A["a"], layer.lora_B["a"])]
        if by_hand:
            loop = Loop(params, TokenLoss(lab), Shuffled([(0, f) for f in feats], 4), label="a", steps=4,
                        lr=1e-2, batch_size=2, seed=4, reseed="run", progress=False,
                        session=lambda lab=lab, params=params: lab.session("a", train=True, trainable=params))
            loop.run(1)
            loop.run()
            histories.append(loop.history())
        else:
            histories.append(fit(lab, params, feats, use="a", label="a", steps=4, lr=1e-2, batch_size=2,
                                 seed=4, progress=False))
        weights.append([p.detach().clone() for p in params])
    assert histories[0].equals(histories[1])
    assert all(torch.equal(a, b) for a, b in zip(*weights, strict=True))


def test_lab_session_restores_use_mode_and_requires_grad():
    lab = tiny_lab()
    lab.new_adapter("a", r=2)
    lab.new_adapter("b", r=2)
    lab.use("b")
    lab.model.eval()
    A = lab.layers[next(iter(lab.adapters["a"].modules))].lora_A["a"]
    with lab.session("a", train=True, trainable=[A, A]):
        assert lab.active.names == {"a"} and lab.model.training and A.requires_grad
        A.grad = torch.ones_like(A)
    assert lab.active.names == {"b"} and not lab.model.training and not A.requires_grad and A.grad is None
    with pytest.raises(RuntimeError), lab.session(None, train=True):
        raise RuntimeError("inside")
    assert lab.active.names == {"b"} and not lab.model.training
    with lab.session():  # nothing asked, nothing changed
        assert lab.active.names == {"b"}
    with lab.using("a"):
        assert lab.active.names == {"a"}
    assert lab.active.names == {"b"}


def test_router_aux_terms_do_not_pile_up_outside_training():
    """The mend: each forward starts afresh, so forwards nobody collects leave one forward's terms."""
    lab = tiny_lab()
    lab.add_router("mix", "mixlora", experts=4, k=2, r=4)
    router = next(iter(lab.routers["mix"].modules.values()))
    x = {"input_ids": torch.tensor([[1, 2, 3, 4]])}
    with lab.session("mix", train=True):
        lab.model(**x)
        once = len(router.pending_aux)
        for _ in range(3):
            lab.model(**x)
        assert once >= 1 and len(router.pending_aux) == once
    router.pending_aux.clear()


def test_grad_methods_declare_per_task_gradients():
    assert GRAD_METHODS.names(flag="per_task_gradients") == ["cagrad", "gradvac", "pcgrad"]
    assert GRAD_METHODS.check("cagrad", {"c": 0.4}) == {"c": 0.4, "iters": 300}
    with pytest.raises(WorkbenchError, match="out of range"):
        GRAD_METHODS.check("gradvac", {"beta": 2.0})


class Regression:
    """Mean squared error of a plain module on (x, y) payloads: the loop trains any model."""

    def __init__(self, model):
        self.model = self.module = model

    def __call__(self, items, present=None):
        from workbench.training.objectives import Losses

        x = torch.stack([p[0] for _, p in items])
        y = torch.stack([p[1] for _, p in items])
        return Losses(((self.model(x) - y) ** 2).mean())


def test_scalezero_stages_run_through_the_loop():
    import contextlib

    from torch import nn

    from workbench.training.scalezero import CurriculumController, CurriculumLoRALinear, run_stages

    g = torch.Generator().manual_seed(0)
    layers = [CurriculumLoRALinear(nn.Linear(6, 8), r=2, alpha=4, stages=3, seed=1),
              CurriculumLoRALinear(nn.Linear(8, 3), r=2, alpha=4, stages=3, seed=2)]
    model = nn.Sequential(layers[0], nn.Tanh(), layers[1])
    data = [(0, (torch.randn(6, generator=g), torch.randn(3, generator=g))) for _ in range(16)]
    loop = Loop(list(model.parameters()), Regression(model), Shuffled(data, 0),
                session=contextlib.nullcontext, label="scalezero", steps=9, lr=1e-2, batch_size=4, seed=0,
                progress=False)
    seen = []
    loop.callbacks.on_step(lambda lp, rows: seen.append((layers[0].stage, layers[0].base.weight.clone(),
                                                         layers[0].B[0].detach().clone())))
    controller = CurriculumController(3, min_stage0_iters=3, max_stage_iters=3)
    starts = run_stages(loop, layers, controller, judge=lambda lp: (0, 2))  # never solved: the cap decides
    assert starts == [0, 3, 6] and layers[0].stage == 2 and len(loop.rows) == 9
    stage_of = [s for s, _, _ in seen]
    assert stage_of == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    W = [w for _, w, _ in seen]
    assert not torch.equal(W[0], W[1])  # stage 0 trains the base
    assert all(torch.equal(W[2], w) for w in W[3:])  # later stages leave it alone
    B1 = [b for _, _, b in seen]
    assert torch.equal(B1[0], B1[2]) and not torch.equal(B1[3], B1[5])  # adapter 1 trains in stage 1
    assert all(torch.equal(B1[5], b) for b in B1[6:])  # and is frozen in stage 2
