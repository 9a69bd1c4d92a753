"""Scoring an adapter that is not in the lab, without adding it to the user's lab for good.

``installed(lab, adapter)`` puts a shallow twin of ``adapter`` into the lab under a private name (one
starting with ``_``) for the duration of a ``with`` block and always takes it out again, also when the
block raises. The twin shares the adapter's tensors (no copy) but not its ``LoraFactors`` objects, so
the caller's adapter is left exactly as it was (``add_adapter`` would otherwise turn its factors into
the lab's parameters and stamp its base fingerprint).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from workbench.adapters import Adapter, LoraFactors

PREFIX = "_private_"


def free_name(lab, stem: str) -> str:
    """``stem``, or ``stem_2``, ``stem_3`` ... whichever the lab does not use yet (adapters and routers)."""
    taken = set(lab.adapters) | set(lab.routers) | {"base"}
    if stem not in taken:
        return stem
    return next(f"{stem}_{i}" for i in range(2, 100_000) if f"{stem}_{i}" not in taken)


def twin(adapter: Adapter, name: str) -> Adapter:
    """A new Adapter named ``name`` over the same tensors (new factor objects, copied lineage)."""
    return Adapter(name=name, modules={p: LoraFactors(f.A, f.B, f.alpha) for p, f in adapter.modules.items()},
                   scaling=adapter.scaling, base_fingerprint=adapter.base_fingerprint,
                   lineage=dict(adapter.lineage), metadata=dict(adapter.metadata))


@contextmanager
def installed(lab, adapter: Adapter) -> Iterator[str]:
    """``with installed(lab, merged) as name: lab.evaluate(name, tasks)``: private, always removed.

    Args:
        lab: the ``Workbench`` to score in.
        adapter: any adapter made for the lab's base (checked as ``add_adapter`` checks it).

    Yields:
        The private name it is installed under while the block runs.
    """
    name = lab.add_adapter(twin(adapter, free_name(lab, PREFIX + adapter.name))).name
    try:
        yield name
    finally:
        lab.remove_adapter(name)
