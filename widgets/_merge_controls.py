"""The MergeBuilder's method controls: one control spec per parameter of a merge method, and coercion.

The controls are generated from ``workbench.merging.method_params(method)`` (a method's own
parameters with their defaults), so a newly registered method gets controls without any change here.
A spec is a plain dict the view turns into an input::

    {"name": "density", "kind": "float", "default": 0.2, "min": 0.01, "max": 1.0, "step": 0.01}
    {"name": "rank", "kind": "int", "default": None, "min": 1, "max": 512, "optional": True}
    {"name": "sign_canonicalize", "kind": "bool", "default": False}
    {"name": "truncate", "kind": "choice", "default": "exact", "choices": ["exact", "lowrank"]}

A parameter with a list of accepted values (``MergeMethod.choices``) is a ``choice``; otherwise
``kind`` comes from the default's type; ``HINTS`` gives ranges for the parameters whose meaning is
known (a fraction in (0, 1], a rank); a ``None`` default makes the control optional (empty = None),
and ``rank`` is the only ``None``-default whose type is known for sure, every other one is text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from workbench.errors import WorkbenchError

FRACTION = {"kind": "float", "min": 0.01, "max": 1.0, "step": 0.01}
HINTS: dict[str, dict] = {
    "density": FRACTION,
    "rank": {"kind": "int", "min": 1, "max": 512, "step": 1},
    "top_k": FRACTION,
    "beta": FRACTION,
    "gamma": FRACTION,
    "epsilon": {"kind": "float", "min": 0.0, "max": 0.5, "step": 0.01},
    "clusters": {"kind": "int", "min": 1, "max": 512, "step": 1},
}


def control(name: str, default, choices: Sequence | None = None) -> dict:
    """The control spec of one method parameter, from its name, default and accepted values."""
    hint = HINTS.get(name, {})
    if choices:
        return {"name": name, "kind": "choice", "default": default, "choices": list(choices)}
    if isinstance(default, bool):
        return {"name": name, "kind": "bool", "default": default}
    if isinstance(default, int):
        return {"name": name, "kind": "int", "default": default, "min": 0, "max": max(64, 4 * default),
                "step": 1, **{k: v for k, v in hint.items() if k != "kind"}, "optional": False}
    if isinstance(default, float):
        spec = {"kind": "float", "min": 0.0, "max": max(1.0, 2 * abs(default)), "step": 0.01}
        return {"name": name, **spec, **hint, "default": default, "optional": False}
    if default is None and hint:
        return {"name": name, **hint, "default": None, "optional": True}
    if default is None or isinstance(default, str):
        return {"name": name, "kind": "text", "default": default, "optional": default is None}
    raise WorkbenchError(f"merge parameter {name!r} has a default of type {type(default).__name__} "
                         f"({default!r}); the builder has controls for numbers, flags and text only")


def controls(defaults: Mapping[str, object], choices: Mapping[str, Sequence] | None = None) -> list[dict]:
    """Control specs for every parameter of a method (``method_params(method)``), in its order."""
    return [control(n, d, (choices or {}).get(n)) for n, d in defaults.items()]


def coerce(specs: list[dict], values: Mapping[str, object]) -> dict:
    """The method's parameters from what a view sent: every key of ``specs``, typed, defaults filled.

    JSON numbers arrive as floats or ints, an emptied optional field as ``None`` or ``""``; a key the
    method does not take is dropped (a method change keeps only the parameters the new one shares).

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
            if kind == "bool":
                out[name] = bool(value)
            elif kind == "int":
                number = float(value)
                if not math.isfinite(number) or number != int(number):
                    raise ValueError
                out[name] = int(number)
            elif kind == "float":
                out[name] = float(value)
                if not math.isfinite(out[name]):
                    raise ValueError
            else:
                out[name] = str(value)
        except (TypeError, ValueError):
            wanted = "an integer" if kind == "int" else "a number"
            raise WorkbenchError(f"merge parameter {name!r} takes {wanted}; got {value!r}") from None
    return out
