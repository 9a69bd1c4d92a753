"""Adapter: a LoRA update ΔW = s·B·A for each target module, with its provenance.

Factors follow peft's layout: A is (r, in), B is (out, r), whatever the layer type (GPT-2's Conv1D
stores its weight transposed; the layer wrapper takes care of that, never the Adapter).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from workbench.adapters.params import ParamDelta
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
    """The factors of one module: A (r, in), B (out, r) and alpha, and peft's per-module extras.

    Attributes:
        magnitude: DoRA's learned magnitude m (out,), or None for LoRA. With it the module computes
            W' = diag(m / ‖W + sBA‖_row) (W + sBA) (Liu et al., "DoRA: Weight-Decomposed Low-Rank
            Adaptation", 2024; peft ``use_dora``): the update is not the low-rank product sBA.
        bias: a bias on B (out,) (peft ``lora_bias=True``): the update adds s·b to the output.
        embedding: the module is an ``nn.Embedding`` (peft's ``lora_embedding_A/B``): A is
            (r, num_embeddings), B (embedding_dim, r), and ΔW = sBA is the transpose of the
            embedding matrix's update.
    """

    A: torch.Tensor  # (r, in)
    B: torch.Tensor  # (out, r)
    alpha: float
    magnitude: torch.Tensor | None = None  # (out,) DoRA
    bias: torch.Tensor | None = None  # (out,) lora_bias
    embedding: bool = False

    @property
    def kind(self) -> str:
        """"dora", "lora_bias" or "lora" (plain): what the update is made of."""
        return "dora" if self.magnitude is not None else "lora_bias" if self.bias is not None else "lora"

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
        params: trained base parameters (peft's ``bias``, ``modules_to_save``,
            ``trainable_token_indices``) as deltas by parameter path; see ``workbench.adapters.params``.
        base_copies: base parameters as found in a PEFT file (``params.SavedParam``), by parameter
            path. ``Workbench`` compares each with its base: equal copies are dropped, trained ones
            become ``params``, anything else is refused.
    """

    name: str
    modules: dict[str, LoraFactors]
    scaling: str = "standard"
    base_fingerprint: str | None = None
    lineage: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    params: dict[str, ParamDelta] = field(default_factory=dict, repr=False)
    base_copies: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise WorkbenchError(
                f"adapter name {self.name!r} is not a Python identifier; use letters, digits and _"
            )
        SCALINGS.get(self.scaling)
        if not self.modules:
            raise WorkbenchError(f"adapter {self.name!r} has no modules; give at least one")
        for module, f in self.modules.items():
            check_factors(module, f.A, f.B, source=f"adapter {self.name!r}")
            if f.A.shape[0] < 1:
                raise WorkbenchError(f"adapter {self.name!r}: module {module!r} has rank 0; "
                                     "ranks must be at least 1")
            alpha = f.alpha
            if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not math.isfinite(alpha):
                raise WorkbenchError(f"adapter {self.name!r}: module {module!r} has alpha={alpha!r}; "
                                     "alpha must be a finite number")
            for label, t in (("DoRA magnitude", f.magnitude), ("lora_B bias", f.bias)):
                if t is not None and (t.shape != (f.out_features,) or not torch.isfinite(t).all()):
                    raise WorkbenchError(
                        f"adapter {self.name!r}: module {module!r} {label} has shape {tuple(t.shape)} "
                        f"or non-finite values; it must be ({f.out_features},) and finite")

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
        return sum(f.A.numel() + f.B.numel() + sum(t.numel() for t in (f.magnitude, f.bias) if t is not None)
                   for f in self.modules.values())

    @property
    def kinds(self) -> set[str]:
        """What the modules' updates are made of: {"lora"}, or with "dora" / "lora_bias"."""
        return {f.kind for f in self.modules.values()}

    def delta(self, module: str) -> torch.Tensor:
        """Dense ΔW = s·B·A of one module, (out, in). Materialize one module at a time.

        This is the effective weight update of a LoRA module (a ``lora_bias`` adds s·b to the bias
        besides: see ``bias_delta``). A DoRA module's effective update,
        diag(m/‖W + sBA‖_row)(W + sBA) − W, depends on the base weight W and is not low-rank, so it
        is refused here (``workbench.adapters.dora.effective_delta`` computes it from a base).
        """
        self._refuse_dora(module, "its dense update ΔW")
        f = self.modules[module]
        return self.scale(module) * (f.B @ f.A)

    def factors(self, module: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, s·B): factors whose product is ΔW exactly, for factored geometry (refused for DoRA)."""
        self._refuse_dora(module, "factors whose product is its update")
        f = self.modules[module]
        return f.A, self.scale(module) * f.B

    def bias_delta(self, module: str) -> torch.Tensor | None:
        """The update of the module's bias, s·b (out,), for a ``lora_bias`` module; else None."""
        f = self.modules[module]
        return None if f.bias is None else self.scale(module) * f.bias

    def require_plain(self, purpose: str) -> None:
        """Refuse DoRA, lora_bias and embedding modules for code that reads A and B as the whole update."""
        odd = {m: ("DoRA" if f.magnitude is not None else "lora_bias" if f.bias is not None else "embedding")
               for m, f in self.modules.items() if f.kind != "lora" or f.embedding}
        if self.params:
            odd.update({p: f"trained {d.origin}" for p, d in self.params.items()})
        if odd:
            module, kind = next(iter(odd.items()))
            raise WorkbenchError(
                f"{purpose} takes plain LoRA adapters (the update is s·B·A on linear layers); adapter "
                f"{self.name!r} is {kind} on {module!r} ({len(odd)} such modules). Use it with lab.use, "
                "or pick plain LoRA adapters")

    def _refuse_dora(self, module: str, what: str) -> None:
        if self.modules[module].magnitude is not None:
            raise WorkbenchError(
                f"adapter {self.name!r} is DoRA on {module!r}: its update diag(m/‖W+sBA‖)(W+sBA) − W "
                f"depends on the base weight W and is not the low-rank product sBA, so it has no {what} "
                "without the base. Use it (lab.use), or fold it in (lab.merge_into_base)"
            )

    # -- making new ones -----------------------------------------------------------------------
    def copy(self, name: str | None = None) -> Adapter:
        """A deep copy (new tensors), optionally renamed."""
        return Adapter(
            name=name or self.name,
            modules={
                m: LoraFactors(f.A.detach().clone(), f.B.detach().clone(), f.alpha,
                               _clone(f.magnitude), _clone(f.bias), f.embedding)
                for m, f in self.modules.items()
            },
            scaling=self.scaling,
            base_fingerprint=self.base_fingerprint,
            lineage=dict(self.lineage),
            metadata=dict(self.metadata),
            params={p: d.clone() for p, d in self.params.items()},
        )

    def __repr__(self) -> str:
        ranks = sorted(set(self.ranks.values()))
        r = ranks[0] if len(ranks) == 1 else f"{ranks[0]}..{ranks[-1]}"
        kinds = sorted(self.kinds - {"lora"})
        kind = f", kind={'+'.join(kinds)}" if kinds else ""
        return (
            f"Adapter({self.name!r}, modules={len(self.modules)}, r={r}, scaling={self.scaling!r}{kind}, "
            f"params={self.num_parameters():,}, made_by={self.lineage.get('method', '?')!r})"
        )


def _clone(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().clone()


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
