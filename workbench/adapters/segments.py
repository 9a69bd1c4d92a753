"""Mixed batches the way S-LoRA and Punica serve them: rows grouped into segments by adapter,
shrink (x·Aᵀ) then expand (·Bᵀ) with factors read from the layer's ``FactorPool``.

For one ``LoraLayer`` and one batch of B rows (row i uses adapter ``rows[i]``, None = base):

    rows are grouped by rank bucket, then by slot (adapter) inside the bucket;
    per bucket, either
      padded  (decode; Punica's BGMV):  X (U, m·T, in) = the bucket's rows, m rows per adapter
              (short segments padded with a copy of a real row, dropped afterwards)
              h = bmm(X, At[U]) · s[U]      (U, m·T, r)
              y = bmm(h, Bt[U])             (U, m·T, out)
      segments (prefill; Punica's SGMV): one GEMM pair per segment on the rows sorted by adapter,
              each reading its slot of the stack in place (no gather, no padding);
    y goes back to its rows with one ``index_copy_``; base rows keep Δ = 0.

The base GEMM is done once for the whole batch by the layer. Ranks never share a bucket, so a
rank-8 adapter never pays for a rank-64 one. Which of the two a bucket takes is decided per
forward from the plan: padded while the padding is cheap (at most 16 rows·tokens per adapter, or
at most 25 % padding), segments otherwise. ``At[U]`` is a slice of the stack (no copy) when the
adapters present fill a contiguous run of slots, as they do when every pooled adapter is present;
otherwise it is an ``index_select`` of the adapters present (one copy of their factors).

The plan (which rows go where) depends only on the row names and the pool's slots, so it is cached
on the layer and rebuilt only when either changes: during generation with a KV cache every
decode step reuses it, and each sequence keeps its adapter.

Reference: S-LoRA (Sheng et al., MLSys 2024), §5 "heterogeneous batching"; Punica (Chen et al.,
MLSys 2024), SGMV (segmented gather matrix-vector) and BGMV (batched gather matrix-vector).
Deviations: no custom kernel. Both run as torch GEMMs on the CPU or GPU: BGMV as a ``bmm`` over
adapters (rows of one adapter share its GEMM) rather than a per-row gather kernel; SGMV as a Python
loop of GEMMs over segments. The scaling s multiplies the rank-r activations (S-LoRA and Punica
fold it the same way) where peft multiplies the output; the results differ by rounding only.
What the pool path does not do, the layer does with its per-adapter loop (see ``refusal``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from workbench.adapters.pool import FactorPool

PAD_ROWS = 16  # pad segments up to this many rows·tokens per adapter regardless of waste (decode)
PAD_WASTE = 1.25  # otherwise pad only while padded rows <= 1.25 × real rows


@dataclass
class BucketPlan:
    """Where the rows of one rank bucket go. ``rows``: batch rows sorted by slot (n,)."""

    r: int
    rows: torch.Tensor  # (n,) batch row indices, grouped by adapter
    slots: list[int]  # U distinct slots, ascending
    counts: list[int]  # rows per slot
    gather: torch.Tensor  # (U·m,) batch row for each padded position (pads repeat a real row)
    valid: torch.Tensor | None  # (n,) padded positions holding real rows; None when there is no pad
    m: int  # rows per adapter after padding

    @property
    def contiguous(self) -> bool:
        return self.slots[-1] - self.slots[0] + 1 == len(self.slots)


@dataclass
class Plan:
    """The batch plan of one layer for one assignment of adapters to rows."""

    rows: tuple
    generation: int
    device: torch.device
    buckets: list[BucketPlan] = field(default_factory=list)


def refusal(layer, names, x: torch.Tensor) -> str | None:
    """Why the pool path cannot serve these adapters here (then the layer loops), or None.

    The loop stays for what the pool does not hold or cannot differentiate: embeddings (ids, not
    activations), DoRA (its update depends on the base weight's column norms), ``lora_bias``,
    trained base-parameter deltas, dropout while training, gradients to the factors (the pool is
    a copy; training reaches the layer's parameters only through the loop) and a recorder on
    ``hook_rank.<adapter>`` (the per-adapter rank activations exist only in the loop).
    """
    if layer.embedding:
        return "embedding layer"
    grad = torch.is_grad_enabled()
    for n in names:
        if n not in layer.lora_A:
            return f"adapter {n!r} has trained parameters only here"
        if n in layer.magnitude or n in layer.lora_bias or layer.param_deltas.get(n):
            return f"adapter {n!r} is DoRA, has a lora_bias or trained parameters"
        if layer.training and layer.dropout.get(n, 0.0):
            return f"adapter {n!r} has dropout and the layer is training"
        if grad and (layer.lora_A[n].requires_grad or layer.lora_B[n].requires_grad):
            return f"adapter {n!r} needs gradients"
        if layer.hook_rank[n]._forward_hooks or layer.hook_rank[n]._forward_pre_hooks:
            return f"hook_rank.{n} is recorded"
    return None


def plan_for(pool: FactorPool, rows: tuple, held: set[str], device: torch.device) -> Plan:
    """Group the batch rows by rank bucket and adapter (rows whose adapter is absent here: base)."""
    groups: dict[int, dict[int, list[int]]] = {}  # rank -> slot -> batch rows
    for i, name in enumerate(rows):
        if name is None or name not in held:
            continue
        r, slot = pool.locate(name)
        groups.setdefault(r, {}).setdefault(slot, []).append(i)
    plan = Plan(rows, pool.generation, device)
    for r, by_slot in sorted(groups.items()):
        slots = sorted(by_slot)
        counts = [len(by_slot[s]) for s in slots]
        m = max(counts)
        order = [i for s in slots for i in by_slot[s]]
        gather = [by_slot[s][min(j, len(by_slot[s]) - 1)] for s in slots for j in range(m)]
        valid = None
        if any(c != m for c in counts):
            valid = torch.tensor([u * m + j for u, c in enumerate(counts) for j in range(c)], device=device)
        plan.buckets.append(BucketPlan(r, torch.tensor(order, device=device), slots, counts,
                                       torch.tensor(gather, device=device), valid, m))
    return plan


def mixed_delta(layer, x: torch.Tensor, rows: tuple, delta: torch.Tensor) -> torch.Tensor:
    """Fill ``delta`` (B, T, out) with each row's adapter update, read from the layer's pool.

    Args:
        layer: the ``LoraLayer``; its pool is synced for the adapters present first.
        x: (B, T, in) the layer's input.
        rows: one adapter name (or None) per batch row.
        delta: (B, T, out) zeros, in the accumulation dtype; returned filled.
    """
    pool: FactorPool = layer.pool
    held = set(layer.lora_A.keys())
    present = [n for n in dict.fromkeys(rows) if n is not None and n in held]
    pool.sync(layer, present)
    plan = layer._plan
    if plan is None or plan.generation != pool.generation or plan.device != x.device or plan.rows != rows:
        plan = layer._plan = plan_for(pool, rows, held, x.device)
    T, fan_in = x.shape[1], x.shape[2]
    for bp in plan.buckets:
        bucket = pool.buckets[bp.r]
        xb = x.to(bucket.At.dtype)
        if bp.m * T <= PAD_ROWS or len(bp.gather) <= PAD_WASTE * len(bp.rows):
            y = _padded(bp, bucket, xb, T, fan_in)
        else:
            y = _segments(bp, bucket, xb, T, fan_in)
        delta.index_copy_(0, bp.rows, y.to(delta.dtype))
    return delta


def _padded(bp: BucketPlan, bucket, x: torch.Tensor, T: int, fan_in: int) -> torch.Tensor:
    """BGMV-style: one bmm pair over the adapters present, m rows each. Returns (n, T, out)."""
    U = len(bp.slots)
    if bp.contiguous:  # a view of the stack: factors read in place
        lo, hi = bp.slots[0], bp.slots[-1] + 1
        At, Bt, s = bucket.At[lo:hi], bucket.Bt[lo:hi], bucket.scale[lo:hi]
    else:
        idx = torch.tensor(bp.slots, device=x.device)
        At, Bt, s = bucket.At.index_select(0, idx), bucket.Bt.index_select(0, idx), bucket.scale[idx]
    X = x.index_select(0, bp.gather).view(U, bp.m * T, fan_in)  # (U, m·T, in)
    h = torch.bmm(X, At) * s.view(U, 1, 1)  # (U, m·T, r)
    y = torch.bmm(h, Bt).view(U * bp.m, T, -1)  # (U·m, T, out)
    return y if bp.valid is None else y.index_select(0, bp.valid)  # (n, T, out)


def _segments(bp: BucketPlan, bucket, x: torch.Tensor, T: int, fan_in: int) -> torch.Tensor:
    """SGMV-style: one GEMM pair per adapter on its contiguous run of sorted rows. Returns (n, T, out)."""
    xs = x.index_select(0, bp.rows)  # (n, T, in), grouped by adapter
    y = xs.new_empty(len(bp.rows), T, bucket.fan_out)  # (n, T, out)
    start = 0
    for slot, c in zip(bp.slots, bp.counts, strict=True):
        seg = xs[start:start + c].reshape(c * T, fan_in)  # (c·T, in)
        h = (seg @ bucket.At[slot]) * bucket.scale[slot]  # (c·T, r)
        y[start:start + c] = (h @ bucket.Bt[slot]).view(c, T, -1)
        start += c
    return y
