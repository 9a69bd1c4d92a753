"""Trans-LoRA's filter: planted scores keep exactly the known set (threshold and top rules, the tidy
frame), and a tiny discriminator trained on trivially separable real vs synthetic strings keeps the
real-like ones."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.transfer.helpers import FRUITS, colour_task, llama_lab
from workbench.errors import WorkbenchError
from workbench.tasks import Example
from workbench.transfer import discriminator_task, filter_inputs, keep_mask, select, train_discriminator

DISC = {"r": 8, "steps": 20, "lr": 0.01, "batch_size": 12, "warmup": 0.0, "targets": "all-linear",
        "progress": False}  # measured: p(real) 0.53 on held-out real-like inputs, 0.47 on the others
P = torch.tensor([0.9, 0.1, 0.5, 0.49, 0.7, 0.7])


def _inputs(n):
    return [Example(f"input {i}", "") for i in range(n)]


def test_threshold_keeps_exactly_the_planted_set_and_the_frame_is_tidy():
    kept, frame = select(_inputs(6), P, threshold=0.5)
    assert [e.prompt for e in kept] == ["input 0", "input 2", "input 4", "input 5"]  # p ≥ 0.5, in order
    assert list(frame.columns) == ["sample", "text", "value", "rank", "kept"]
    assert frame.kept.tolist() == [True, False, True, False, True, True]
    assert frame["rank"].tolist() == [0, 5, 3, 4, 1, 2]  # ties broken by input order
    torch.testing.assert_close(torch.tensor(frame.value.to_numpy(), dtype=torch.float32), P)


def test_top_keeps_the_best_fraction_rounded_up():
    assert keep_mask(P, top=0.4).tolist() == [True, False, False, False, True, True]  # ceil(2.4) = 3
    assert keep_mask(P, top=1.0).all()
    assert keep_mask(P, threshold=0.95).sum() == 0  # nothing passes: the pipeline raises on that


@pytest.mark.parametrize("rule", [{"threshold": 1.5}, {"threshold": None}, {"top": 0.0}, {"top": True}])
def test_bad_rules_are_refused(rule):
    with pytest.raises(WorkbenchError, match="threshold|top"):
        keep_mask(P, **rule)
    with pytest.raises(WorkbenchError, match="one p"):
        select(_inputs(2), P)


def test_discriminator_task_is_balanced_binary_choice():
    t = colour_task()
    d = discriminator_task(t, t.train[:2], ["w1 w2", "w3", "w4 w5", "w6"], seed=0)
    assert d.metric == "accuracy" and len(d.train) == 8  # the smaller class repeats to 4
    assert sorted(e.target for e in d.train) == ["no"] * 4 + ["yes"] * 4
    assert all(e.choices == ("yes", "no") for e in d.train)
    with pytest.raises(WorkbenchError, match="real and synthetic"):
        discriminator_task(t, [], ["w1"])


def test_a_tiny_discriminator_keeps_the_real_like_inputs():
    task = dataclasses.replace(colour_task(), system="")  # a short shared prompt: the inputs dominate
    lab = llama_lab()
    real = [Example(f"what colour is the {f}", "") for f in list(FRUITS)[:6]]
    fake = [Example(" ".join(f"w{(7 * i + 3 * j) % 200 + 20}" for j in range(5)), "") for i in range(6)]
    train_discriminator(lab, "disc", task, real, fake, **DISC)
    held = [Example(f"what colour is the {f}", "") for f in list(FRUITS)[6:]]
    held += [Example(" ".join(f"w{(11 * i + 5 * j) % 200 + 20}" for j in range(5)), "") for i in range(4)]
    kept, frame = filter_inputs(lab, "disc", task, held)  # threshold 0.5: "the discriminator says real"
    assert [e.prompt for e in kept] == [e.prompt for e in held[:4]]
    assert frame.value[:4].min() > frame.value[4:].max()
    assert lab.active.names == set() and "disc" in lab.adapters  # scoring put back what was used
