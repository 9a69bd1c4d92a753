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

import torch

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


# Context entries that hold one value per batch row (sliced for a router that serves some rows of a
# mixed batch). ``task`` may be 1-D (B,); elsewhere only tensors with a row axis (B, ...) of two or
# more dims are per row: a 1-D ``prompt_scale`` (out,) is shared by the batch and stays whole.
_PER_ROW_1D = {"task"}


@contextmanager
def rows_context(idx, batch: int) -> Iterator[None]:
    """Inside the block the routing context holds only rows ``idx`` of a batch of ``batch`` rows.

    Every per-row value (``task``, ``attention_mask``, ``token_types``, ``context``, a (B, out)
    ``prompt_scale``, and each entry of ``token_masks``/``class_masks``/a dict ``prompt_scale``) is
    indexed by ``idx``; shared values (a (1, out) or (out,) scale, anything not batch-sized) stay.
    """
    sliced = {k: _rows_of(k, v, idx, batch) for k, v in _CONTEXT.get().items()}
    token = _CONTEXT.set(MappingProxyType(sliced))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def _rows_of(key: str, value: Any, idx, batch: int) -> Any:
    if isinstance(value, dict | MappingProxyType):
        return {k: _rows_of(key, v, idx, batch) for k, v in value.items()}
    if key in _PER_ROW_1D and isinstance(value, list | tuple) and len(value) == batch:
        value = torch.as_tensor(value)
    if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == batch:
        if value.dim() >= 2 or key in _PER_ROW_1D:
            return value[idx.to(value.device)]
    return value
