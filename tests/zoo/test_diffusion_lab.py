"""The lab wraps the SceneUNet's attention projections like any other model's linear modules."""

from __future__ import annotations

import torch

from workbench import Workbench
from workbench.zoo import diffusion as D

TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def test_adapters_on_the_unet_attention_projections():
    torch.manual_seed(0)
    model = D.SceneUNet(D.SceneUNet.CONFIGS["tiny"], text_dim=16).eval()
    x, t = torch.randn(2, 1, 28, 56), torch.tensor([5, 600])
    states, mask = torch.randn(2, 6, 16), torch.ones(2, 6, dtype=torch.bool)
    with torch.no_grad():
        base = model(x, t, states, mask)
    lab = Workbench(model, None, name="scene-unet-tiny")
    adapter = lab.new_adapter("style", r=2, targets=TARGETS)
    # self- and cross-attention (attn1, attn2) of each of the 4 transformer blocks × 4 projections
    assert len(lab.layers) == 32
    assert all(".attn1." in p or ".attn2." in p for p in lab.layers)
    for f in adapter.modules.values():
        f.B.data.normal_(0, 0.5)  # a fresh LoRA has B = 0; give it an effect
    with torch.no_grad():
        lab.use("style")
        adapted = model(x, t, states, mask)
        with D.capture_cross_attention(model) as rec:  # the capture reads through the wrapped projections
            assert torch.allclose(model(x, t, states, mask), adapted, atol=1e-5)
        assert rec.maps(steps=1, grid=(14, 28)).shape == (2, 1, 6, 7, 14)
        lab.use(None)
        assert not torch.allclose(adapted, base, atol=1e-4)
        assert torch.allclose(model(x, t, states, mask), base, atol=1e-6)
    # merging and geometry take the UNet's adapters like a language model's
    other = lab.new_adapter("pose", r=2, targets=TARGETS, seed=1)
    for f in other.modules.values():
        f.B.data.normal_(0, 0.5)
    merged = lab.merge(["style", "pose"], method="task_arithmetic", weights=[1.0, 1.0])
    assert set(merged.modules) == set(adapter.modules)
    from workbench import analysis
    angles = analysis.angles([adapter, other])
    assert len(angles) > 0
    lab.detach()
    assert not lab.layers
