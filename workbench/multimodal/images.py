"""Bring images into the form every vision encoder of the zoo takes: (B, 3, S, S) float in [0, 1].

Documented conversions (everything else is a clear error):
    * uint8 images are divided by 255; float images must already lie in [0, 1];
    * grayscale (H, W) or one channel is repeated to RGB; (H, W, 3) channels-last is transposed;
    * any size is resized (bilinear, antialiased) to ``size`` × ``size``.
Refused: 2 or 4+ channels (drop the alpha channel of RGBA yourself), empty images, NaN/Inf values,
float values outside [0, 1] (they look like 0-255 images: divide by 255).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from workbench.errors import WorkbenchError


def _one(image, i: int) -> torch.Tensor:
    """One image as (3, H, W) float in [0, 1]."""
    t = torch.as_tensor(np.asarray(image)) if not torch.is_tensor(image) else image
    if t.dim() == 2:
        t = t[None]
    elif t.dim() == 3 and t.shape[-1] in (1, 3) and t.shape[0] not in (1, 3):
        t = t.permute(2, 0, 1)  # (H, W, C) -> (C, H, W)
    if t.dim() != 3:
        raise WorkbenchError(f"image {i} has shape {tuple(t.shape)}; give (H, W), (C, H, W) or (H, W, C)")
    if t.shape[0] not in (1, 3):
        raise WorkbenchError(
            f"image {i} has {t.shape[0]} channels; the encoder takes grayscale (1) or RGB (3). "
            "Drop an alpha channel with image[..., :3] (or image[:3])"
        )
    if t.shape[1] == 0 or t.shape[2] == 0:
        raise WorkbenchError(f"image {i} is empty ({tuple(t.shape)})")
    if t.dtype == torch.uint8:
        t = t.float() / 255.0
    elif t.is_floating_point():
        t = t.float()
        if not torch.isfinite(t).all():
            raise WorkbenchError(f"image {i} holds NaN or Inf values")
        if t.min() < -1e-3 or t.max() > 1 + 1e-3:
            raise WorkbenchError(
                f"image {i} has values in [{float(t.min()):.3g}, {float(t.max()):.3g}]; float images "
                "must lie in [0, 1] (divide 0-255 images by 255, or pass them as uint8)"
            )
    else:
        raise WorkbenchError(f"image {i} has dtype {t.dtype}; give uint8 (0-255) or float (0-1)")
    return t.expand(3, -1, -1) if t.shape[0] == 1 else t


def prepare_images(images, size: int, multiple: int = 1) -> torch.Tensor:
    """A batch (B, 3, size, size) float in [0, 1] from images of any of the accepted forms.

    Args:
        images: a sequence of images, or one tensor (B, H, W) / (B, C, H, W).
        size: the side the encoder gets.
        multiple: ``size`` must be a multiple of it (EfficientNet: 32).
    """
    if size < 1 or size % multiple:
        raise WorkbenchError(f"image size {size} must be a positive multiple of {multiple} for this encoder")
    if torch.is_tensor(images) or isinstance(images, np.ndarray):
        images = [images] if images.ndim == 2 else list(images)  # a 3-d or 4-d array is a batch
    if not isinstance(images, Sequence) or not len(images):
        raise WorkbenchError("prepare_images needs at least one image")
    out = []
    for i, image in enumerate(images):
        t = _one(image, i)
        if tuple(t.shape[1:]) != (size, size):
            t = F.interpolate(t[None], size=(size, size), mode="bilinear", antialias=True,
                              align_corners=False)[0].clamp(0, 1)
        out.append(t)
    return torch.stack(out)  # (B, 3, size, size)
