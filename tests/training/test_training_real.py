"""The multi-task trainer on the real SmolLM2 and real tasks: conflicts per layer and module."""

from __future__ import annotations

import pytest

from workbench import Workbench, tasks
from workbench.training import MultiTaskTrainer

pytestmark = pytest.mark.slow


def test_multitask_capture_on_smollm2(smollm2):
    lab = Workbench(smollm2.model, smollm2.tokenizer, name="smollm2-135m", fingerprint=smollm2.fingerprint)
    try:
        ts = tasks.load(["topic", "language"])
        tr = MultiTaskTrainer(lab, "joint", list(ts.values()), r=4, steps=2, lr=2e-3, batch_size=4,
                              method="pcgrad", capture_every=1, seed=0, progress=False)
        res = tr.run()
        cos = res.conflicts.cosines(by="module")
        assert set(cos.layer.dropna().unique()) == set(range(30))
        assert set(cos.module) == {f"self_attn.{m}_proj" for m in "qkvo"}
        off = cos[cos.task != cos.task_b]
        assert off.value.dropna().between(-1 - 1e-9, 1 + 1e-9).all()  # NaN: a task absent from a batch
        whole = off.groupby("step").value.apply(lambda v: v.notna().all() or v.isna().all())
        assert whole.all() and off.value.notna().any()  # a step has all cosines or none
        # spaces × steps × modules × T² float64: no gradients kept
        assert res.conflicts.nbytes == len(res.conflicts.spaces) * 2 * 120 * 2 * 2 * 8
        assert res.checkpoints[-1].lineage["tasks"] == ["topic", "language"]
        assert res.history.query("task == 'total'").loss.notna().all()
    finally:
        lab.detach()
