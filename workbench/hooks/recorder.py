"""record(): a context manager that stores the values passing through matching HookPoints."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from workbench.errors import WorkbenchError
from workbench.hooks.cache import Cache
from workbench.hooks.hook_point import HookPoint
from workbench.hooks.patterns import matching


def hook_points(model: nn.Module) -> dict[str, HookPoint]:
    """Every HookPoint of ``model`` by its full path."""
    return {name: m for name, m in model.named_modules() if isinstance(m, HookPoint)}


def match_hooks(model: nn.Module, patterns: list[str] | str) -> list[str]:
    """Paths of the HookPoints that match any pattern (glob such as ``*.hook_rank.*`` or a regex)."""
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    names = list(hook_points(model))
    chosen = []
    for pattern in patterns:
        found = matching(names, pattern)
        if not found:
            sample = ", ".join(names[:5]) or "(no hook points: attach adapters first)"
            raise WorkbenchError(
                f"record pattern {pattern!r} matches no hook point; hook points look like: {sample}"
            )
        chosen += [n for n in found if n not in chosen]
    return chosen



@contextmanager
def record(model: nn.Module, patterns: list[str] | str, *, detach: bool = True) -> Iterator[Cache]:
    """Record the outputs of matching HookPoints while the block runs.

    Example:
        >>> with record(lab.model, ["*.hook_rank.*"]) as cache:
        ...     lab.model(**batch)
        >>> cache.to_frame()

    Each hook writes into the cache as it fires, so the cache holds values as soon as they are
    produced: read it inside the block, or after a forward that raised midway (it keeps what was
    recorded before the error). The hooks are removed in ``finally``, whatever happens in the block.
    A hook point that fires more than once (e.g. during generation) reads as its values concatenated
    on dim 1 (the token dimension), which is what incremental decoding produces.
    """
    points = hook_points(model)
    cache = Cache()
    handles = []

    def make_hook(name: str):
        def hook(_module, _inputs, output):
            cache.add(name, output.detach() if detach else output)

        return hook

    try:
        for name in match_hooks(model, patterns):
            handles.append(points[name].register_forward_hook(make_hook(name)))
        yield cache
    finally:
        for h in handles:
            h.remove()
