"""Routers in mixed batches: a router serves the rows that name it, plain adapters and the base the rest.

In a mixed batch (``lab.use(rows=["smora", "a0", None])``) a router's computation is applied only to
its own rows, as if those rows were run alone with the router:

    linear level (``LoraLayer.routes``):  Δ[idx] = router(x[idx], base)          (n, T, out)
    block level (``RoutedBlock.routes``): y[idx] = router(x[idx], block)         (n, T, d)
                                          y[rest] = block(x[rest]) with the rest's adapters

with the routing context (task ids, token types, masks, context vectors, prompt scales) cut to the
same rows (``routing_context.rows_context``). Every registered mechanism decides per token or per
sequence from that row alone in inference, so its rows equal those rows run alone (tested to 1e-5).

Not per row, refused with a ``WorkbenchError``:
    - any router while training: its auxiliary losses (load balance, LoRAMoE's localized balance,
      LoRA-Mixer's specialization, MeteoRA's gate loss) and its bias updates (SMoRA's and FlyLoRA's
      balancing bias) are statistics over the batch; over a subset of rows they would be another
      loss. Train a router on whole batches.
    - a mechanism that sets ``per_row`` (the reason) on its class: none of the registered ones do.
    - a block router whose block takes arguments that cannot be cut by rows (a KV cache object,
      say): only tensors with the batch's rows (and non-tensors such as flags) can.

Reference: S-LoRA (Sheng et al., MLSys 2024), §5 heterogeneous batching; Punica (Chen et al.,
MLSys 2024), SGMV: each segment of rows runs its own adapter's computation.
Deviations: S-LoRA and Punica serve plain LoRA only; a router is served here as one more segment
(its rows gathered, its forward run on them, the result scattered back), not through the factor
pool: its factors are selected per token, not per row. A block router's rows and the other rows run
the block separately (two forwards of the block on disjoint rows). A router's ``hook_route`` record
covers its own rows only.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from workbench.adapters.composition import Composition
from workbench.errors import WorkbenchError
from workbench.routing.context import rows_context


def check_rows(router: nn.Module, name: str) -> None:
    """Refuse a router in a mixed batch where its per-row semantics are not defined (see module doc)."""
    reason = getattr(router, "per_row", "")
    if reason:
        raise WorkbenchError(f"router {name!r} cannot serve some rows of a mixed batch: {reason}; "
                             "use it for the whole batch (lab.use(name))")
    if router.training:
        raise WorkbenchError(
            f"router {name!r} is training in a mixed batch: its auxiliary losses and balancing updates "
            "are statistics over the whole batch, not per row; train it on whole batches "
            "(lab.use(name)) and mix it with other adapters only in inference (model.eval())")


def row_groups(rows: tuple, names) -> dict[str | None, torch.Tensor]:
    """{name: (n,) row indices} for each of ``names`` present in ``rows``; None: every other row."""
    groups: dict[str | None, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r if r in names else None, []).append(i)
    return {k: torch.tensor(v) for k, v in groups.items()}


def router_rows(router: nn.Module, name: str, x: torch.Tensor, idx: torch.Tensor,
                base: nn.Module) -> torch.Tensor:
    """A linear-level router's Δ on rows ``idx`` of ``x`` (B, T, in) alone: (n, T, out)."""
    check_rows(router, name)
    idx = idx.to(x.device)
    with rows_context(idx, x.shape[0]):
        return router(x.index_select(0, idx), base)


@contextmanager
def restricted(module: nn.Module, rows: tuple):
    """Inside the block every ``LoraLayer``/``RoutedBlock`` under ``module`` sees only ``rows``."""
    inner = [m for m in module.modules() if isinstance(getattr(m, "composition", None), Composition)]
    before = [m.composition for m in inner]
    for m in inner:
        m.composition = Composition(rows=rows)
    try:
        yield
    finally:
        for m, c in zip(inner, before, strict=True):
            m.composition = c


def block_rows(owner, x: torch.Tensor, args: tuple, kwargs: dict) -> torch.Tensor:
    """A ``RoutedBlock``'s output for a mixed batch: each router's rows through it, the rest through
    the block with their own adapters. x (B, T, d) -> (B, T, d)."""
    rows, B = owner.composition.rows, x.shape[0]
    groups = row_groups(rows, owner.routes.keys())
    out = None
    for name, idx in groups.items():
        idx = idx.to(x.device)
        sub_args = tuple(_cut(a, idx, B, owner.path) for a in args)
        sub_kwargs = {k: _cut(v, idx, B, owner.path) for k, v in kwargs.items()}
        with restricted(owner.block, tuple(rows[i] for i in idx.tolist())), rows_context(idx, B):
            if name is None:
                y = owner.block(x.index_select(0, idx), *sub_args, **sub_kwargs)
            else:
                check_rows(owner.routes[name], name)
                y = owner.routes[name](x.index_select(0, idx), owner.block)
        if out is None:
            out = x.new_empty(B, *y.shape[1:], dtype=y.dtype)
        out.index_copy_(0, idx, y)
    return out


def _cut(value, idx: torch.Tensor, batch: int, path: str):
    """One block argument cut to rows ``idx``: batch tensors indexed, non-tensors passed as they are."""
    if isinstance(value, torch.Tensor):
        if value.dim() and value.shape[0] == batch:
            return value.index_select(0, idx.to(value.device))
        if value.dim() == 0:
            return value
    elif value is None or isinstance(value, bool | int | float | str):
        return value
    raise WorkbenchError(
        f"block {path!r}: a block router in a mixed batch splits the block's inputs by rows, but one "
        f"argument is a {type(value).__name__} {tuple(getattr(value, 'shape', ())) or ''} that has no "
        "row axis; route this block for the whole batch (lab.use(name))")
