"""The peft matrix: peft makes an adapter for each LoraConfig variant on tiny models of eight
architectures; the workbench loads it with logits equal to peft's (1e-5) and saves a copy that peft
reloads equal, or refuses it naming the field. Nothing in between: never a silent difference.
"""

from __future__ import annotations

import json
import re
import warnings

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from tests.adapters.tiny_archs import ARCHS, EMBED, HEAD, MLP, QV, build, inputs, logits
from workbench import Workbench
from workbench.errors import WorkbenchError

warnings.filterwarnings("ignore", module="peft")


def _has_bias(arch: str) -> bool:
    return any(n.endswith("bias") for n, _ in build(arch).named_parameters())


# variant -> (LoraConfig kwargs given the arch, what we expect: "exact" or a refusal regex)
VARIANTS = {
    "plain": (lambda a: dict(target_modules=QV[a]), "exact"),
    "rslora_patterns": (lambda a: dict(target_modules=[*QV[a], MLP[a]], use_rslora=True, lora_alpha=6,
                                       rank_pattern={QV[a][0]: 2}, alpha_pattern={MLP[a]: 11}), "exact"),
    "regex_targets": (lambda a: dict(target_modules=rf".*\.({'|'.join(QV[a])})$"), "exact"),
    "all_linear": (lambda a: dict(target_modules="all-linear"), "exact"),
    "bias_lora_only": (lambda a: dict(target_modules=QV[a], bias="lora_only"), "exact"),
    "bias_all": (lambda a: dict(target_modules=QV[a], bias="all"), "exact"),
    "bias_all_trained": (lambda a: dict(target_modules=QV[a], bias="all"), "exact"),
    "bias_lora_only_trained": (lambda a: dict(target_modules=QV[a], bias="lora_only"), "exact"),
    "lora_bias": (lambda a: dict(target_modules=QV[a], lora_bias=True), "exact"),
    "dora": (lambda a: dict(target_modules=QV[a], use_dora=True), "exact"),
    "dora_rslora_mlp": (lambda a: dict(target_modules=[*QV[a], MLP[a]], use_dora=True, use_rslora=True),
                        "exact"),
    "embedding": (lambda a: dict(target_modules=[EMBED[a], *QV[a]]), "exact"),
    "head": (lambda a: dict(target_modules=[HEAD[a], *QV[a]]), "exact"),
    "modules_to_save": (lambda a: dict(target_modules=QV[a], modules_to_save=[HEAD[a]]), "exact"),
    "trainable_tokens": (lambda a: dict(target_modules=QV[a], trainable_token_indices=[1, 2]), "exact"),
    "raw_pissa": (lambda a: dict(target_modules=QV[a], init_lora_weights="pissa"),
                  r"init_lora_weights='pissa'.*path_initial_model_for_weight_conversion"),
    "raw_olora": (lambda a: dict(target_modules=QV[a], init_lora_weights="olora"),
                  r"init_lora_weights='olora'.*path_initial_model_for_weight_conversion"),
    "alora": (lambda a: dict(target_modules=QV[a], alora_invocation_tokens=[5, 6], task_type="CAUSAL_LM"),
              r"alora_invocation_tokens=\[5, 6\] is not supported: aLoRA"),
    "layer_replication": (lambda a: dict(target_modules=QV[a]), r"layer_replication=.* is not supported"),
}
FAST_ARCHS = ["llama", "gpt2", "bert"]  # every variant runs here; the rest run a core subset
CORE = ["plain", "rslora_patterns", "bias_all_trained", "lora_bias", "dora", "embedding", "head",
        "modules_to_save", "trainable_tokens", "raw_pissa"]
CASES = [(a, v) for a in ARCHS for v in VARIANTS if a in FAST_ARCHS or v in CORE]


def make_with_peft(arch: str, variant: str, out) -> PeftModel:
    """peft builds and saves the adapter (factors and extras randomized); returns peft's model."""
    kwargs = VARIANTS[variant][0](arch)
    kwargs.setdefault("init_lora_weights", False)
    kwargs["fan_in_fan_out"] = arch == "gpt2"
    if arch == "bert" and variant == "alora":
        kwargs.pop("task_type")
    with torch.random.fork_rng(devices=[]):  # peft's own initialization draws from the global RNG
        torch.manual_seed(0)
        model = get_peft_model(build(arch), LoraConfig(**{"r": 4, "lora_alpha": 8, **kwargs})).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            saved_bias = "base_layer.bias" in name if "lora_only" in variant else name.endswith("bias")
            trained = (variant.endswith("_trained") and saved_bias and "lora_" not in name) \
                or "modules_to_save" in name or "trainable_tokens" in name
            if "lora_" in name or trained:  # DoRA magnitudes and lora_B biases must matter
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
    model.save_pretrained(out)
    if variant == "layer_replication":  # peft builds it only for some models; the config is what counts
        cfg = json.loads((out / "adapter_config.json").read_text())
        (out / "adapter_config.json").write_text(json.dumps({**cfg, "layer_replication": [[0, 2], [1, 2]]}))
    return model


def expected(arch: str, variant: str) -> str:
    e = VARIANTS[variant][1]
    return e(arch) if callable(e) else e


@pytest.mark.parametrize(("arch", "variant"), CASES)
def test_peft_matrix(arch, variant, tmp_path):
    if arch == "bert" and variant == "alora":
        pytest.skip("aLoRA needs a causal LM")
    peft_model = make_with_peft(arch, variant, tmp_path / "peft")
    lab = Workbench(build(arch), name=arch)
    want = expected(arch, variant)
    if want != "exact":
        before = {k: v.clone() for k, v in lab.model.state_dict().items()}
        with pytest.raises(WorkbenchError, match=want):
            lab.load_adapter(tmp_path / "peft", name="a")
        assert not lab.adapters and not lab.layers
        assert all(torch.equal(v, before[k]) for k, v in lab.model.state_dict().items())
        return
    lab.load_adapter(tmp_path / "peft", name="a")
    x = inputs(lab.model)
    theirs = logits(peft_model, x)
    base = logits(lab.model, x)
    lab.use("a")
    ours = logits(lab.model, x)
    assert (theirs - base).abs().max() > 1e-4, "the adapter must change the output to test anything"
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)

    lab.save_adapter("a", tmp_path / "ours")  # and back: peft reloads our copy equal
    again = PeftModel.from_pretrained(build(arch), tmp_path / "ours").eval()
    torch.testing.assert_close(logits(again, x), theirs, atol=1e-5, rtol=0)


def test_every_refusal_names_its_field_and_fix(tmp_path):
    """A refusal message carries the field (or tensor) and a fix, not only 'unsupported'."""
    for variant in ("raw_pissa", "raw_olora", "alora", "layer_replication"):
        make_with_peft("llama", variant, tmp_path / variant)
        with pytest.raises(WorkbenchError) as e:
            Workbench(build("llama")).load_adapter(tmp_path / variant)
        msg = str(e.value)
        assert re.search(r"peft|merge|convert|retrain", msg), msg
