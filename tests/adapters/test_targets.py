"""Target presets resolve to the right modules on Llama, GPT-2 and BERT."""

from __future__ import annotations

import pytest

from tests.conftest import tiny_lab
from workbench.adapters import resolve_targets
from workbench.errors import WorkbenchError

EXPECTED = {  # (preset, model) -> module-name endings of layer 0
    ("attention", "tiny-llama"): {"q_proj", "k_proj", "v_proj", "o_proj"},
    ("mlp", "tiny-llama"): {"gate_proj", "up_proj", "down_proj"},
    ("attention", "tiny-gpt2"): {"attn.c_attn", "attn.c_proj"},
    ("mlp", "tiny-gpt2"): {"mlp.c_fc", "mlp.c_proj"},
    ("attention", "tiny-bert"): {"self.query", "self.key", "self.value", "attention.output.dense"},
    ("mlp", "tiny-bert"): {"intermediate.dense", "0.output.dense"},
}


@pytest.mark.parametrize(("preset", "model"), list(EXPECTED))
def test_presets(preset, model):
    lab = tiny_lab(model)
    paths = resolve_targets(lab.model, preset)
    first = [p for p in paths if ".0." in p]
    want = EXPECTED[preset, model]
    assert {next(e for e in want if p.endswith(e)) for p in first} == want
    assert len(first) == len(EXPECTED[preset, model])
    assert len(paths) == 2 * len(first)  # two layers


def test_all_linear_skips_the_output_head_and_regex_works():
    lab = tiny_lab()
    paths = resolve_targets(lab.model, "all-linear")
    assert "lm_head" not in paths and len(paths) == 2 * 7
    assert resolve_targets(lab.model, [r"model\.layers\.1\..*_proj"]) == [p for p in paths if ".1." in p]
    with pytest.raises(WorkbenchError, match="matches no linear module"):
        resolve_targets(lab.model, ["nothing_here"])
