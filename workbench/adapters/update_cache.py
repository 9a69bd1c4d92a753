"""The cache of dense per-source updates that merges and previews reuse while the process lives.

    from workbench.adapters.update_cache import DENSE_CACHE
    DENSE_CACHE.budget = 2 * 2**30     # bytes it may hold (default 768 MiB); 0 turns it off
    DENSE_CACHE.clear()                # forget everything (tests, benchmarks)

An elementwise merge first sparsifies each source's dense ΔWᵢ on its own (TIES' trim, DARE's and
DELLA's drops, Breadcrumbs' band): that step depends on the source and the method's parameters,
never on the weights. Its result is kept here under a key that starts with the source's content
fingerprint (``adapter_fingerprint``: a hash of its factors and scaling), so a change of weights
re-runs only the combination step, and a changed adapter (trained further, edited) gets a new
fingerprint and never meets its old entries: invalidation is by content, not by name. Entries are
evicted least recently used first when the byte budget is exceeded; an entry larger than an eighth
of the budget is not kept (a 7B-sized module's ΔW: caching it would only add to the peak memory of a
merge that visits each module once).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import torch

from workbench.adapters.adapter import Adapter

DEFAULT_BUDGET = 768 * 2**20  # bytes: the four ready adapters' trimmed updates (425 MiB) fit


def _nbytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, tuple | list):
        return sum(_nbytes(v) for v in value)
    return 0


class UpdateCache:
    """A least-recently-used map of tensors (or tuples holding tensors) bounded by bytes."""

    def __init__(self, budget: int = DEFAULT_BUDGET):
        self.budget = budget
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self.nbytes = 0
        self.hits = self.misses = 0

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """The value under ``key``, made (and kept, if it fits) on a miss. Callers must not modify it."""
        if key in self._entries:
            self._entries.move_to_end(key)
            self.hits += 1
            return self._entries[key][0]
        self.misses += 1
        value = make()
        size = _nbytes(value)
        if 0 < size <= self.budget // 8:
            self._entries[key] = (value, size)
            self.nbytes += size
            while self.nbytes > self.budget:
                _, (_, dropped) = self._entries.popitem(last=False)
                self.nbytes -= dropped
        return value

    def clear(self) -> None:
        self._entries.clear()
        self.nbytes = 0
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)


DENSE_CACHE = UpdateCache()


def adapter_fingerprint(adapter: Adapter) -> str:
    """``"sha256:" + 16 hex``: a hash of the adapter's modules, factors and scaling (its content)."""
    digest = hashlib.sha256(adapter.scaling.encode())
    for path in sorted(adapter.modules):
        f = adapter.modules[path]
        digest.update(f"{path}|{f.alpha}|{tuple(f.A.shape)}|{tuple(f.B.shape)}".encode())
        for t in (f.A, f.B, *(x for x in (f.magnitude, f.bias) if x is not None)):
            digest.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return "sha256:" + digest.hexdigest()[:16]
