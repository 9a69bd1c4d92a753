"""One plugin contract for every family of interchangeable parts (zoo entries, tasks, merges, routers ...).

Callers write ``MERGES.get("ties")``; nobody writes ``if method == "ties"``: what a caller needs to know
about a plugin is a declared capability flag (``MERGES.has("ties", "svd_variant")``) or a declared
parameter (``MERGES.info("ties").params["density"]``), never its name. Every entry carries:

- ``name``: lowercase, unique in its registry;
- ``summary``: one line (the first paragraph of its OWN docstring unless given: a class's inherited
  docstring, or the class docstring an instance shows, does not count);
- ``reference``: the paper or code it follows (a ``Reference:`` line of its docstring, its own
  ``reference`` attribute, or a ``Reference:`` line of its module's docstring, unless given);
- ``params``: its own parameters (``Param``: default, bounds or choices, a doc string), read from the
  signature and the ``Args:`` section of the docstring unless given, refined by ``bounds``/``choices``;
- ``flags``: capability flags from the registry's declared vocabulary (a typo is an error).

A registry may check the base type of what registers (``base=Router``) and may find its plugins by
scanning a package (``package="workbench.merging.methods"``: every module not starting with ``_`` is
imported on the first lookup), so that adding a plugin is adding one file. A wrapper registered for a
function names it with ``source=`` (what the contract is read from); ``describe(fn)`` reads the same
for a registration that adds parameters of its own. The default of a parameter always passes
``check`` (a sentinel such as ``-inf`` may sit outside the bounds one would choose).
Tests parametrize over ``registry.names()`` so a new entry is checked against the shared invariants.
"""

from __future__ import annotations

import importlib
import inspect
import math
import pkgutil
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from workbench.errors import UnknownNameError, WorkbenchError

T = TypeVar("T")

_REQUIRED = inspect.Parameter.empty  # a parameter without a default must be given


@dataclass(frozen=True)
class Param:
    """One declared parameter of a plugin.

    Attributes:
        name: the keyword it is passed as.
        default: its default (``Param.REQUIRED`` when it must be given).
        doc: one line saying what it does.
        low, high: inclusive numeric bounds (None: unbounded on that side); non-finite values are
            refused (the default itself is always accepted).
        choices: the values it accepts (None: any of its type).
    """

    name: str
    default: Any = None
    doc: str = ""
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None

    REQUIRED = _REQUIRED

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def check(self, value: Any, owner: str) -> Any:
        """``value`` if it is allowed, else a WorkbenchError naming the parameter, the value and the range.

        The default is always allowed (a sentinel such as ``delta=-inf``, "no pruning", may sit outside
        the bounds of the values one would choose).
        """
        if value is self.default or type(value) is type(self.default) and value == self.default:
            return value
        if self.choices is not None:
            if value not in self.choices:
                raise WorkbenchError(f"{owner}: {self.name}={value!r} is not allowed; choose one of "
                                     f"{', '.join(repr(c) for c in self.choices)}")
            return value
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if numeric and not math.isfinite(value):
            raise WorkbenchError(f"{owner}: {self.name}={value!r} is not a finite number; give one")
        if numeric and self.low is not None and value < self.low or \
                numeric and self.high is not None and value > self.high:
            raise WorkbenchError(f"{owner}: {self.name}={value!r} is out of range; give a value in "
                                 f"[{_bound(self.low)}, {_bound(self.high)}]")
        if (self.low is not None or self.high is not None) and value is not None and not numeric:
            raise WorkbenchError(f"{owner}: {self.name}={value!r} must be a number in "
                                 f"[{_bound(self.low)}, {_bound(self.high)}]")
        return value


def _bound(x: float | None) -> str:
    return "unbounded" if x is None else f"{x:g}"


@dataclass(frozen=True)
class Plugin(Generic[T]):
    """A registered entry: the object and what the contract says about it."""

    name: str
    obj: T
    summary: str
    reference: str | None
    params: Mapping[str, Param] = field(default_factory=dict)
    flags: frozenset[str] = frozenset()

    def defaults(self) -> dict[str, Any]:
        """Parameter -> default, for the parameters that have one."""
        return {n: p.default for n, p in self.params.items() if not p.required}


class Registry(Generic[T]):
    """A named mapping from lowercase names to plugins, filled by a decorator.

    Args:
        kind: what the entries are, for messages ("merge method").
        base: a type every entry must be (an instance of, or for classes a subclass of); None: any.
        package: a dotted package whose modules are imported on first lookup (plugins are found by scan).
        flags: the capability flags entries may declare.
        skip: parameters of the callables that are not the plugin's own (passed by the driver).

    Example:
        >>> TASKS = Registry("task")
        >>> @TASKS.register("arithmetic")
        ... def arithmetic():
        ...     '''Sums of two numbers.'''
        >>> TASKS.get("arithmetic") is arithmetic
        True
    """

    def __init__(self, kind: str, *, base: type | None = None, package: str | None = None,
                 flags: Iterable[str] = (), skip: Iterable[str] = ()):
        self.kind = kind
        self.base = base
        self.package = package
        self.flags = frozenset(flags)
        self.skip = frozenset(skip)
        self._items: dict[str, Plugin[T]] = {}
        self._scanned = package is None

    # -- filling ---------------------------------------------------------------------------------
    def register(self, name: str, *, summary: str | None = None, reference: str | None = None,
                 params: Mapping[str, Param] | Iterable[Param] | None = None, flags: Iterable[str] = (),
                 bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
                 choices: Mapping[str, tuple] | None = None,
                 docs: Mapping[str, str] | None = None, source: object | None = None) -> Callable[[T], T]:
        """Decorator registering ``obj`` as ``name``; see the module docstring for what is read from it.

        ``source`` is what summary, reference and parameters are read from when it is not ``obj``
        itself (a wrapper registered for a function: the function).
        """
        if not isinstance(name, str) or name != name.lower() or not name:
            raise ValueError(f"{self.kind} names are lowercase and non-empty; got {name!r}")
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice; pick another name")
        unknown = set(flags) - self.flags
        if unknown:
            raise ValueError(f"{self.kind} {name!r}: unknown flags {sorted(unknown)}; "
                             f"this registry declares {sorted(self.flags)}")

        def add(obj: T) -> T:
            self._check_base(name, obj)
            src = obj if source is None else source
            declared = _declared_params(src, self.skip) if params is None else (
                dict(params) if isinstance(params, Mapping) else {p.name: p for p in params})
            for n, doc in (docs or {}).items():  # a doc declares a parameter the signature does not show
                declared[n] = replace(declared.get(n, Param(n)), doc=doc)
            refined = {*(bounds or {}), *(choices or {})} - set(declared)
            if refined:
                raise ValueError(f"{self.kind} {name!r}: bounds/choices name {sorted(refined)}, which it "
                                 f"does not take; its parameters: {sorted(declared) or 'none'}")
            for n, (low, high) in (bounds or {}).items():
                declared[n] = replace(declared.get(n, Param(n)), low=low, high=high)
            for n, values in (choices or {}).items():
                declared[n] = replace(declared.get(n, Param(n)), choices=tuple(values))
            self._items[name] = Plugin(
                name=name, obj=obj, summary=summary or _summary(src), reference=reference or _reference(src),
                params=declared, flags=frozenset(flags))
            return obj

        return add

    def _check_base(self, name: str, obj: object) -> None:
        if self.base is None:
            return
        ok = issubclass(obj, self.base) if inspect.isclass(obj) else isinstance(obj, self.base)
        if not ok:
            raise TypeError(f"{self.kind} {name!r} must be a {self.base.__name__}; got {obj!r}")

    def _scan(self) -> None:
        if self._scanned:
            return
        self._scanned = True  # set first: a plugin module that looks the registry up must not recurse
        try:
            pkg = importlib.import_module(self.package)
            for mod in pkgutil.iter_modules(pkg.__path__, prefix=f"{self.package}."):
                if not mod.name.rsplit(".", 1)[1].startswith("_"):
                    importlib.import_module(mod.name)
        except BaseException:
            self._scanned = False  # a failed import fails every lookup, not only the first
            raise

    # -- reading ---------------------------------------------------------------------------------
    def info(self, name: str) -> Plugin[T]:
        """The plugin ``name`` with its summary, reference, parameters and flags."""
        self._scan()
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            ) from None

    def get(self, name: str) -> T:
        """The registered object (a function, a class, an instance)."""
        return self.info(name).obj

    def has(self, name: str, flag: str) -> bool:
        """Whether ``name`` declares capability ``flag`` (an undeclared flag is an error)."""
        self._known_flag(flag)
        return flag in self.info(name).flags

    def names(self, flag: str | None = None) -> list[str]:
        """Sorted names, or only those declaring ``flag``."""
        self._scan()
        if flag is not None:
            self._known_flag(flag)
        return sorted(n for n, p in self._items.items() if flag is None or flag in p.flags)

    def _known_flag(self, flag: str) -> None:
        if flag not in self.flags:
            raise ValueError(f"{self.kind}: unknown flag {flag!r}; declared: {sorted(self.flags)}")

    def check(self, name: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``name``'s defaults updated by ``params``, after checking names, bounds and choices.

        Raises:
            UnknownNameError: a parameter the plugin does not declare (the message lists the known ones).
            WorkbenchError: a value out of bounds, not among the choices, non-finite, or a required
                parameter missing.
        """
        plugin = self.info(name)
        given = dict(params or {})
        unknown = sorted(set(given) - set(plugin.params))
        if unknown:
            known = ", ".join(f"{n}=<required>" if p.required else f"{n}={p.default!r}"
                              for n, p in plugin.params.items()) or "none"
            raise UnknownNameError(f"{self.kind} {name!r} has no parameter {', '.join(map(repr, unknown))}; "
                                   f"its parameters: {known}")
        out = plugin.defaults()
        for n, p in plugin.params.items():
            if n in given:
                out[n] = p.check(given[n], f"{self.kind} {name!r}")
            elif p.required:
                raise WorkbenchError(f"{self.kind} {name!r} needs {n}=...: {p.doc or 'no default'}")
        return out

    def table(self):
        """One row per entry: name, summary, reference, parameters (with defaults) and flags."""
        import pandas as pd  # only for this view of the registry

        return pd.DataFrame([
            {"name": n, "summary": p.summary, "reference": p.reference,
             "params": {k: v.default for k, v in p.params.items()}, "flags": sorted(p.flags)}
            for n, p in ((n, self.info(n)) for n in self.names())])

    def __contains__(self, name: object) -> bool:
        self._scan()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._scan()
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"


# -- reading the contract from an object ------------------------------------------------------------
def describe(obj: object, *, skip: Iterable[str] = ()) -> tuple[str, str | None, dict[str, Param]]:
    """(summary, reference, params) as ``register`` reads them from ``obj``: for a registration that
    wraps ``obj`` and adds parameters of its own (``workbench.merging.base.elementwise``)."""
    return _summary(obj), _reference(obj), _declared_params(obj, frozenset(skip))


def _doc(obj: object) -> str:
    """The object's OWN docstring, cleaned: a class's inherited docstring, or the class docstring an
    instance shows, is not the entry's and reads as empty (pass ``summary=`` for instances)."""
    if inspect.isclass(obj):
        text = obj.__dict__.get("__doc__")
    else:
        text = getattr(obj, "__doc__", None)
        if text is getattr(type(obj), "__doc__", None):
            text = None  # an instance shows its class's docstring: not its own
    return inspect.cleandoc(text) if isinstance(text, str) else ""


def _summary(obj: object) -> str:
    return _doc(obj).split("\n\n")[0].replace("\n", " ").strip()


_REFERENCE = re.compile(r"^\s*Reference:\s*(.+?)(?:\n\s*\n|\Z)", re.M | re.S)


def _reference(obj: object) -> str | None:
    """The ``Reference:`` paragraph of the object's own docstring, else its own ``reference`` attribute
    (set on the class itself or the instance itself: not inherited, not a property), else (for classes
    and functions) its module docstring's."""
    m = _REFERENCE.search(_doc(obj))
    if m:
        return " ".join(m.group(1).split())
    attr = getattr(obj, "__dict__", {}).get("reference")  # its own: not inherited, not a property
    if isinstance(attr, str) and attr.strip():
        return " ".join(attr.split())
    if inspect.isclass(obj) or callable(obj) and hasattr(obj, "__qualname__"):
        module = inspect.getmodule(obj)
        m = _REFERENCE.search((module.__doc__ or "") if module else "")
        if m:
            return " ".join(m.group(1).split())
    return None


_ARG = re.compile(r"^\s{4}(\w+(?:,\s*\w+)*)(?:\s*\([^)]*\))?:\s*(.+)$")


def _arg_docs(obj: object) -> dict[str, str]:
    """``name -> text`` of each entry of the docstring's ``Args:`` (or ``Attributes:``) section, its
    continuation lines joined."""
    docs: dict[str, str] = {}
    texts = [_doc(obj)] + ([_doc(obj.__init__)] if inspect.isclass(obj) else [])
    for text in texts:
        inside, last = False, []
        for line in text.splitlines():
            if line.strip() in ("Args:", "Attributes:", "Parameters:"):
                inside, last = True, []
                continue
            if inside and line and not line.startswith(" "):
                inside, last = False, []
            m = _ARG.match(line) if inside else None
            if m:
                last = [n for n in re.split(r",\s*", m.group(1)) if n not in docs]
                for n in last:
                    docs[n] = m.group(2).strip()
            elif inside and last and line.startswith(" " * 8) and line.strip():
                for n in last:  # a continuation line of the entry above
                    docs[n] += " " + line.strip()
            elif inside and not line.strip():
                last = []
    return docs


def _declared_params(obj: object, skip: frozenset[str]) -> dict[str, Param]:
    """Keyword parameters of a callable (or a class's ``__init__``) with defaults and docs."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    if not callable(target):
        return {}
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return {}
    docs = _arg_docs(obj)
    out = {}
    for n, p in sig.parameters.items():
        if n in skip or n == "self" or p.kind not in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
            continue
        if p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty:
            continue  # positional inputs (the data) are not parameters
        out[n] = Param(n, default=p.default, doc=docs.get(n, ""))
    return out
