"""MergeMethod, the MERGES registry, and the two ways a method is written (factored or elementwise).

A merge method is a pure function of the sources' updates ΔWᵢ = sᵢ·Bᵢ·Aᵢ, their weights wᵢ and its
own parameters. Each method is one file in ``workbench/merging/methods/`` (found by a package scan),
most written as one of:

- ``@factored(name, ...)``: ``fn(parts, weights, **params) -> (A', B')`` where ``parts`` is a list of
  ``(Aᵢ (rᵢ, in), sᵢBᵢ (out, rᵢ))`` in float64: the update is never materialized (svd, cat, knots ...).
- ``@elementwise(name, ...)``: ``fn(deltas (K, out, in), weights (K,), *, generators, peft_compat,
  **params) -> (out, in)``: elementwise work on dense ΔW, one module at a time (TIES, DARE ...). The
  decorator registers two methods, ``name`` (output rank Σrᵢ by default) and ``name_svd`` (output
  rank max rᵢ by default, as peft's ``*_svd`` types); both factor the dense result back by SVD.

Summary, reference and parameters are read from the function (its docstring's first paragraph and
``Args:``, its module's ``Reference:``, its keyword defaults) and refined by ``bounds``/``choices``.
A method that needs more than the updates (``cat_learned`` trains on data) registers a
``MergeMethod`` whose ``run`` sees every module at once, declares its ``Param``s, a required one
(``Param.REQUIRED``) for what it cannot do without, and the ``needs_data`` flag.

Capability flags (``MERGES.has(name, flag)``; call sites read these, never a method's name):

- ``stochastic``: draws random numbers (seeded by ``merge(..., seed=)``);
- ``factored``: works on the factors, never builds a dense ΔW (every method is this or ``elementwise``);
- ``elementwise``: works on each module's dense ΔW stack, then factors the result back by SVD;
- ``svd_variant``: the ``*_svd`` twin of an elementwise method (default rank max rᵢ, as peft's ``*_svd``);
- ``peft_equivalent``: peft's ``add_weighted_adapter`` has this ``combination_type``: the result
  equals peft's (``cat``, ``svd``), or does with ``peft_compat=True``, which without ``svd_variant``
  works in peft's factor space (A and B stacks apart) and so needs equal ranks;
- ``needs_data``: needs data beyond the updates: trains on it with a lab (``cat_learned``) or reads
  statistics measured on it (``regmean``, ``fisher``: ``workbench.merging.statistics``);
- ``pair``: merges exactly two sources (the SLERP family; ``nuslerp``: two with a nonzero weight).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from workbench.merging.inputs import ModuleFactors, run_elementwise, run_factored
from workbench.registry import Param, Plugin, Registry, describe

FLAGS = ("stochastic", "factored", "elementwise", "svd_variant", "peft_equivalent", "needs_data", "pair")


@dataclass(frozen=True)
class MergeMethod:
    """What ``MERGES.get(name)`` returns: the runner of one merge method (its contract is ``MERGES.info``).

    Attributes:
        name: its registry name.
        run: ``run(inputs, params) -> {path: (A', B')}``; ``inputs`` is a ``MergeInputs``, ``params``
            the checked parameters (``MERGES.check(name, params)``).
        validate: ``validate(params)`` raises a WorkbenchError for bad parameter combinations that
            bounds and choices cannot say (called before any work).
    """

    name: str
    run: Callable[..., ModuleFactors]
    validate: Callable[[dict], None] | None = None

    # Read-only views of the contract, for callers written before it.
    @property
    def info(self) -> Plugin:
        return MERGES.info(self.name)

    @property
    def params(self) -> dict[str, Any]:
        """Parameter -> default (None for a required one)."""
        return {n: None if p.required else p.default for n, p in self.info.params.items()}

    @property
    def summary(self) -> str:
        return self.info.summary

    @property
    def reference(self) -> str:
        return self.info.reference or ""

    @property
    def needs(self) -> tuple[str, ...]:
        """The parameters that must be given (no usable default)."""
        return tuple(n for n, p in self.info.params.items() if p.required)

    @property
    def choices(self) -> dict[str, tuple]:
        return {n: p.choices for n, p in self.info.params.items() if p.choices is not None}

    @property
    def stochastic(self) -> bool:
        return "stochastic" in self.info.flags


MERGES: Registry[MergeMethod] = Registry("merge method", base=MergeMethod, flags=FLAGS,
                                         package="workbench.merging.methods")



def get_method(name: str) -> MergeMethod:
    """The registered method (``MERGES.get``), or an UnknownNameError listing the registered ones."""
    return MERGES.get(name)


RANK_DEFAULTS = ("sum", "max")  # rank=None means Σrᵢ ("sum") or max rᵢ ("max") per module

RANK = Param("rank", None, "output rank per module (None: the method's default, Σrᵢ or max rᵢ)", low=1)
TRUNCATE = Param("truncate", "exact", "how the dense result is cut back to rank: exact (top singular "
                 "triplets, float64), or randomized (torch.svd_lowrank: faster, approximate)",
                 choices=("exact", "lowrank"))
PEFT_COMPAT = Param("peft_compat", False, "reproduce peft's add_weighted_adapter for the same combination "
                    "type (its factor space and sign election)", choices=(False, True))
DENSITY = (0.0, 1.0)  # bounds of a kept fraction: (0, 1], zero refused by ``check_density``
SIGN_METHODS = ("total", "frequency")  # TIES' sign election: sign of the weighted sum, or of the count


def factored(name: str, *, reference: str | None = None, rank_default: str | None = "max",
             stochastic: bool = False, bounds: Mapping[str, tuple] | None = None,
             choices: Mapping[str, tuple] | None = None, flags: Iterable[str] = ()):
    """Register ``fn(parts, weights, *, rank, **params) -> (A', B')`` as a module-wise merge.

    ``parts`` holds ``(Aᵢ, sᵢBᵢ)`` (float64) of the sources that have the module, ``weights`` their
    weights (floats), ``rank`` is resolved from None to Σrᵢ or max rᵢ (``rank_default``) unless the
    method has no rank (``rank_default=None``). A stochastic method gets ``generators`` (one per part).
    Summary and parameters come from ``fn`` (docstring, ``Args:``, keyword defaults), the reference
    from its module's ``Reference:`` unless given; ``bounds``/``choices`` refine the parameters.
    """
    def register(fn: Callable) -> Callable:
        summary, ref, params = describe(fn, skip=("generators",))
        if "rank" in params:
            params["rank"] = RANK
        MERGES.register(name, summary=summary, reference=reference or ref, params=params, bounds=bounds,
                        choices=choices, flags=("factored", *(("stochastic",) if stochastic else ()), *flags)
                        )(MergeMethod(
            name=name,
            run=lambda inputs, p: run_factored(inputs, fn, p, rank_default=rank_default,
                                               stochastic=stochastic),
        ))
        return fn

    return register


def elementwise(name: str, *, reference: str | None = None, stochastic: bool = False, peft: bool = False,
                bounds: Mapping[str, tuple] | None = None, choices: Mapping[str, tuple] | None = None,
                validate: Callable[[dict], None] | None = None, prune: Callable | None = None,
                combine: Callable | None = None):
    """Register ``fn(deltas, weights, *, generators, peft_compat, **params)`` as ``name`` and ``name_svd``.

    ``prune(delta (out, in), generator, **params)`` (in place, each source alone) and
    ``combine(stack (K, ...), weights (K,), *, peft_compat, **params) -> (...)``, when given, are
    ``fn``'s two steps (``fn`` must be exactly ``prune`` on each ΔWᵢ, then ``combine``): the runner
    then caches the pruned updates (a change of weights re-runs only ``combine``) and combines
    modules of one shape together.

    Both work on the dense ΔWᵢ of one module at a time and factor the dense result back by SVD to
    ``rank`` (None: Σrᵢ for ``name``, max rᵢ for ``name_svd``; ``truncate="lowrank"`` uses a
    randomized SVD for large modules). With ``peft=True`` peft has the same ``combination_type``:
    ``peft_compat=True`` then reproduces it (factor space for ``name``, peft's sign election for both).
    """
    def register(fn: Callable) -> Callable:
        summary, ref, own = describe(fn, skip=("generators", "peft_compat"))
        params = {**own, "rank": RANK, "truncate": TRUNCATE, **({"peft_compat": PEFT_COMPAT} if peft else {})}
        for variant, rank_default in ((name, "sum"), (f"{name}_svd", "max")):
            flags = ["elementwise", *(["stochastic"] if stochastic else []),
                     *(["peft_equivalent"] if peft else []), *(["svd_variant"] if variant != name else [])]
            tail = "" if variant == name else " Then truncated by SVD to max rᵢ (peft's *_svd types)."
            MERGES.register(variant, summary=summary + tail, reference=reference or ref, params=params,
                            bounds=bounds, choices=choices, flags=flags)(MergeMethod(
                name=variant,
                run=(lambda inputs, p, _default=rank_default, _factor=variant == name:
                     run_elementwise(inputs, fn, p, rank_default=_default, factor_space=_factor,
                                     prune=prune, combine=combine, stochastic=stochastic)),
                validate=validate,
            ))
        return fn

    return register


def method_params(method: str) -> dict[str, Any]:
    """A method's own parameters with their defaults: ``method_params("ties")`` -> ``{"density": 0.2, ...}``.

    ``rank=None`` means the method's default output rank (see its docstring). A required parameter
    (``lab`` for ``cat_learned``) is listed with None; ``MERGES.info(method).params`` has the full
    declarations (doc, bounds, choices).
    """
    return dict(get_method(method).params)
