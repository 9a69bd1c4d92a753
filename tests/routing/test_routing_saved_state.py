"""Routers save and load with their training state: history, optimizer state, schedule, step, grown ranks."""

from __future__ import annotations

import torch

from tests.conftest import output_of, tiny_inputs, tiny_lab
from tests.training.helpers import two_tasks
from workbench.routing.files import HISTORY, OPTIMIZER
from workbench.routing.mechanisms.mora import add_task_ranks
from workbench.training import MultiTaskTrainer


def _flat(state: dict) -> dict:
    return {f"{i}.{k}": v for i, entries in state["state"].items() for k, v in entries.items()}


def test_a_trained_router_comes_back_with_its_optimizer_history_and_step(tmp_path):
    lab = tiny_lab()
    lab.add_router("sm", "smora", r=4, k=2, targets="q_proj", init="random")
    trainer = MultiTaskTrainer(lab, "sm", two_tasks(), steps=3, lr=1e-2, batch_size=4, seed=1, progress=False)
    trainer.run()
    lab.save_router("sm", tmp_path / "sm", trainer=trainer)
    assert (tmp_path / "sm" / HISTORY).is_file() and (tmp_path / "sm" / OPTIMIZER).is_file()

    other = tiny_lab()
    routed = other.load_router(tmp_path / "sm")
    assert all(torch.equal(v, lab.routers["sm"].state_dict()[k]) for k, v in routed.state_dict().items())
    assert routed.params["training"]["method"] == "train_multitask"
    assert routed.history[["step", "task", "loss"]].equals(trainer.history[["step", "task", "loss"]])
    saved = routed.training_state
    assert saved["step"] == 3 and saved["scheduler"]["last_epoch"] == trainer.scheduler.last_epoch
    resumed = MultiTaskTrainer(other, "sm", two_tasks(), steps=3, lr=1e-2, batch_size=4, progress=False)
    resumed.optimizer.load_state_dict(saved["optimizer"])  # what a resumed run starts from
    want, got = _flat(trainer.optimizer.state_dict()), _flat(resumed.optimizer.state_dict())
    assert want.keys() == got.keys() and len(want) > 0
    for k, v in want.items():
        torch.testing.assert_close(got[k].to(v.dtype), v, atol=0, rtol=0)
    assert resumed.optimizer.param_groups[0]["betas"] == trainer.optimizer.param_groups[0]["betas"]


def test_the_history_of_lab_training_is_kept_and_saved_and_an_untrained_router_has_none(tmp_path):
    lab = tiny_lab()
    lab.add_router("mo", "loramoe", experts=2, r=2, targets="q_proj")
    lab.save_router("mo", tmp_path / "fresh")
    assert not (tmp_path / "fresh" / HISTORY).exists()
    fresh = tiny_lab().load_router(tmp_path / "fresh")
    assert fresh.history is None and fresh.training_state is None
    result = lab.train_multitask("mo", two_tasks(), steps=2, lr=1e-2, batch_size=4, progress=False)
    assert lab.routers["mo"].history is result.history
    lab.save_router("mo", tmp_path / "fresh", overwrite=True)  # replaces its own folder, now with history
    back = tiny_lab().load_router(tmp_path / "fresh")
    assert back.history["loss"].tolist() == result.history["loss"].tolist()


def test_a_grown_mora_pool_loads_with_every_task_and_only_the_newest_trainable(tmp_path):
    lab = tiny_lab()
    lab.add_router("mo", "mora", r=2, k=2, targets="q_proj", init="random")
    add_task_ranks(lab.routers["mo"], 3)
    lab.save_router("mo", tmp_path / "mo")
    other = tiny_lab()
    routed = other.load_router(tmp_path / "mo")
    assert routed.params["task_ranks"] == [2, 3]
    mine, theirs = lab.routers["mo"], routed
    for path, router in theirs.modules.items():
        assert router.n_ranks == 5
        assert [p.requires_grad for p in router.parameters()] == \
            [p.requires_grad for p in mine.modules[path].parameters()]
    x = tiny_inputs(lab.model)
    with lab.using("mo"), other.using("mo"):
        torch.testing.assert_close(output_of(other.run(x)[0]), output_of(lab.run(x)[0]))
