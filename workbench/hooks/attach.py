"""hooks(): attach functions to the modules whose paths match patterns, for the length of a block.

    with hooks(lab.model, {"*.mlp.down_proj": lambda path, module, args, out: print(path, out.shape)}):
        lab.model(**batch)

The one place that registers and removes plain forward hooks by module path; ``record`` does the
same for HookPoints and keeps what passes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from torch import nn

from workbench.errors import WorkbenchError
from workbench.hooks.patterns import matching


def match_modules(model: nn.Module, pattern: str) -> list[str]:
    """Paths of ``model``'s modules that ``pattern`` names: the exact path, else a glob, else a regex.

    Raises:
        WorkbenchError: when nothing matches (the message shows what paths look like).
    """
    names = [n for n, _ in model.named_modules() if n]
    if pattern in names:
        return [pattern]
    found = matching(names, pattern)
    if not found:
        sample = ", ".join(names[:5]) or "(the model has no submodules)"
        raise WorkbenchError(f"hook pattern {pattern!r} matches no module; module paths look like: {sample}")
    return found


def module_paths(model: nn.Module, modules: list[nn.Module]) -> list[str]:
    """The path of each of ``modules`` inside ``model`` (to hook a module one holds by its path).

    Raises:
        WorkbenchError: a module is not part of ``model``.
    """
    paths = {id(m): n for n, m in model.named_modules() if n}
    missing = [type(m).__name__ for m in modules if id(m) not in paths]
    if missing:
        raise WorkbenchError(f"a {missing[0]} to hook is not a submodule of this model; hook modules of the "
                             "model that runs")
    return [paths[id(m)] for m in modules]



@contextmanager
def hooks(model: nn.Module, fns: Mapping[str, Callable], *, pre: bool = False) -> Iterator[list[str]]:
    """Call ``fns[pattern]`` on every forward of each module whose path matches ``pattern``.

    Args:
        model: the module tree (usually ``lab.model``).
        fns: pattern (exact path, glob such as ``*.self_attn.*_proj`` or regex) -> function. A forward
            hook is ``fn(path, module, args, output)``; with ``pre=True`` it is ``fn(path, module, args)``
            and runs before the module. As in torch, a non-None return replaces the output (the args).
        pre: register forward pre-hooks instead of forward hooks.

    Yields:
        The hooked module paths, in registration order.

    Every pattern is checked before any hook is registered, and the hooks are removed in ``finally``,
    whatever happens in the block.

    Raises:
        WorkbenchError: a pattern matches no module.
    """
    modules = dict(model.named_modules())
    plan = [(path, fn) for pattern, fn in fns.items() for path in match_modules(model, pattern)]
    handles = []
    try:
        for path, fn in plan:
            if pre:
                handle = modules[path].register_forward_pre_hook(
                    lambda module, args, _p=path, _fn=fn: _fn(_p, module, args))
            else:
                handle = modules[path].register_forward_hook(
                    lambda module, args, output, _p=path, _fn=fn: _fn(_p, module, args, output))
            handles.append(handle)
        yield [path for path, _ in plan]
    finally:
        for handle in handles:
            handle.remove()
