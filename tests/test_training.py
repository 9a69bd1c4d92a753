"""train_lora and evaluate on the real SmolLM2: deterministic, frozen base, tidy scores."""

from __future__ import annotations

import pytest
import torch

from workbench import Workbench, tasks

pytestmark = pytest.mark.slow


@pytest.fixture
def lab(smollm2):
    lab = Workbench(smollm2.model, smollm2.tokenizer, name="smollm2-135m",
                    fingerprint=smollm2.fingerprint)
    yield lab
    lab.detach()


def test_train_lora_is_deterministic_and_leaves_the_base_alone(lab):
    topic = tasks.load("topic")["topic"]
    base = {k: v.clone() for k, v in lab.model.state_dict().items()}
    a, h1 = lab.train_lora("t1", topic, r=4, steps=3, batch_size=2, seed=7, progress=False)
    b, h2 = lab.train_lora("t2", topic, r=4, steps=3, batch_size=2, seed=7, progress=False)
    assert h1.loss.tolist() == h2.loss.tolist() and len(h1) == 3
    for m in a.modules:
        assert torch.equal(a.modules[m].A, b.modules[m].A) and torch.equal(a.modules[m].B, b.modules[m].B)
    assert any(f.B.abs().max() > 0 for f in a.modules.values())  # it learned something
    assert a.lineage["method"] == "train_lora" and a.lineage["tasks"] == ["topic"]
    assert a.lineage["seed"] == 7 and a.base_fingerprint == lab.fingerprint
    after = {k.replace("base_layer.", ""): v for k, v in lab.model.state_dict().items() if "lora_" not in k}
    assert all(torch.equal(after[k], v) for k, v in base.items())
    assert not any(p.requires_grad for p in lab.model.parameters())
    assert lab.active.names == set()  # what was used before training is used again


def test_evaluate_gives_a_tidy_frame(lab):
    ts = tasks.load(["topic", "code"])
    lab.new_adapter("z", r=2)  # B = 0: identical to the base
    scores = lab.evaluate([None, "z"], ts, limit=4, progress=False)
    assert list(scores.columns) == ["adapter", "task", "metric", "value", "higher_is_better", "n"]
    assert set(scores.adapter) == {"base", "z"} and set(scores.task) == {"topic", "code"}
    wide = scores.pivot(index="task", columns="adapter", values="value")
    torch.testing.assert_close(torch.tensor(wide["z"].values), torch.tensor(wide["base"].values))
