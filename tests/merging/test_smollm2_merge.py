"""Slow: merging two ready adapters on the real SmolLM2; the export loads in peft with the same logits."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel

from workbench import Workbench, ready


@pytest.mark.slow
def test_smollm2_ties_merge_exports_to_peft(smollm2, tmp_path):
    lab = Workbench(smollm2.model, smollm2.tokenizer, name="smollm2-135m", fingerprint=smollm2.fingerprint)
    try:
        ready.load_all(lab, ["arithmetic", "topic"])
        m = lab.merge(["arithmetic", "topic"], method="ties", weights=[1.0, 1.0], density=0.2, name="m")
        assert 0 < lab.last_merge.total_error < 1
        x = lab.encode(["What is 17 + 25?", "Which topic is this quote about: 'Love is patient'?"])
        with lab.using("m"):
            ours = lab.run(x)[0].logits
        lab.save_adapter(m, tmp_path / "m")
        lab.detach()  # give peft the plain model
        peft_model = PeftModel.from_pretrained(smollm2.model, tmp_path / "m").eval()
        with torch.no_grad():
            theirs = peft_model(**x).logits
        peft_model.unload()
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)
        config = json.loads((tmp_path / "m" / "adapter_config.json").read_text())
        lineage = config["lora_workbench"]["lineage"]
        assert [s["name"] for s in lineage["merge"]["sources"]] == ["arithmetic", "topic"]
    finally:
        lab.detach()
