"""What the JupyterLab sidebar shows: the workbench sessions living in a kernel, as plain JSON.

The sidebar (``labextension/src/kernel.ts``) asks its own kernel, silently, for the user expression
``EXPRESSION``; nothing is imported into a kernel that has not imported ``workbench`` itself, so a
notebook that never uses the workbench stays untouched (the sidebar then shows a hint)::

    from workbench.session_info import describe
    describe()                      # {"version": 1, "sessions": [{"variables": ["lab"], ...}]}

One session per ``Workbench`` object bound to a name in the user namespace (IPython's ``user_ns``,
else ``__main__``); a lab bound to two names is one session naming both.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

from workbench.adapters.lineage import tasks_of
from workbench.lab import Workbench
from workbench.routing import EXPORTS, ROUTERS

VERSION = 1
OWN = {"lora_A", "lora_B", "routes"}  # parameter path parts that belong to adapters and routers
# What the sidebar evaluates (a user expression: its value comes back in the execute reply, no output).
EXPRESSION = ("__import__('workbench.session_info').session_info.SessionInfo() "
              "if 'workbench' in __import__('sys').modules else None")


def _namespace() -> Mapping[str, Any]:
    """The user namespace of the running IPython kernel, else ``__main__``'s globals."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is not None:
        return shell.user_ns
    return vars(sys.modules["__main__"])


def _jsonable(value: Any) -> Any:
    """``value`` with everything JSON cannot hold (tensors, paths, tuples of those) as strings."""
    return json.loads(json.dumps(value, default=str))


def _summary(lineage: Mapping[str, Any]) -> str:
    """One line of how an adapter was made: ``train_lora on topic (80 steps)``, ``ties of a, b``."""
    method = str(lineage.get("method", "?"))
    merge = lineage.get("merge")
    if isinstance(merge, Mapping):  # workbench.merging.merge: {"method", "sources": [{"name"...}]}
        method, lineage = f"{merge.get('method', '?')} merge", merge
    sources = lineage.get("sources") or lineage.get("adapters")
    if isinstance(sources, Mapping):
        sources = list(sources)
    if isinstance(sources, list | tuple) and sources:
        names = [s.get("name", "?") if isinstance(s, Mapping) else str(s) for s in sources]
        return f"{method} of {', '.join(names)}"
    tasks = lineage.get("tasks")
    if tasks:
        steps = f" ({lineage['steps']} steps)" if "steps" in lineage else ""
        return f"{method} on {', '.join(map(str, tasks))}{steps}"
    return method


def adapter_info(adapter, *, active: bool = False, others: Mapping[str, Any] | None = None) -> dict:
    """One adapter: name, rank(s), target suffixes, module and parameter counts, size, lineage, tasks.

    ``tasks`` is ``workbench.adapters.lineage.tasks_of(adapter, others)``: what it (or, for a merge, its
    sources among ``others``) was trained on; the sidebar reads it rather than the lineage.
    """
    ranks = sorted(set(adapter.ranks.values()))
    tensors = [t for f in adapter.modules.values() for t in (f.A, f.B)]
    layers = {p.split(".")[i + 1] for p in adapter.modules for i, part in enumerate(p.split(".")[:-1])
              if part in ("layers", "h", "layer") and p.split(".")[i + 1].isdigit()}
    return {
        "name": adapter.name,
        "rank": ranks[0] if len(ranks) == 1 else f"{ranks[0]}..{ranks[-1]}",
        "ranks": ranks,
        "targets": sorted({p.rsplit(".", 1)[-1] for p in adapter.modules}),
        "modules": len(adapter.modules),
        "layers": len(layers),
        "parameters": adapter.num_parameters(),
        "bytes": sum(t.numel() * t.element_size() for t in tensors),
        "scaling": adapter.scaling,
        "lineage": _jsonable(adapter.lineage),
        "made_by": _summary(adapter.lineage),
        "tasks": tasks_of(adapter, others),
        "active": active,
    }


def router_info(routed, *, active: bool = False) -> dict:
    """One router: name, mechanism, kind, modules routed, parameters, training record and sidebar actions.

    ``kind`` is ``"bank"`` (it routes over the lab's adapters) or its level (``"linear"``: inside linear
    modules, ``"block"``: replacing a whole block); ``needs`` the routing-context keys it reads (``needs_*``
    flags); ``exact_export`` whether ``export_router`` makes it static exactly without prompts;
    ``actions`` what the sidebar offers for it: ``use``, ``evaluate``, ``export`` (flag ``exportable``),
    ``freeze`` (flag ``freezable``), ``save``.
    """
    params = {k: v for k, v in routed.params.items() if k != "training"}
    flags = ROUTERS.info(routed.mechanism).flags
    level = type(next(iter(routed.modules.values()))).level if routed.modules else "linear"
    exportable = "exportable" in flags and routed.mechanism in EXPORTS
    form = EXPORTS.get(routed.mechanism) if exportable else None
    return {
        "name": routed.name,
        "mechanism": routed.mechanism,
        "kind": "bank" if "bank" in flags else level,
        "modules": len(routed.modules),
        "parameters": routed.n_parameters(),
        "params": _jsonable(params),
        "trained": _jsonable(routed.params.get("training")),
        "needs": sorted(f.removeprefix("needs_") for f in flags if f.startswith("needs_")),
        "exact_export": bool(form) and all(form.constant(r) is not None for r in routed.modules.values()),
        "actions": ["use", "evaluate", *(["export"] if exportable else []),
                    *(["freeze"] if "freezable" in flags else []), "save"],
        "active": active,
    }


def session_info(lab: Workbench, variables: list[str]) -> dict:
    """One workbench session: its base model, adapters, routers and what its forward applies."""
    used = set(lab.active.names)
    n_params = sum(p.numel() for n, p in lab.model.named_parameters()
                   if not OWN.intersection(n.split(".")))  # the base's own weights only
    return {
        "variables": variables,
        "base": {"name": str(lab.name), "class": type(lab.model).__name__,
                 "fingerprint": lab.fingerprint, "parameters": n_params, "device": str(lab.device)},
        "active": sorted(used),
        "adapters": [adapter_info(a, active=n in used, others=lab.adapters) for n, a in lab.adapters.items()],
        "routers": [router_info(r, active=n in used) for n, r in lab.routers.items()],
    }


def describe(namespace: Mapping[str, Any] | None = None) -> dict:
    """Every ``Workbench`` bound to a public name in ``namespace`` (default: the kernel's user namespace).

    Returns:
        ``{"version": 1, "sessions": [...]}``, one session per distinct lab, in order of first binding;
        names starting with ``_`` (IPython's output history ``_``, ``_3``) are skipped.
    """
    namespace = _namespace() if namespace is None else namespace
    labs: dict[int, tuple[Workbench, list[str]]] = {}
    for name, value in list(namespace.items()):
        if isinstance(value, Workbench) and not name.startswith("_"):
            labs.setdefault(id(value), (value, []))[1].append(name)
    return {"version": VERSION, "sessions": [session_info(lab, names) for lab, names in labs.values()]}


class SessionInfo:
    """``describe()`` as a display object: a user expression's reply carries it as ``application/json``."""

    def __init__(self, namespace: Mapping[str, Any] | None = None) -> None:
        self.info = describe(namespace)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        n = len(self.info["sessions"])
        return {"application/json": self.info, "text/plain": f"<{n} workbench session(s)>"}
