"""FactorPool: one layer's LoRA factors stacked per rank bucket, for mixed batches.

A mixed batch (one adapter per row, ``lab.use(rows=[...])``) reads a different A and B for each
segment of rows. Gathering them from a Python dict per forward costs one kernel launch (and a Python
round trip) per adapter; S-LoRA keeps every adapter's factors in one unified pool and Punica's
SGMV/BGMV kernels index into it by segment. Here each ``LoraLayer`` holds a ``FactorPool``: per rank
``r`` one ``RankBucket`` with

    At (cap, in, r)    A transposed, so ``x @ At[slot]`` and ``bmm(X, At[U])`` read it contiguously
    Bt (cap, r, out)   B transposed
    scale (cap,)       the adapter's scaling s

Slots are filled when an adapter is added and emptied (swap with the last) when it is removed;
capacity doubles when full, so adding N adapters copies O(N) factors in all. Nothing is restacked
per forward: ``sync`` only compares each used adapter's parameters with what its slot holds (the
same tensor, its ``_version`` counter, its storage, its scaling) and copies that one slot again when
training or an edit changed it.

Reference: S-LoRA (Sheng et al., MLSys 2024), §4 "unified memory pool"; Punica (Chen et al.,
MLSys 2024), SGMV/BGMV.
Deviations: S-LoRA's pool is the only copy of the factors (paged together with the KV cache on the
GPU). Here the layer's ``lora_A``/``lora_B`` parameters stay independent tensors (state_dict,
safetensors, optimizers and the Adapter all hold them), so the pool is a second copy, built on the
first mixed forward and kept up to date after that; a lab that never serves a mixed batch pays
nothing. No paging: the stacks live on the base layer's device.
"""

from __future__ import annotations

import torch
from torch import nn


class RankBucket:
    """The factors of every pooled adapter of rank ``r`` in one layer, stacked (see module doc)."""

    def __init__(self, r: int, fan_in: int, fan_out: int, dtype: torch.dtype, device: torch.device):
        self.r, self.fan_in, self.fan_out = r, fan_in, fan_out
        self.names: list[str] = []  # slot -> adapter name
        self.slot: dict[str, int] = {}  # adapter name -> slot
        self.sig: list[tuple] = []  # slot -> what the slot was copied from (see FactorPool.sync)
        self.At = torch.empty(0, fan_in, r, dtype=dtype, device=device)  # (cap, in, r)
        self.Bt = torch.empty(0, r, fan_out, dtype=dtype, device=device)  # (cap, r, out)
        self.scale = torch.empty(0, dtype=dtype, device=device)  # (cap,)

    def __len__(self) -> int:
        return len(self.names)

    @torch.no_grad()
    def put(self, name: str, A: torch.Tensor, B: torch.Tensor, s: float, sig: tuple) -> None:
        """Copy adapter ``name``'s factors (A (r, in), B (out, r)) into its slot (a new one if needed)."""
        if name not in self.slot:
            if len(self.names) == self.At.shape[0]:
                self._grow(max(4, 2 * len(self.names)))
            self.slot[name] = len(self.names)
            self.names.append(name)
            self.sig.append(sig)
        i = self.slot[name]
        self.At[i].copy_(A.T)
        self.Bt[i].copy_(B.T)
        self.scale[i] = s
        self.sig[i] = sig

    def drop(self, name: str) -> None:
        """Empty ``name``'s slot: the last adapter moves into it (slots stay dense, 0..len-1)."""
        i = self.slot.pop(name)
        last = len(self.names) - 1
        if i != last:
            moved = self.names[last]
            self.At[i].copy_(self.At[last])
            self.Bt[i].copy_(self.Bt[last])
            self.scale[i] = self.scale[last]
            self.names[i], self.sig[i], self.slot[moved] = moved, self.sig[last], i
        self.names.pop()
        self.sig.pop()

    def _grow(self, cap: int) -> None:
        n = len(self.names)
        At = self.At.new_empty(cap, self.fan_in, self.r)
        Bt = self.Bt.new_empty(cap, self.r, self.fan_out)
        scale = self.scale.new_empty(cap)
        At[:n], Bt[:n], scale[:n] = self.At[:n], self.Bt[:n], self.scale[:n]
        self.At, self.Bt, self.scale = At, Bt, scale


class FactorPool:
    """Every plain-LoRA adapter of one ``LoraLayer``, stacked per rank (``RankBucket``).

    ``generation`` changes whenever a slot is assigned or freed, so a cached batch plan
    (``workbench.adapters.segments``) knows when its slot indices went stale.
    """

    def __init__(self) -> None:
        self.buckets: dict[int, RankBucket] = {}  # rank -> bucket
        self.where: dict[str, int] = {}  # adapter name -> rank of its bucket
        self.generation = 0
        self.built = False

    def build(self, layer: nn.Module) -> None:
        """Pool every adapter of ``layer`` (called on the first mixed forward)."""
        self.buckets, self.where, self.built = {}, {}, True
        self.generation += 1
        for name in layer.lora_A:
            self.add(layer, name)

    def add(self, layer: nn.Module, name: str) -> None:
        """Pool (or re-pool) adapter ``name`` of ``layer``; a no-op until the pool is built."""
        if not self.built:
            return
        self.remove(name)
        A, B = layer.lora_A[name], layer.lora_B[name]
        r = A.shape[0]
        bucket = self.buckets.get(r)
        if bucket is None or bucket.At.dtype != A.dtype or bucket.At.device != A.device:
            bucket = self.buckets[r] = RankBucket(r, A.shape[1], B.shape[0], A.dtype, A.device)
            for other in [n for n, rr in self.where.items() if rr == r]:  # dtype or device moved:
                del self.where[other]  # the others re-pool themselves through sync
        bucket.put(name, A, B, layer.scaling[name], _signature(A, B, layer.scaling[name]))
        self.where[name] = r
        self.generation += 1

    def remove(self, name: str) -> None:
        """Free ``name``'s slot (no-op when it is not pooled)."""
        r = self.where.pop(name, None)
        if r is not None and name in self.buckets[r].slot:
            self.buckets[r].drop(name)
            if not len(self.buckets[r]):
                del self.buckets[r]
            self.generation += 1

    def sync(self, layer: nn.Module, names) -> None:
        """Make the slots of ``names`` hold what the layer's parameters hold now.

        Per adapter this is a comparison of a small tuple; a slot is copied again only when its
        factors changed since (an optimizer step, an in-place edit, ``model.to(...)``).
        """
        if not self.built:
            self.build(layer)
        for name in names:
            A, B, s = layer.lora_A[name], layer.lora_B[name], layer.scaling[name]
            r = self.where.get(name)
            bucket = self.buckets.get(r) if r is not None else None
            if bucket is None or name not in bucket.slot:
                self.add(layer, name)
                continue
            sig = _signature(A, B, s)
            if bucket.sig[bucket.slot[name]] != sig:
                if r != A.shape[0] or bucket.At.dtype != A.dtype or bucket.At.device != A.device:
                    self.add(layer, name)
                else:
                    bucket.put(name, A, B, s, sig)

    def locate(self, name: str) -> tuple[int, int]:
        """(rank, slot) of a pooled adapter."""
        r = self.where[name]
        return r, self.buckets[r].slot[name]


def _signature(A: torch.Tensor, B: torch.Tensor, s: float) -> tuple:
    """What a slot was copied from: the tensors, their storage and in-place version counters, s."""
    return (id(A), A.data_ptr(), A._version, id(B), B.data_ptr(), B._version, A.dtype, s)
