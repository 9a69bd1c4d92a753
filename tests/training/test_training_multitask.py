"""The multi-task trainer on a tiny model: determinism, checkpoints, accumulation, sampling, bad input."""

from __future__ import annotations

import re

import pytest
import torch

from tests.conftest import tiny_lab
from tests.training.helpers import id_task, two_tasks
from workbench.errors import WorkbenchError
from workbench.training import SAMPLINGS, MultiTaskTrainer, train_multitask


def factors(adapter):
    return {m: (f.A.detach().clone(), f.B.detach().clone()) for m, f in adapter.modules.items()}


@pytest.mark.parametrize("method", ["sum", "pcgrad"])
def test_same_seed_gives_the_same_adapter_bit_for_bit(method):
    runs = []
    for seed in (3, 3, 4):
        lab = tiny_lab()
        res = train_multitask(lab, "j", two_tasks(), r=4, steps=4, lr=1e-2, batch_size=4, seed=seed,
                              method=method, capture_every=1, progress=False)
        runs.append((factors(res.adapter), res.history, res.conflicts.grams))
    (a, ha, ga), (b, hb, gb), (c, _, _) = runs
    assert all(torch.equal(a[m][0], b[m][0]) and torch.equal(a[m][1], b[m][1]) for m in a)
    assert ha.equals(hb) and all((x == y).all() for x, y in zip(ga, gb, strict=True))
    assert any(not torch.equal(a[m][1], c[m][1]) for m in a)  # another seed, another adapter


def test_training_moves_the_adapter_only_and_restores_the_lab():
    lab = tiny_lab()
    base = {k: v.clone() for k, v in lab.model.state_dict().items()}
    lab.model.eval()
    res = train_multitask(lab, "j", two_tasks(), r=4, steps=3, lr=1e-2, batch_size=4, progress=False)
    assert any(f.B.abs().max() > 0 for f in res.adapter.modules.values())
    after = {k.replace("base_layer.", ""): v for k, v in lab.model.state_dict().items() if "lora_" not in k}
    assert all(torch.equal(after[k], v) for k, v in base.items())
    assert not lab.model.training and lab.active.names == set()
    assert not any(p.requires_grad for p in lab.model.parameters())
    hist = res.history
    assert list(hist.columns) == ["step", "task", "loss", "n", "lr"]
    assert set(hist.task) <= {"left", "right", "total"} and hist.step.max() == 2
    assert (hist[hist.task == "total"].n == 4).all()


def test_checkpoints_are_adapters_with_lineage():
    lab = tiny_lab()
    res = train_multitask(lab, "j", two_tasks(), r=4, steps=4, lr=1e-2, batch_size=2, seed=5,
                          checkpoint_every=2, progress=False)
    assert [c.lineage["step"] for c in res.checkpoints] == [2, 4]
    first, last = res.checkpoints
    assert first.lineage["tasks"] == ["left", "right"] and first.lineage["seed"] == 5
    assert first.lineage["checkpoint_of"] == "j" and first.name == "j_step2"
    assert all(torch.equal(last.modules[m].B, f.B) for m, f in res.adapter.modules.items())
    assert any(not torch.equal(first.modules[m].B, f.B) for m, f in res.adapter.modules.items())
    assert first.modules[next(iter(first.modules))].B is not res.adapter.modules[next(iter(first.modules))].B


def test_stepping_by_hand_equals_one_run():
    lab1, lab2 = tiny_lab(), tiny_lab()
    whole = train_multitask(lab1, "j", two_tasks(), r=4, steps=5, lr=1e-2, batch_size=4, progress=False)
    trainer = MultiTaskTrainer(lab2, "j", two_tasks(), r=4, steps=5, lr=1e-2, batch_size=4, progress=False)
    seen = []
    trainer.on_step(lambda tr, rows: seen.append(rows[-1]["step"]))
    while not trainer.done:
        trainer.step(2)
    assert seen == [0, 1, 2, 3, 4] and trainer.history.equals(whole.history)
    a, b = factors(whole.adapter), factors(trainer.adapter)
    assert all(torch.equal(a[m][1], b[m][1]) for m in a)


def test_gradient_accumulation_averages_micro_batches():
    """One task, equal-length examples: 2 micro-batches of 2 give the update of one batch of 4."""
    task = {"only": id_task(3, n=8)}
    updates = []
    for batch, acc in ((4, 1), (2, 2)):
        lab = tiny_lab()
        tr = MultiTaskTrainer(lab, "j", task, r=4, steps=1, lr=1e-2, batch_size=batch, accumulate=acc,
                              optimizer_options={}, progress=False, init="random")
        start = factors(tr.adapter)
        tr.run()
        end = factors(tr.adapter)
        updates.append(torch.cat([(end[m][1] - start[m][1]).ravel() for m in end]))
        assert tr.history.query("task == 'total'").n.item() == 4
    torch.testing.assert_close(updates[0], updates[1], rtol=1e-4, atol=1e-7)


def test_samplings():
    sizes = [10, 40]
    assert SAMPLINGS.get("proportional")(sizes).tolist() == [0.2, 0.8]
    assert SAMPLINGS.get("uniform")(sizes).tolist() == [0.5, 0.5]
    p = SAMPLINGS.get("temperature")(sizes, 2.0)
    assert 0.2 < p[0] < 0.5 and p.sum().item() == pytest.approx(1.0)
    assert SAMPLINGS.get("temperature")(sizes, 1.0).tolist() == pytest.approx([0.2, 0.8])
    lab = tiny_lab()
    tasks = {"small": id_task(3, n=4), "big": id_task(7, n=16, seed=1)}
    res = train_multitask(lab, "j", tasks, r=2, steps=12, lr=1e-3, batch_size=16, sampling="uniform",
                          progress=False)
    n = res.history[res.history.task != "total"].groupby("task").n.sum()
    assert abs(n["small"] / n.sum() - 0.5) < 0.08  # uniform although the small task has 4x fewer


def test_bad_input_is_refused_clearly():
    lab = tiny_lab()
    with pytest.raises(WorkbenchError, match="task 'empty' has no training examples"):
        train_multitask(lab, "j", {"a": id_task(3), "empty": []}, progress=False)
    for lr in (0, -1e-3):
        with pytest.raises(WorkbenchError, match="learning rate must be"):
            train_multitask(lab, "j", two_tasks(), lr=lr, progress=False)
    with pytest.raises(WorkbenchError, match="pcgrad") as e:  # a KeyError as well (a lookup)
        train_multitask(lab, "j", two_tasks(), method="pcgard", progress=False)
    assert isinstance(e.value, KeyError) and str(e.value).startswith("unknown gradient method 'pcgard'")
    assert all(n in str(e.value) for n in ("cagrad", "gradvac", "sum"))
    with pytest.raises(KeyError, match="proportional"):
        train_multitask(lab, "j", two_tasks(), sampling="random", progress=False)
    with pytest.raises(KeyError, match="balanced"):
        train_multitask(lab, "j", two_tasks(), weighting="focal", progress=False)
    assert "j" not in lab.adapters  # nothing was made


def test_nan_loss_stops_naming_step_and_task_and_keeps_the_last_good_weights():
    lab = tiny_lab()
    broken = [{"input_ids": f["input_ids"], "labels": [-100] * len(f["labels"])} for f in id_task(5, n=4)]
    tr = MultiTaskTrainer(lab, "j", {"fine": id_task(3, n=64), "broken": broken}, r=4, steps=50, lr=1e-2,
                          batch_size=1, sampling="temperature", temperature=100.0, seed=1, progress=False)
    with pytest.raises(WorkbenchError, match=r"stopped at step (\d+): the loss of task 'broken'") as e:
        tr.run()
    step = int(re.search(r"step (\d+)", str(e.value)).group(1))
    last = tr.checkpoints[-1]
    assert step > 0 and last.lineage["step"] == step - 1 and tr.step_index == step
    assert "non-finite" in last.lineage["note"]
    assert all(torch.isfinite(f.B).all() for f in tr.adapter.modules.values())
    assert all(torch.equal(last.modules[m].B, f.B) for m, f in tr.adapter.modules.items())
    assert lab.active.names == set() and not any(p.requires_grad for p in lab.model.parameters())


@pytest.mark.parametrize(("mechanism", "params"), [
    ("smora", dict(r=4, k=2, targets="q_proj")),  # rank experts
    ("loramoe", dict(experts=2, r=2, targets="up_proj", blc_alpha=0.1, blc_weight=0.1)),  # a mixture + LBC
    ("alora", dict(r=4, heads=2, targets="v_proj")),  # attention over the LoRA codes
    ("prompt-scale", dict(r=2, targets="q_proj")),  # conditioned: σ from the routing context
])
def test_pcgrad_trains_a_non_bank_router_of_each_family(mechanism, params):
    from workbench.routing import constant_scale, routing_context

    lab = tiny_lab()
    routed = lab.add_router("r", mechanism, init="random", **params)
    before = {k: v.clone() for k, v in routed.state_dict().items()}
    context = constant_scale(routed) if routed.has("needs_prompt_scale") else {}
    with routing_context(**context):  # σ ≡ α/r, one row for any batch: the stage-1 LoRA
        res = lab.train_multitask("r", two_tasks(), steps=2, lr=1e-2, batch_size=4, method="pcgrad",
                                  capture_every=1, progress=False)
    assert res.adapter is routed and routed.history is res.history
    assert any(not torch.equal(before[k], v) for k, v in routed.state_dict().items())
    assert res.conflicts.modules == list(routed.modules) and res.conflicts.steps == [0, 1]
    assert routed.params["training"]["method"] == "train_multitask" and lab.active.names == set()
    if routed.has("needs_task_labels"):
        assert "aux/r/loramoe_lbc" in res.history.columns
