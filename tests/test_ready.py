"""The shipped ready adapters load on SmolLM2 and beat the base model on their own task."""

from __future__ import annotations

import pytest

from workbench import Workbench, ready, relative_to_base, tasks


def test_every_ready_adapter_is_shipped_as_peft():
    from workbench.adapters import read_peft

    for name in ready.NAMES:
        a = read_peft(ready.path(name))
        assert a.lineage["method"] == "train_lora" and a.lineage["tasks"] == [name]
        assert set(a.ranks.values()) == {8} and len(a.modules) == 4 * 30


@pytest.mark.reproduce  # full eval splits of 4 tasks (250 s on an idle 2-core machine): make reproduce-check
def test_ready_adapters_beat_the_base_on_their_own_task(smollm2):
    lab = Workbench(smollm2.model, smollm2.tokenizer, name="smollm2-135m",
                    fingerprint=smollm2.fingerprint)
    try:
        ready.load_all(lab)  # refuses adapters made for another base (fingerprint check)
        ts = tasks.load(ready.NAMES)
        rows = [lab.evaluate([None, n], ts[n], progress=False) for n in ready.NAMES]
        import pandas as pd

        gains = relative_to_base(pd.concat(rows))
        print(gains[["adapter", "task", "metric", "base", "value", "gain"]].to_string())
        assert (gains.gain > 0).all(), gains
    finally:
        lab.detach()
