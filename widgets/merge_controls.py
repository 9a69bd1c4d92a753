"""The merge builder's method controls, built from the parameter declarations of the merge registry.

A method's parameters are ``MERGES.info(method).params`` (``workbench.registry.Param``: default, low,
high, choices, doc), so a newly registered method gets controls without any change here, and the
ranges are the ones its file declares. A control spec is a plain dict the view turns into an input::

    {"name": "density", "kind": "float", "default": 0.2, "min": 0.0, "max": 1.0, "step": 0.01,
     "optional": False, "doc": "fraction of entries kept"}
    {"name": "rank", "kind": "int", "default": None, "min": 1, "max": 512, "step": 1, "optional": True, ...}
    {"name": "sign_canonicalize", "kind": "bool", "default": False, "doc": ...}
    {"name": "truncate", "kind": "choice", "default": "exact", "choices": ["exact", "lowrank"], "doc": ...}

``kind`` comes from the declared choices, else the default's type, else (a ``None`` default) from the
bounds' type; a ``None`` default makes the control optional (empty = None). A parameter declared
without bounds gets a slider range from its default (``FALLBACK``), never from its name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from workbench import merging
from workbench.errors import WorkbenchError
from workbench.registry import Param

FALLBACK = {"int": (0, 64), "float": (0.0, 1.0)}  # the range of an unbounded parameter with default 0
STEPS = 100  # a float slider moves in 1/100 of its range


def declared(method: str) -> dict[str, Param]:
    """The declared parameters of a merge method (``MERGES.info(method).params``), in its order."""
    return dict(merging.MERGES.info(method).params)


def _number_kind(p: Param) -> str | None:
    if isinstance(p.default, bool):
        return None
    if isinstance(p.default, int):
        return "int"
    if isinstance(p.default, float):
        return "float"
    if p.default is None and (p.low is not None or p.high is not None):
        bounds = [b for b in (p.low, p.high) if b is not None]
        return "int" if all(isinstance(b, int) and not isinstance(b, bool) for b in bounds) else "float"
    return None


def _range(p: Param, kind: str) -> tuple[float, float]:
    """``(min, max)``: the declared bounds, completed from the default where one is missing."""
    lo0, hi0 = FALLBACK[kind]
    size = abs(p.default) if isinstance(p.default, int | float) and not isinstance(p.default, bool) else 0
    span = hi0 if size <= hi0 else (4 if kind == "int" else 2) * size  # a float default in [0, 1]: a fraction
    lo = p.low if p.low is not None else (lo0 if not isinstance(p.default, int | float) or p.default >= 0
                                          else -span)
    hi = p.high if p.high is not None else max(lo + hi0, span)
    return lo, hi


def control(p: Param) -> dict:
    """The control spec of one declared parameter."""
    base = {"name": p.name, "default": p.default, "doc": p.doc}
    if p.choices:
        return {**base, "kind": "choice", "choices": list(p.choices)}
    if isinstance(p.default, bool):
        return {**base, "kind": "bool"}
    kind = _number_kind(p)
    if kind is not None:
        lo, hi = _range(p, kind)
        step = 1 if kind == "int" else _nice((hi - lo) / STEPS)
        return {**base, "kind": kind, "min": lo, "max": hi, "step": step, "optional": p.default is None}
    if p.default is None or isinstance(p.default, str):
        return {**base, "kind": "text", "optional": p.default is None}
    raise WorkbenchError(f"merge parameter {p.name!r} has a default of type {type(p.default).__name__} "
                         f"({p.default!r}); the builder has controls for numbers, flags and text only: "
                         "declare choices= for it")


def _nice(x: float) -> float:
    """The power of ten nearest below ``x`` (0.01 for a range of 1)."""
    return 10.0 ** math.floor(math.log10(x)) if x > 0 else 0.01


def controls(params: Mapping[str, Param]) -> list[dict]:
    """Control specs for every declared parameter of a method, in its order."""
    return [control(p) for p in params.values() if not p.required]


def coerce(specs: list[dict], values: Mapping[str, object]) -> dict:
    """The method's parameters from what a view sent: every key of ``specs``, typed, defaults filled.

    JSON numbers arrive as floats or ints, an emptied optional field as ``None`` or ``""``; a key the
    method does not take is dropped (a method change keeps only the parameters the new one shares).
    A text field whose default is ``None`` reads a number as a number. Bounds are the engine's to check
    (``merge`` refuses, and the builder shows why).

    Raises:
        WorkbenchError: a value that is not of the parameter's kind (``"abc"`` for a number).
    """
    out = {}
    for spec in specs:
        name, kind = spec["name"], spec["kind"]
        value = values.get(name, spec["default"])
        if (value is None or value == "") and kind != "choice":  # an emptied field
            out[name] = None if spec.get("optional") else spec["default"]
            continue
        if kind == "choice":
            match = [c for c in spec["choices"] if c == value or str(c) == str(value)]
            if not match:
                raise WorkbenchError(f"merge parameter {name!r} takes one of {spec['choices']}; "
                                     f"got {value!r}")
            out[name] = match[0]
            continue
        try:
            out[name] = _typed(kind, value, untyped=spec["default"] is None)
        except (TypeError, ValueError):
            wanted = "an integer" if kind == "int" else "a number"
            raise WorkbenchError(f"merge parameter {name!r} takes {wanted}; got {value!r}") from None
    return out


def _typed(kind: str, value, *, untyped: bool):
    if kind == "bool":
        return bool(value)
    if kind == "int":
        number = float(value)
        if not math.isfinite(number) or number != int(number):
            raise ValueError
        return int(number)
    if kind == "float":
        number = float(value)
        if not math.isfinite(number):
            raise ValueError
        return number
    if untyped and isinstance(value, int | float) and not isinstance(value, bool):
        return value  # a parameter of unknown type: a number stays a number
    if untyped:
        for cast in (int, float):
            try:
                return cast(str(value))
            except ValueError:
                pass
    return str(value)


def needs(plugin) -> tuple[str, ...]:
    """The parameters a method needs that the builder cannot give (``lab`` for a method that trains)."""
    declared_needs = tuple(getattr(plugin.obj, "needs", ()) or ())
    return declared_needs or tuple(n for n, p in plugin.params.items() if p.required)


def about(plugin) -> str:
    """One line on what a method does and the paper it follows."""
    summary = getattr(plugin.obj, "summary", None) or plugin.summary
    reference = plugin.reference or getattr(plugin.obj, "reference", "") or ""
    return f"{summary} Reference: {reference}"
