"""Each supported kind of peft adapter (plain, rsLoRA, lora_bias, DoRA, embeddings and heads, trained
biases, modules_to_save, trainable tokens, saved base copies) is exact
beyond loading: weighted sums, mixed batches, merge into the base and unmerge (bit for bit), and the
identity merge (one adapter, weight 1: the same logits; peft issue 3761 must not happen here).
"""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel

from tests.adapters.test_peft_matrix import make_with_peft
from tests.adapters.tiny_archs import build, inputs, logits
from workbench import Workbench
from workbench.errors import WorkbenchError

KINDS = ["plain", "rslora_patterns", "lora_bias", "dora", "bias_all", "embedding", "head",
         "bias_all_trained", "modules_to_save", "trainable_tokens"]
TIED = ("embedding", "head", "modules_to_save", "trainable_tokens")  # on GPT-2: its head is tied
ARCHS = ["llama", "gpt2", "qwen2"]


def _lab(arch, kind, tmp_path, names=("a",)) -> Workbench:
    peft_dir = tmp_path / "peft"
    if not peft_dir.exists():
        make_with_peft(arch, kind, peft_dir)
    lab = Workbench(build(arch), name=arch)
    for n in names:
        lab.load_adapter(peft_dir, name=n, check_base=False)
    return lab


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("kind", KINDS)
def test_weighted_sums_and_mixed_batches(arch, kind, tmp_path):
    lab = _lab(arch, kind, tmp_path, names=("a", "b"))
    x = inputs(lab.model)
    base = logits(lab.model, x)
    one = logits(lab.use("a").model, x)
    # two halves of the same update are the update: the weight scales each contribution linearly
    torch.testing.assert_close(logits(lab.use({"a": 0.5, "b": 0.5}).model, x), one, atol=1e-5, rtol=0)
    # a mixed batch gives each row what that row gets alone
    mixed = logits(lab.use(rows=["a", None, "b"]).model, x)
    torch.testing.assert_close(mixed[0], one[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(mixed[1], base[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(mixed[2], one[2], atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("kind", KINDS)
def test_merge_into_base_equals_peft_and_unmerge_restores_bits(arch, kind, tmp_path):
    lab = _lab(arch, kind, tmp_path)
    x = inputs(lab.model)
    before = {k: v.clone() for k, v in lab.model.state_dict().items()}
    used = logits(lab.use("a").model, x)
    if kind == "lora_bias" and arch == "llama":  # Llama's projections have no bias to fold into
        with pytest.raises(WorkbenchError, match="lora_bias on .* no bias to fold it into"):
            lab.merge_into_base("a")
        assert all(torch.equal(lab.model.state_dict()[k], v) for k, v in before.items())
        return
    if kind in TIED and arch == "gpt2":  # GPT-2's head is tied to its embeddings
        with pytest.raises(WorkbenchError, match=r"shares its weight with .* \(tied embeddings\)"):
            lab.merge_into_base("a")
        assert all(torch.equal(lab.model.state_dict()[k], v) for k, v in before.items())
        return
    lab.merge_into_base("a")
    merged = logits(lab.model, x)
    torch.testing.assert_close(merged, used, atol=1e-5, rtol=0)
    peft_merged = PeftModel.from_pretrained(build(arch), tmp_path / "peft").merge_and_unload().eval()
    torch.testing.assert_close(merged, logits(peft_merged, x), atol=1e-5, rtol=0)
    lab.unmerge()
    after = lab.model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items()), "unmerge must restore every bit"


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("kind", KINDS)
def test_identity_merge_keeps_the_logits(arch, kind, tmp_path):
    """merge([a], weights=[1]) is a: rsLoRA scaling, lora_bias and patterns survive the merge."""
    lab = _lab(arch, kind, tmp_path)
    x = inputs(lab.model)
    one = logits(lab.use("a").model, x)
    if kind == "dora":
        with pytest.raises(WorkbenchError, match=r"DoRA: its update .* not the low-rank product"):
            lab.merge(["a"], "task_arithmetic", [1.0], name="m")
        assert set(lab.adapters) == {"a"}
        return
    for method in ("task_arithmetic", "cat"):
        lab.merge(["a"], method, [1.0], name=f"m_{method}")
        torch.testing.assert_close(logits(lab.use(f"m_{method}").model, x), one, atol=1e-5, rtol=0)


def test_two_dora_adapters_merged_in_turn_unmerge_exactly(tmp_path):
    """Unmerging one of two merged DoRA adapters removes exactly what its merge added."""
    lab = _lab("llama", "dora", tmp_path, names=("a", "b"))
    x = inputs(lab.model)
    before = {k: v.clone() for k, v in lab.model.state_dict().items()}
    lab.merge_into_base("a")
    only_a = logits(lab.model, x)
    lab.merge_into_base("b")
    lab.unmerge("b")
    torch.testing.assert_close(logits(lab.model, x), only_a, atol=1e-6, rtol=0)
    lab.unmerge("a")
    assert all(torch.equal(lab.model.state_dict()[k], v) for k, v in before.items())


def test_dora_geometry_is_refused_with_the_reason(tmp_path):
    from workbench.analysis.angles import angles

    lab = _lab("llama", "dora", tmp_path, names=("a", "b"))
    with pytest.raises(WorkbenchError, match="DoRA.*depends on the base weight"):
        angles([lab.adapters["a"], lab.adapters["b"]])
    with pytest.raises(WorkbenchError, match="DoRA.*lab.merge_into_base"):
        lab.adapters["a"].delta(next(iter(lab.adapters["a"].modules)))
