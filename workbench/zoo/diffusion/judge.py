"""The judge: a small CNN classifier of the ten Fashion-MNIST classes, run on each item's region.

    judge = Judge()
    logits = judge(items)                    # (B, 10) for (B, 1, 28, 28) items in [-1, 1]
    classes = judge.regions(images)          # (B, 2) predicted class of the left and right half

It scores generated scenes: does each half show the item its caption names (presence), or the other
item's class (confusion)? Its accuracy on real test items is measured by ``make diffusion`` and
stored with its weights (``extra["test_accuracy"]``).

Reference: a LeNet-style classifier (LeCun et al., 1998); the per-region use follows the concept
presence checks of LoRA-Composer (Yang et al., arXiv 2403.11627) with a classifier in place of CLIP.
"""

from __future__ import annotations

import torch
from torch import nn

ITEM = 28
N_CLASSES = 10


class Judge(nn.Module):
    """Three conv layers and a linear head (14,378 parameters with the default width).

    Args:
        width: channels of the first conv block (the second has twice as many).
        n_classes: output classes.
    """

    def __init__(self, width: int = 16, n_classes: int = N_CLASSES):
        super().__init__()
        self.config = {"width": width, "n_classes": n_classes}
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),            # (B, w, 14, 14)
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),    # (B, 2w, 7, 7)
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
            nn.Flatten(), nn.Linear(2 * width, n_classes),
        )

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """(B, 1, 28, 28) items in [-1, 1] -> (B, n_classes) logits."""
        return self.net(items)

    @torch.no_grad()
    def regions(self, images: torch.Tensor) -> torch.Tensor:
        """Predicted class of each 28-column half of (B, 1, 28, 56) scenes -> (B, 2)."""
        halves = torch.stack([images[..., :ITEM], images[..., ITEM:2 * ITEM]], dim=1)  # (B, 2, 1, 28, 28)
        return self(halves.flatten(0, 1)).argmax(-1).view(images.shape[0], 2)
