"""Adapter: a LoRA update ΔW = s·B·A for each target module, with its provenance.

Factors follow peft's layout: A is (r, in), B is (out, r), whatever the layer type (GPT-2's Conv1D
stores its weight transposed; the layer wrapper takes care of that, never the Adapter).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from workbench.errors import WorkbenchError
from workbench.registry import Registry

SCALINGS: Registry[Callable[[float, int], float]] = Registry("scaling rule", flags={
    "rank_stabilized": "s = α/√r: peft's use_rslora=True"})


@SCALINGS.register("standard")
def _standard(alpha: float, r: int) -> float:
    """s = α / r (Hu et al., 2021).

    Reference: Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022.
    """
    return alpha / r


@SCALINGS.register("rslora", flags=("rank_stabilized",))
def _rslora(alpha: float, r: int) -> float:
    """s = α / √r, rank-stabilized LoRA.

    Reference: Kalajdzievski, "A Rank Stabilization Scaling Factor for Fine-Tuning with LoRA", 2023.
    """
    return alpha / math.sqrt(r)


@dataclass
class LoraFactors:
    """The factors of one module: A (r, in), B (out, r) and alpha."""

    A: torch.Tensor  # (r, in)
    B: torch.Tensor  # (out, r)
    alpha: float

    @property
    def r(self) -> int:
        return self.A.shape[0]

    @property
    def in_features(self) -> int:
        return self.A.shape[1]

    @property
    def out_features(self) -> int:
        return self.B.shape[0]


@dataclass
class Adapter:
    """A named LoRA adapter: factors per target module, scaling rule, base fingerprint and lineage.

    Attributes:
        name: the adapter's name in a lab (a Python identifier).
        modules: module path in the base model (e.g. ``model.layers.0.self_attn.q_proj``) -> factors.
            Ranks and alphas may differ between modules.
        scaling: a ``SCALINGS`` name: ``"standard"`` (α/r) or ``"rslora"`` (α/√r).
        base_fingerprint: ``workbench.zoo.fingerprint`` of the base it was made for, if known.
        lineage: how it was made (method, parameters, seed, sources); survives export.
        metadata: free user data (JSON-serializable); survives export.
    """

    name: str
    modules: dict[str, LoraFactors]
    scaling: str = "standard"
    base_fingerprint: str | None = None
    lineage: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise WorkbenchError(
                f"adapter name {self.name!r} is not a Python identifier; use letters, digits and _"
            )
        SCALINGS.get(self.scaling)
        if not self.modules:
            raise WorkbenchError(f"adapter {self.name!r} has no modules; give at least one")
        for module, f in self.modules.items():
            check_factors(module, f.A, f.B, source=f"adapter {self.name!r}")

    # -- what it is ----------------------------------------------------------------------------
    @property
    def targets(self) -> list[str]:
        return list(self.modules)

    @property
    def ranks(self) -> dict[str, int]:
        return {m: f.r for m, f in self.modules.items()}

    def scale(self, module: str) -> float:
        """s for ``module`` under this adapter's scaling rule."""
        f = self.modules[module]
        return SCALINGS.get(self.scaling)(f.alpha, f.r)

    def num_parameters(self) -> int:
        return sum(f.A.numel() + f.B.numel() for f in self.modules.values())

    def delta(self, module: str) -> torch.Tensor:
        """Dense ΔW = s·B·A of one module, (out, in). Materialize one module at a time."""
        f = self.modules[module]
        return self.scale(module) * (f.B @ f.A)

    def factors(self, module: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, s·B): factors whose product is ΔW exactly, for factored geometry."""
        f = self.modules[module]
        return f.A, self.scale(module) * f.B

    # -- making new ones -----------------------------------------------------------------------
    def copy(self, name: str | None = None) -> Adapter:
        """A deep copy (new tensors), optionally renamed."""
        return Adapter(
            name=name or self.name,
            modules={
                m: LoraFactors(f.A.detach().clone(), f.B.detach().clone(), f.alpha)
                for m, f in self.modules.items()
            },
            scaling=self.scaling,
            base_fingerprint=self.base_fingerprint,
            lineage=dict(self.lineage),
            metadata=dict(self.metadata),
        )

    def __repr__(self) -> str:
        ranks = sorted(set(self.ranks.values()))
        r = ranks[0] if len(ranks) == 1 else f"{ranks[0]}..{ranks[-1]}"
        return (
            f"Adapter({self.name!r}, modules={len(self.modules)}, r={r}, scaling={self.scaling!r}, "
            f"params={self.num_parameters():,}, made_by={self.lineage.get('method', '?')!r})"
        )


def check_factors(module: str, A: torch.Tensor, B: torch.Tensor, *, source: str) -> None:
    """Refuse factors with wrong shapes or non-finite values, naming the module and the fix."""
    if A.dim() != 2 or B.dim() != 2:
        raise WorkbenchError(
            f"{source}: module {module!r} needs 2-D factors A (r, in) and B (out, r); "
            f"got A {tuple(A.shape)} and B {tuple(B.shape)}"
        )
    if A.shape[0] != B.shape[1]:
        raise WorkbenchError(
            f"{source}: module {module!r} has A {tuple(A.shape)} and B {tuple(B.shape)}: the rank "
            f"of A (rows, {A.shape[0]}) must equal the rank of B (columns, {B.shape[1]})"
        )
    for label, t in (("A", A), ("B", B)):
        if not torch.isfinite(t).all():
            bad = int((~torch.isfinite(t)).sum())
            raise WorkbenchError(
                f"{source}: module {module!r} factor {label} holds {bad} NaN/Inf values; "
                "the adapter is corrupt (retrain it or re-export it from a healthy copy)"
            )
