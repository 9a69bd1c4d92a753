"""New adapters: factor initializations behind a registry (PiSSA & co. join later as entries)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from workbench.adapters.adapter import Adapter, LoraFactors
from workbench.errors import WorkbenchError
from workbench.registry import Registry

# init(shape_out, shape_in, r, generator) -> (A (r, in), B (out, r))
INITS: Registry[Callable[[int, int, int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]]
INITS = Registry("initialization")


LORA = "Hu et al., LoRA: Low-Rank Adaptation of Large Language Models, ICLR 2022"


@INITS.register("lora", reference=LORA + " (peft's init_lora_weights=True)")
def _lora(out_f: int, in_f: int, r: int, g: torch.Generator):
    """A ~ Kaiming-uniform (a=√5, as peft and nn.Linear), B = 0: the update starts at zero."""
    bound = 1.0 / math.sqrt(in_f)  # kaiming_uniform_(a=sqrt(5)) on a (r, in) matrix
    A = (torch.rand(r, in_f, generator=g) * 2 - 1) * bound
    return A, torch.zeros(out_f, r)


@INITS.register("gaussian", reference=LORA + " (peft's init_lora_weights='gaussian')")
def _gaussian(out_f: int, in_f: int, r: int, g: torch.Generator):
    """A ~ N(0, 1/r), B = 0 (peft's ``init_lora_weights="gaussian"``)."""
    return torch.randn(r, in_f, generator=g) / r, torch.zeros(out_f, r)


@INITS.register("random", reference=LORA + " (factors of its shapes; B ≠ 0 is ours, for tests)")
def _random(out_f: int, in_f: int, r: int, g: torch.Generator):
    """A and B both random (B ≠ 0): a non-trivial update, for tests and demonstrations."""
    bound = 1.0 / math.sqrt(in_f)
    A = (torch.rand(r, in_f, generator=g) * 2 - 1) * bound
    return A, torch.randn(out_f, r, generator=g) * 0.02


def new_adapter(
    name: str,
    shapes: dict[str, tuple[int, int]],
    *,
    r: int | dict[str, int] = 8,
    alpha: float | None = None,
    scaling: str = "standard",
    init: str = "lora",
    seed: int = 0,
    base_fingerprint: str | None = None,
    lineage: dict | None = None,
) -> Adapter:
    """An adapter over modules with ``shapes`` (path -> (out, in)), ranks ``r`` (int or per module).

    ``alpha`` defaults to 2·r (a common choice: s = 2 with the standard rule). Deterministic for a seed.
    """
    _check_ranks(name, r, shapes)
    if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, int | float)
                              or not math.isfinite(alpha)):
        raise WorkbenchError(f"adapter {name!r}: alpha={alpha!r} must be a finite number (or None for 2·r)")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise WorkbenchError(f"adapter {name!r}: seed={seed!r} must be a whole number")
    init_fn = INITS.get(init)  # an unknown name is refused, listing the known ones
    g = torch.Generator().manual_seed(seed)
    modules = {}
    for path, (out_f, in_f) in shapes.items():
        rank = r[path] if isinstance(r, dict) else r
        A, B = init_fn(out_f, in_f, rank, g)
        modules[path] = LoraFactors(A, B, float(alpha if alpha is not None else 2 * rank))
    return Adapter(
        name=name,
        modules=modules,
        scaling=scaling,
        base_fingerprint=base_fingerprint,
        lineage=lineage or {"method": "new", "init": init, "seed": seed},
    )


def _check_ranks(name: str, r, shapes: dict) -> None:
    """Ranks are whole numbers of at least 1 (per module when ``r`` is a dict covering every module)."""
    ranks = r if isinstance(r, dict) else {"r": r}
    for where, rank in ranks.items():
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            label = "r" if where == "r" else f"r[{where!r}]"
            raise WorkbenchError(f"adapter {name!r}: {label}={rank!r}; the rank must be a whole number "
                                 "of at least 1 (e.g. r=8)")
    if isinstance(r, dict):
        missing = [p for p in shapes if p not in r]
        if missing:
            raise WorkbenchError(f"adapter {name!r}: r is a dict but gives no rank for {missing[:3]}; "
                                 "give one per target module (or one int for all)")
