"""MergeMethod, the MERGES registry, and the two ways a method is written (factored or elementwise).

A merge method is a pure function of the sources' updates ΔWᵢ = sᵢ·Bᵢ·Aᵢ, their weights wᵢ and its
own parameters. Most methods work module by module and are written as one of:

- ``@factored(name, ...)``: ``fn(parts, weights, **params) -> (A', B')`` where ``parts`` is a list of
  ``(Aᵢ (rᵢ, in), sᵢBᵢ (out, rᵢ))`` in float64: the update is never materialized (svd, cat, knots ...).
- ``@elementwise(name, ...)``: ``fn(deltas (K, out, in), weights (K,), *, generators, peft_compat,
  **params) -> (out, in)``: elementwise work on dense ΔW, one module at a time (TIES, DARE ...). The
  decorator registers two methods, ``name`` (output rank Σrᵢ by default) and ``name_svd`` (output
  rank max rᵢ by default, as peft's ``*_svd`` types); both factor the dense result back by SVD.

A method that needs more than the updates (``cat_learned`` trains on data) registers a
``MergeMethod`` whose ``run`` sees every module at once and names what it needs in ``needs``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from workbench.errors import WorkbenchError
from workbench.merging.inputs import ModuleFactors, run_elementwise, run_factored
from workbench.registry import Registry


@dataclass(frozen=True)
class MergeMethod:
    """One registered merge method.

    Attributes:
        name: its registry name.
        run: ``run(inputs, params) -> {path: (A', B')}``; ``inputs`` is a ``MergeInputs``.
        params: the method's own parameters with their defaults (``method_params`` returns a copy).
        summary: one line saying what it does.
        reference: the paper (and code) it follows.
        stochastic: draws random numbers (seeded by ``merge(..., seed=)``).
        needs: parameters that have no usable default and must be given (``("lab",)``).
        choices: parameter -> the values it accepts, checked before any work.
        peft_name: the ``combination_type`` of peft's ``add_weighted_adapter`` it corresponds to.
        validate: ``validate(params)`` raises a WorkbenchError for bad parameter combinations
            (called before any work).
    """

    name: str
    run: Callable[..., ModuleFactors]
    params: Mapping[str, Any]
    summary: str
    reference: str
    stochastic: bool = False
    needs: tuple[str, ...] = ()
    choices: Mapping[str, tuple] = field(default_factory=dict)
    peft_name: str | None = None
    validate: Callable[[dict], None] | None = None


MERGES: Registry[MergeMethod] = Registry("merge method")

def get_method(name: str) -> MergeMethod:
    """The registered method, or a WorkbenchError listing the registered ones."""
    if not isinstance(name, str) or name not in MERGES:
        raise WorkbenchError(f"unknown merge method {name!r}; choose one of: {', '.join(MERGES.names())}")
    return MERGES.get(name)


RANK_DEFAULTS = ("sum", "max")  # rank=None means Σrᵢ ("sum") or max rᵢ ("max") per module


def _defaults(fn: Callable, skip: tuple[str, ...]) -> dict[str, Any]:
    """Keyword defaults of ``fn`` (its own parameters), leaving out the ones the driver passes."""
    return {n: p.default for n, p in inspect.signature(fn).parameters.items()
            if p.kind is p.KEYWORD_ONLY and n not in skip}


def _summary(fn: Callable) -> str:
    return (inspect.getdoc(fn) or "").split("\n\n")[0].replace("\n", " ")


def factored(name: str, *, reference: str, rank_default: str | None = "max", stochastic: bool = False,
             choices: Mapping[str, tuple] | None = None, peft_name: str | None = None):
    """Register ``fn(parts, weights, *, rank, **params) -> (A', B')`` as a module-wise merge.

    ``parts`` holds ``(Aᵢ, sᵢBᵢ)`` (float64) of the sources that have the module, ``weights`` their
    weights (floats), ``rank`` is resolved from None to Σrᵢ or max rᵢ (``rank_default``) unless the
    method has no rank (``rank_default=None``). A stochastic method gets ``generators`` (one per part).
    """
    def register(fn: Callable) -> Callable:
        params = _defaults(fn, skip=("generators",))
        MERGES.register(name)(MergeMethod(
            name=name,
            run=lambda inputs, p: run_factored(inputs, fn, p, rank_default=rank_default,
                                               stochastic=stochastic),
            params=params, summary=_summary(fn), reference=reference, stochastic=stochastic,
            choices=dict(choices or {}), peft_name=peft_name,
        ))
        return fn

    return register


def elementwise(name: str, *, reference: str, stochastic: bool = False, peft: bool = False,
                choices: Mapping[str, tuple] | None = None, validate: Callable[[dict], None] | None = None):
    """Register ``fn(deltas, weights, *, generators, peft_compat, **params)`` as ``name`` and ``name_svd``.

    Both work on the dense ΔWᵢ of one module at a time and factor the dense result back by SVD to
    ``rank`` (None: Σrᵢ for ``name``, max rᵢ for ``name_svd``; ``truncate="lowrank"`` uses a
    randomized SVD for large modules). With ``peft=True`` peft has the same ``combination_type``:
    ``peft_compat=True`` then reproduces it (factor space for ``name``, peft's sign election for both).
    """
    def register(fn: Callable) -> Callable:
        own = _defaults(fn, skip=("generators", "peft_compat"))
        for variant, rank_default in ((name, "sum"), (f"{name}_svd", "max")):
            params = {**own, "rank": None, "truncate": "exact"}
            if peft:
                params["peft_compat"] = False
            MERGES.register(variant)(MergeMethod(
                name=variant,
                run=(lambda inputs, p, _default=rank_default, _factor=variant == name:
                     run_elementwise(inputs, fn, p, rank_default=_default, factor_space=_factor)),
                params=params,
                summary=_summary(fn) + ("" if variant == name else
                                        " Then truncated by SVD to max rᵢ (peft's *_svd types)."),
                reference=reference, stochastic=stochastic,
                choices={"truncate": ("exact", "lowrank"), **(choices or {})},
                peft_name=variant if peft else None, validate=validate,
            ))
        return fn

    return register


def method_params(method: str) -> dict[str, Any]:
    """A method's own parameters with their defaults: ``method_params("ties")`` -> ``{"density": 0.2, ...}``.

    ``rank=None`` means the method's default output rank (see its docstring); parameters named in
    ``MERGES.get(method).needs`` (``lab`` for ``cat_learned``) must be given.
    """
    return dict(get_method(method).params)
