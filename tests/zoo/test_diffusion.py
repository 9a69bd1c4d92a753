"""The composition lab's diffusion parts on the tiny SceneUNet: sampler, attention capture, judge, files."""

from __future__ import annotations

import pytest
import torch

from workbench.errors import WorkbenchError
from workbench.zoo import diffusion as D

T = 6  # caption tokens


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return D.SceneUNet(D.SceneUNet.CONFIGS["tiny"], text_dim=16).eval()


def _text(B=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    states = torch.randn(B, T, 16, generator=g)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[:, -1] = False  # padding: no attention there
    return states, mask


def test_unet_shapes_and_bad_input(model):
    states, mask = _text()
    eps = model(torch.randn(2, 1, 28, 56), torch.tensor([10, 500]), states, mask)
    assert eps.shape == (2, 1, 28, 56)
    with pytest.raises(WorkbenchError, match="28, 56"):
        model(torch.randn(2, 1, 28, 28), torch.tensor([1, 2]), states, mask)
    assert 0 < model.n_parameters() < 100_000


def test_ddim_sampler_is_deterministic_for_a_seed(model):
    states, mask = _text()
    a = D.ddim_sample(model, states, mask, steps=3, seed=7)
    b = D.ddim_sample(model, states, mask, steps=3, seed=7)
    c = D.ddim_sample(model, states, mask, steps=3, seed=8)
    assert a.shape == (2, 1, 28, 56) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= -1 and a.max() <= 1
    uncond = (torch.zeros(1, T, 16), mask[:1])
    g = D.ddim_sample(model, states, mask, steps=3, seed=7, guidance=3.0, uncond=uncond)
    assert torch.equal(g, D.ddim_sample(model, states, mask, steps=3, seed=7, guidance=3.0, uncond=uncond))
    with pytest.raises(WorkbenchError, match="uncond"):
        D.ddim_sample(model, states, mask, steps=2, guidance=2.0)


def test_denoising_loss_trains_through_the_loop(model):
    from workbench.training import Loop, Shuffled
    from workbench.training.module_loss import ModuleLoss, training_session

    net = D.SceneUNet(D.SceneUNet.CONFIGS["tiny"], text_dim=16)
    images = torch.rand(8, 1, 28, 56) * 2 - 1
    states, mask = _text(8)
    before = [p.detach().clone() for p in net.parameters()]
    objective = ModuleLoss(net, lambda ids: D.denoising_loss(net, images[ids], states[ids], mask[ids]))
    loop = Loop(list(net.parameters()), objective, Shuffled([(0, i) for i in range(8)], seed=0),
                session=lambda: training_session(net), label="tiny", steps=2, lr=1e-3, batch_size=4, seed=0,
                progress=False)
    loop.run()
    assert len(loop.history()) == 2 and loop.history().loss.notna().all()
    assert any(not torch.equal(a, p) for a, p in zip(before, net.parameters(), strict=True))


def test_capture_returns_tidy_maps_and_leaves_the_model_as_it_was(model):
    states, mask = _text()
    old = {n: type(m.processor) for n, m in D.attention.cross_attention_layers(model).items()}
    plain = D.ddim_sample(model, states, mask, steps=2, seed=3)
    with D.capture_cross_attention(model) as rec:
        captured = D.ddim_sample(model, states, mask, steps=2, seed=3)
    assert torch.allclose(plain, captured, atol=1e-5)  # recording does not change what the model computes
    assert {n: type(m.processor) for n, m in D.attention.cross_attention_layers(model).items()} == old
    maps = rec.maps(steps=2, grid=(14, 28))
    assert maps.shape == (2, 2, T, 7, 14)  # (B, steps, tokens, h, w)
    assert torch.allclose(maps.sum(2), torch.ones(2, 2, 7, 14), atol=1e-5)  # each cell's attention sums to 1
    assert maps[:, :, -1].abs().max() < 1e-6  # the padding token gets none
    with pytest.raises(WorkbenchError, match="steps × layers"):
        rec.maps(steps=3, grid=(14, 28))
    with pytest.raises(WorkbenchError, match="no cross-attention"):
        with D.capture_cross_attention(torch.nn.Linear(2, 2)):
            pass


def test_sample_with_attention_keeps_the_conditional_half_under_guidance(model):
    states, mask = _text()
    uncond = (torch.zeros(1, T, 16), mask[:1])
    images, maps = D.sample_with_attention(model, states, mask, steps=2, seed=3, guidance=2.0, uncond=uncond)
    assert images.shape == (2, 1, 28, 56) and maps.shape == (2, 2, T, 7, 14)
    with D.capture_cross_attention(model) as rec:
        D.ddim_sample(model, states, mask, steps=2, seed=3, guidance=2.0, uncond=uncond)
    assert torch.equal(rec.maps(steps=2, grid=(14, 28), keep="last"), maps)
    both = rec.maps(steps=2, grid=(14, 28), keep="all")  # [uncond; cond] rows
    assert both.shape[0] == 4 and torch.equal(both[2:], maps) and not torch.equal(both[:2], maps)


def test_judge_forward_shapes():
    judge = D.Judge()
    assert judge(torch.randn(5, 1, 28, 28)).shape == (5, 10)
    regions = judge.regions(torch.randn(3, 1, 28, 56))
    assert regions.shape == (3, 2) and regions.dtype == torch.long


def test_weights_round_trip(tmp_path, model):
    states, mask = _text()
    path = D.save_model(model, tmp_path / "unet.safetensors", extra={"steps": 3})
    loaded, extra = D.load_unet(path)
    assert extra == {"steps": 3} and list(tmp_path.iterdir()) == [path]  # no temporary file left behind
    x, t = torch.randn(2, 1, 28, 56), torch.tensor([3, 900])
    with torch.no_grad():
        assert torch.equal(model(x, t, states, mask), loaded(x, t, states, mask))
    judge = D.Judge(width=4)
    D.save_model(judge, tmp_path / "judge.safetensors", extra={"test_accuracy": 0.5})
    back, info = D.load_shipped("judge", tmp_path)
    one = torch.ones(1, 1, 28, 28)
    assert info["test_accuracy"] == 0.5 and torch.equal(back(one), judge(one))
    with pytest.raises(WorkbenchError, match="make diffusion"):
        D.load_unet(tmp_path / "absent.safetensors")
    with pytest.raises(WorkbenchError, match="choose one of"):
        D.load_shipped("vae", tmp_path)
