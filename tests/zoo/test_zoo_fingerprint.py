"""fingerprint: stable across loads, sensitive to weights, blind to adapter wrapping."""

import re

import torch
from torch import nn

from workbench.zoo import fingerprint, load


class Wrapped(nn.Module):
    """Stands in for an adapter layer: keeps the original module as ``base_layer``."""

    def __init__(self, base: nn.Linear, rank: int = 2):
        super().__init__()
        self.base_layer = base
        self.lora_A = nn.Parameter(torch.randn(rank, base.in_features))  # adapter's own tensors
        self.lora_B = nn.Parameter(torch.randn(base.out_features, rank))

    def forward(self, x):
        return self.base_layer(x)


def two_layers() -> nn.Sequential:
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return model


def test_format_and_stability():
    fp = fingerprint(two_layers())
    assert re.fullmatch(r"sha256:[0-9a-f]{16}", fp)
    assert fingerprint(two_layers()) == fp


def test_changes_with_one_weight():
    model = two_layers()
    before = fingerprint(model)
    with torch.no_grad():
        model[2].weight[0, 0] += 1e-3
    assert fingerprint(model) != before


def test_changes_with_a_large_tensor_update():
    """A low-rank update merged into a tensor larger than the sample is still seen."""
    model = nn.Sequential(nn.Linear(300, 200))  # 60,000 values > 4096 samples
    before = fingerprint(model)
    with torch.no_grad():
        model[0].weight += 1e-4 * torch.randn(200, 1) @ torch.randn(1, 300)
    assert fingerprint(model) != before


def test_changes_with_dtype_and_shape():
    model = two_layers()
    assert fingerprint(model.to(torch.float64)) != fingerprint(two_layers())
    assert fingerprint(nn.Linear(8, 16)) != fingerprint(nn.Linear(16, 8))


def test_wrapping_in_base_layer_is_invisible():
    model = two_layers()
    before = fingerprint(model)
    model[0] = Wrapped(model[0])
    model[2] = Wrapped(model[2], rank=3)
    assert any(".base_layer." in name for name in model.state_dict())
    assert fingerprint(model) == before


def test_wrapping_the_root_and_peft_prefix():
    model = two_layers()
    before = fingerprint(model)
    outer = nn.Module()
    outer.base_model = nn.Module()
    outer.base_model.model = model  # peft's PeftModel names: base_model.model.<name>
    assert fingerprint(outer) == before


def test_wrapped_tiny_gpt2_matches_unwrapped():
    """Conv1D modules of GPT-2 wrapped by an adapter-like layer keep the fingerprint."""
    zoo_model = load("tiny-gpt2")
    attn = zoo_model.model.transformer.h[0].attn

    class WrappedConv(nn.Module):
        def __init__(self, base):
            super().__init__()
            self.base_layer = base
            self.scale = nn.Parameter(torch.ones(1))

    attn.c_attn = WrappedConv(attn.c_attn)
    assert fingerprint(zoo_model.model) == zoo_model.fingerprint


def test_fingerprint_includes_buffers():
    model = nn.BatchNorm1d(4)
    before = fingerprint(model)
    model.running_mean += 1
    assert fingerprint(model) != before
