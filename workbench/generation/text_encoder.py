"""Text encoders: task descriptions -> unit vectors, the SG-LoRA condition space (pluggable).

    enc = MiniLMEncoder()                       # the zoo's all-MiniLM-L6-v2 (loaded on first use)
    e = enc.embed(["classify a quote as being about computers or sports"])   # (1, 384), unit rows
    enc = HashingEncoder(dim=256)               # no weights at all: hashed word and bigram counts

Any object with a ``name`` (str), a ``dim`` (int) and ``embed(texts: list[str]) -> (N, dim)`` float32
tensor of unit rows is an encoder (``TextEncoder``): SG-LoRA only compares and averages embeddings.
``encoder_named(name)`` rebuilds the two built-in ones when a saved generator is loaded.

Reference: Li et al., "SG-LoRA: Semantic-Guided LoRA Parameter Generation", arXiv 2509.10535 (a
CLIP text encoder embeds the task descriptions; merging.md §5 asks for a pluggable encoder).
Deviation: the default encoder is the zoo's sentence encoder all-MiniLM-L6-v2 (Reimers & Gurevych,
Sentence-BERT, 2019), not CLIP's text tower: the tasks here are text tasks and no CLIP is in the zoo.
"""

from __future__ import annotations

import hashlib
import re
from typing import Protocol, runtime_checkable

import torch

from workbench.errors import WorkbenchError


@runtime_checkable
class TextEncoder(Protocol):
    """What SG-LoRA needs of an encoder: a name, the embedding size, and unit-row embeddings."""

    name: str
    dim: int

    def embed(self, texts: list[str]) -> torch.Tensor:
        """(N, dim) float32 unit rows for N texts."""
        ...


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str):
        raise WorkbenchError("embed takes a list of strings; wrap one description in [...]")
    texts = list(texts)
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise WorkbenchError("give one or more non-empty descriptions (strings) to embed")
    return texts


class MiniLMEncoder:
    """all-MiniLM-L6-v2 from the zoo (``minilm-l6``): mean-pooled, L2-normalized, 384 dimensions.

    Args:
        zoo_model: an already loaded ``zoo.load("minilm-l6")`` (default: loaded on first ``embed``).
    """

    name = "minilm-l6"
    dim = 384

    def __init__(self, zoo_model=None):
        self._zoo_model = zoo_model

    def embed(self, texts: list[str]) -> torch.Tensor:
        from workbench.zoo import load
        from workbench.zoo.minilm import embed_sentences

        texts = _check_texts(texts)
        if self._zoo_model is None:
            self._zoo_model = load(self.name)
        return embed_sentences(self._zoo_model, texts)  # (N, 384)


class HashingEncoder:
    """Lower-cased words and word bigrams hashed (sha1) into ``dim`` signed buckets, L2-normalized.

    No weights and no download: for tests and for machines without the MiniLM package. Texts that
    share words get a positive cosine; texts with no word in common are near orthogonal.

    Args:
        dim: the embedding size.
    """

    name = "hashing"

    def __init__(self, dim: int = 256):
        if dim < 8:
            raise WorkbenchError(f"HashingEncoder needs dim ≥ 8; got {dim}")
        self.dim = int(dim)

    def embed(self, texts: list[str]) -> torch.Tensor:
        texts = _check_texts(texts)
        out = torch.zeros(len(texts), self.dim)
        for i, text in enumerate(texts):
            words = re.findall(r"[a-z0-9]+", text.lower())
            for token in words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]:
                h = int.from_bytes(hashlib.sha1(token.encode()).digest()[:8], "little")
                out[i, h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
        norms = out.norm(dim=1, keepdim=True)
        if (norms == 0).any():
            raise WorkbenchError("a description has no words (letters or digits) to embed")
        return out / norms  # (N, dim)


def encoder_named(name: str, dim: int) -> TextEncoder:
    """The built-in encoder ``name`` ("minilm-l6" or "hashing") with embeddings of ``dim``."""
    if name == MiniLMEncoder.name and dim == MiniLMEncoder.dim:
        return MiniLMEncoder()
    if name == HashingEncoder.name:
        return HashingEncoder(dim)
    raise WorkbenchError(f"no built-in text encoder {name!r} of {dim} dimensions (built in: 'minilm-l6' "
                         "384, 'hashing' any); pass encoder=<your encoder with that name> to load")
