"""fp32, bf16 and fp16 bases (on CUDA when there is one): loading, use and merging match peft run in
the same dtype; adapters land on the model's device; unmerge restores every bit in every dtype.

Factors stay float32 on a half-precision base, as peft keeps them (``autocast_adapter_dtype=True``):
the update is computed in float32 and added to the base output once, rounded to the base dtype.
"""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel

from tests.adapters.test_peft_matrix import make_with_peft
from tests.adapters.tiny_archs import build, inputs, logits
from workbench import Workbench

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = {"fp32": (torch.float32, 1e-5), "bf16": (torch.bfloat16, 3e-2), "fp16": (torch.float16, 5e-3)}
KINDS = ["plain", "dora", "lora_bias", "embedding", "bias_all_trained", "modules_to_save",
         "trainable_tokens"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("dtypes")
    out = {}
    for arch in ("qwen2",):  # Qwen2: biased q/k/v (lora_bias merges), untied head
        for kind in KINDS:
            out[arch, kind] = root / f"{arch}-{kind}"
            make_with_peft(arch, kind, out[arch, kind])
    return out


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("arch", ["qwen2"])
def test_use_and_merge_match_peft_in_each_dtype(saved, arch, kind, dtype):
    dt, tol = DTYPES[dtype]
    path = saved[arch, kind]
    lab = Workbench(build(arch, dt, DEVICE), name=arch)
    a = lab.load_adapter(path, name="a")
    assert all(p.device.type == DEVICE for f in a.modules.values() for p in (f.A, f.B))
    x = inputs(lab.model)
    before = {k: v.clone() for k, v in lab.model.state_dict().items()}
    ours = logits(lab.use("a").model, x)
    theirs = logits(PeftModel.from_pretrained(build(arch, dt, DEVICE), path).eval(), x)
    torch.testing.assert_close(ours, theirs, atol=tol, rtol=0)
    lab.merge_into_base("a")
    torch.testing.assert_close(logits(lab.model, x), ours, atol=tol, rtol=0)
    lab.unmerge()
    assert all(torch.equal(lab.model.state_dict()[k], v) for k, v in before.items())
    assert lab.model.dtype == dt


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_new_adapters_follow_the_model(dtype):
    dt, _ = DTYPES[dtype]
    lab = Workbench(build("llama", dt, DEVICE), name="llama")
    a = lab.new_adapter("n", r=2, targets="attention", init="random")
    assert all(f.A.device.type == DEVICE and f.A.dtype == torch.float32 for f in a.modules.values())
    x = inputs(lab.model)
    base = logits(lab.model, x)
    out = lab.use("n").model(**x).logits
    assert out.dtype == dt and torch.isfinite(out).all()
    assert (out.float() - base).abs().max() > 0
