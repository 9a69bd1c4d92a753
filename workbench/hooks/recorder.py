"""record(): a context manager that stores the values passing through matching HookPoints."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from workbench.errors import WorkbenchError
from workbench.hooks.cache import Cache
from workbench.hooks.hook_point import HookPoint


def hook_points(model: nn.Module) -> dict[str, HookPoint]:
    """Every HookPoint of ``model`` by its full path."""
    return {name: m for name, m in model.named_modules() if isinstance(m, HookPoint)}


def match_hooks(model: nn.Module, patterns: list[str] | str) -> list[str]:
    """Paths of the HookPoints that match any pattern (glob such as ``*.hook_rank.*`` or a regex)."""
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    names = list(hook_points(model))
    chosen = []
    for pattern in patterns:
        found = [n for n in names if fnmatch.fnmatchcase(n, pattern) or _regex_match(pattern, n)]
        if not found:
            sample = ", ".join(names[:5]) or "(no hook points: attach adapters first)"
            raise WorkbenchError(
                f"record pattern {pattern!r} matches no hook point; hook points look like: {sample}"
            )
        chosen += [n for n in found if n not in chosen]
    return chosen


def _regex_match(pattern: str, name: str) -> bool:
    try:
        return re.fullmatch(pattern, name) is not None
    except re.error:
        return False


@contextmanager
def record(model: nn.Module, patterns: list[str] | str, *, detach: bool = True) -> Iterator[Cache]:
    """Record the outputs of matching HookPoints while the block runs.

    Example:
        >>> with record(lab.model, ["*.hook_rank.*"]) as cache:
        ...     lab.model(**batch)
        >>> cache.to_frame()

    The hooks are removed in ``finally``, whatever happens in the block. A hook point that fires more
    than once (e.g. during generation) keeps a list; the cache then holds them concatenated on dim 1
    (the token dimension), which is what incremental decoding produces.
    """
    points = hook_points(model)
    values: dict[str, list] = {}
    handles = []

    def make_hook(name: str):
        def hook(_module, _inputs, output):
            values.setdefault(name, []).append(output.detach() if detach else output)

        return hook

    cache = Cache()
    try:
        for name in match_hooks(model, patterns):
            handles.append(points[name].register_forward_hook(make_hook(name)))
        yield cache
    finally:
        for h in handles:
            h.remove()
    for name, parts in values.items():
        cache._values[name] = parts[0] if len(parts) == 1 else _concat(parts)


def _concat(parts: list):
    """Successive values of one hook point along the token axis (a record type brings its own)."""
    concat = getattr(type(parts[0]), "concat", None)
    return concat(parts) if concat else torch.cat(parts, dim=1)
