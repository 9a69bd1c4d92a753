"""Routing context: per-batch facts that some routers read (task ids, token types, prompt scales).

The trainer and the views set it around a forward; a router asks for what it needs by name and gets a
clear error when it is missing::

    with routing_context(task=torch.tensor([0, 2]), token_types=types):
        lab.model(**batch)

Known keys (each router documents what it reads):
    ``task`` (B,) int: the task index of each sample (LoRAMoE's data type, MeteoRA's gate labels).
    ``attention_mask`` (B, T): real tokens (balance statistics skip padding where a spec says so).
    ``token_types`` (B, T) int: a type id per token (mask-routed LoRA: 0 language, 1 vision, ...).
    ``token_masks`` {adapter: (B, T)}: where each adapter may act (TARA).
    ``prompt_scale`` {name: (B, out)} or (B, out): per-output-channel scales (WavLLM).
    ``class_masks`` {adapter: (B, T)}: the class word's tokens (TARA's alignment loss).
    ``context`` (B, d): a context vector (RecLoRA).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

from workbench.errors import WorkbenchError

_EMPTY: MappingProxyType = MappingProxyType({})
_CONTEXT: ContextVar[MappingProxyType] = ContextVar("routing_context", default=_EMPTY)


@contextmanager
def routing_context(**values: Any) -> Iterator[None]:
    """Add ``values`` to the routing context inside the block (nested blocks see both)."""
    token = _CONTEXT.set(MappingProxyType({**_CONTEXT.get(), **values}))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def context_value(key: str, *, needed_by: str, default: Any = ...) -> Any:
    """The context value ``key``; without a default, a missing key is an error naming who needs it."""
    ctx = _CONTEXT.get()
    if key in ctx:
        return ctx[key]
    if default is not ...:
        return default
    raise WorkbenchError(
        f"{needed_by} needs {key!r} in the routing context, which has {sorted(ctx) or 'nothing'}; "
        f"run the forward inside `with routing_context({key}=...)`"
    )


def token_mask(x, *, needed_by: str, hint: str = "pass the attention mask of this batch (B, T)"):
    """The context's ``attention_mask`` checked against ``x`` (B, T, ·), on x's device; None when absent."""
    mask = context_value("attention_mask", needed_by=needed_by, default=None)
    if mask is None:
        return None
    if tuple(mask.shape) != tuple(x.shape[:-1]):
        raise WorkbenchError(f"{needed_by}: the routing context's attention_mask is {tuple(mask.shape)} but "
                             f"the input has {tuple(x.shape[:-1])} (B, T) tokens; {hint}")
    return mask.to(x.device)
