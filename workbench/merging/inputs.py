"""What a merge method sees (``MergeInputs``) and the module-wise runners behind the decorators.

Random numbers: each source gets its own generator per module, seeded from (seed, module path,
source name), so an adapter's DARE mask does not depend on which other adapters are merged with it
(weight 0 then removes an adapter exactly, even for stochastic methods). ``peft_compat=True``
instead draws from one generator seeded with ``seed`` in module order, A stack before B stack, as
peft's ``add_weighted_adapter`` draws from torch's global generator after ``torch.manual_seed(seed)``.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from workbench.adapters.adapter import Adapter
from workbench.adapters.update_cache import DENSE_CACHE, adapter_fingerprint
from workbench.errors import WorkbenchError
from workbench.ops.lowrank import dense_svd

PROGRESS_FROM = 64  # merges of at least this many modules show a tqdm progress bar
BLOCK_BYTES = 2**20  # the elementwise combination runs on (K, b) blocks of this many bytes (cache-sized)

# A merge: module path -> (A' (r', in), B' (out, r')), the new adapter's factors with scale 1.
ModuleFactors = dict[str, tuple[torch.Tensor, torch.Tensor]]


@dataclass
class MergeInputs:
    """The checked sources of one merge: adapters, weights, the modules to merge and the seed."""

    adapters: list[Adapter]
    weights: list[float]
    seed: int
    paths: list[str]
    _shared: torch.Generator | None = field(default=None, repr=False)
    _fingerprints: dict = field(default_factory=dict, repr=False)
    notes: dict = field(default_factory=dict)  # what a method reports for the lineage (learned weights)

    def each(self, desc: str):
        """The module paths, with a progress bar when there are many (a 7B-sized merge)."""
        return tqdm(self.paths, desc=desc, leave=False, disable=len(self.paths) < PROGRESS_FROM)

    def present(self, path: str) -> list[int]:
        """Indices of the sources that have ``path`` (a missing module is a zero update)."""
        return [i for i, a in enumerate(self.adapters) if path in a.modules]

    def shape(self, path: str) -> tuple[int, int]:
        f = next(a.modules[path] for a in self.adapters if path in a.modules)
        return f.out_features, f.in_features

    def ranks(self, path: str) -> list[int]:
        """Ranks of the sources with ``path`` and a nonzero weight (all of them if every weight is 0)."""
        idx = self.present(path)
        live = [i for i in idx if self.weights[i] != 0] or idx
        return [self.adapters[i].modules[path].r for i in live]

    def parts(self, path: str) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[float]]:
        """[(Aᵢ (rᵢ, in), sᵢBᵢ (out, rᵢ))] in float64 and the weights, for the sources with ``path``."""
        idx = self.present(path)
        parts = []
        for i in idx:
            A, sB = self.adapters[i].factors(path)
            parts.append((A.detach().to(torch.float64), sB.detach().to(torch.float64)))
        return parts, [self.weights[i] for i in idx]

    def deltas(self, path: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense (K, out, in) stack of ΔWᵢ = (Bᵢ·Aᵢ)·sᵢ (peft's ``get_delta_weight``) and weights (K,)."""
        idx = self.present(path)
        f0 = self.adapters[idx[0]].modules[path]
        out = torch.empty(len(idx), f0.out_features, f0.in_features, dtype=f0.A.dtype)
        for k, i in enumerate(idx):
            a = self.adapters[i]
            f = a.modules[path]
            torch.matmul(f.B.detach(), f.A.detach(), out=out[k])
            out[k] *= a.scale(path)
        return out, torch.tensor([self.weights[i] for i in idx], dtype=out.dtype)

    def fingerprint(self, i: int) -> str:
        """Source ``i``'s ``adapter_fingerprint``, hashed once per merge."""
        if i not in self._fingerprints:
            self._fingerprints[i] = adapter_fingerprint(self.adapters[i])
        return self._fingerprints[i]

    def pruned(self, i: int, path: str, prune: Callable, params: dict, stochastic: bool
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(source ``i``'s ΔWᵢ of ``path`` after ``prune``, its generator's state after it), cached.

        ΔWᵢ is built as ``deltas`` builds it and pruned with the generator ``generators`` gives
        source ``i``, so the result is bit for bit what the per-module path computes. The cache key
        is the source's content fingerprint, its name and the seed (they seed the generator), the
        module, the method and its parameters. The returned tensor is shared: copy before writing.
        """
        a = self.adapters[i]
        key = (self.fingerprint(i), a.name if stochastic else None, self.seed if stochastic else None,
               path, prune.__module__, prune.__qualname__, tuple(sorted(params.items())))

        def make():
            f = a.modules[path]
            out = torch.matmul(f.B.detach(), f.A.detach())  # (out, in)
            out *= a.scale(path)
            g = torch.Generator().manual_seed(zlib.crc32(f"{self.seed}|{path}|{a.name}".encode()))
            prune(out, g, **params)
            return out, g.get_state()

        return DENSE_CACHE.get(key, make)

    def generators(self, path: str, *, shared: bool = False) -> list[torch.Generator]:
        """One generator per source with ``path``, or peft's single stream (``shared``)."""
        idx = self.present(path)
        if shared:
            if self._shared is None:
                self._shared = torch.Generator().manual_seed(self.seed)
            return [self._shared] * len(idx)
        return [torch.Generator().manual_seed(
            zlib.crc32(f"{self.seed}|{path}|{self.adapters[i].name}".encode())) for i in idx]


def resolve_rank(rank: int | None, ranks: list[int], default: str) -> int:
    """``rank`` or, when None, Σrᵢ (``"sum"``) or max rᵢ (``"max"``) of the module's sources."""
    if rank is not None:
        return int(rank)
    return sum(ranks) if default == "sum" else max(ranks)


def run_factored(inputs: MergeInputs, fn: Callable, params: dict, *, rank_default: str | None,
                 stochastic: bool) -> ModuleFactors:
    """Call a factored method on every module."""
    out: ModuleFactors = {}
    for path in inputs.each(fn.__name__):
        parts, weights = inputs.parts(path)
        kwargs = dict(params)
        if rank_default is not None:
            kwargs["rank"] = resolve_rank(params.get("rank"), inputs.ranks(path), rank_default)
        if stochastic:
            kwargs["generators"] = inputs.generators(path)
        out[path] = fn(parts, weights, **kwargs)
    return out


def run_elementwise(inputs: MergeInputs, fn: Callable, params: dict, *, rank_default: str,
                    factor_space: bool, prune: Callable | None = None, combine: Callable | None = None,
                    stochastic: bool = False) -> ModuleFactors:
    """Call an elementwise method on each module's dense ΔW stack (or, for peft_compat on a plain
    name, on the stacks of A and of B as peft does), then factor the result back.

    With ``prune`` (each ΔWᵢ alone) and ``combine`` (the pruned stack and the weights), the method's
    two steps, the pruned ΔWᵢ come from the cache (``MergeInputs.pruned``) and are combined in
    cache-sized (K, b) blocks of their flattened entries (``_run_stacked``); ``fn`` is the two in
    sequence on one module, so both paths give the same numbers (tests/merging/test_fast_equals_reference.py).
    peft_compat (one shared random stream in module order) takes the per-module path.
    """
    own = {k: v for k, v in params.items() if k not in ("rank", "truncate", "peft_compat")}
    peft_compat = bool(params.get("peft_compat", False))
    if prune is not None and combine is not None and not peft_compat:
        return _run_stacked(inputs, prune, combine, params, own, rank_default=rank_default,
                            stochastic=stochastic)
    out: ModuleFactors = {}
    for path in inputs.each(fn.__name__):
        gens = inputs.generators(path, shared=peft_compat)
        if peft_compat and factor_space:
            out[path] = _peft_factor_space(inputs, path, fn, own, gens)
            continue
        deltas, weights = inputs.deltas(path)  # (K, out, in), (K,)
        merged = fn(deltas, weights, generators=gens, peft_compat=peft_compat, **own)  # (out, in)
        del deltas
        rank = resolve_rank(params.get("rank"), inputs.ranks(path), rank_default)
        out[path] = dense_svd(merged, rank, params.get("truncate", "exact"), gens[0] if gens else None)
    return out


def _run_stacked(inputs: MergeInputs, prune: Callable, combine: Callable, params: dict, own: dict, *,
                 rank_default: str, stochastic: bool) -> ModuleFactors:
    """The elementwise runner on cached pruned updates, combined in cache-sized blocks.

    ``combine`` is elementwise over everything but the source axis (every registered one is), so
    it runs on (K, b) blocks of the flattened modules of one shape: each block gathers b entries of
    the K cached pruned updates (``BLOCK_BYTES`` in all, so the stack stays in cache while the
    sign election, the masks and the mean pass over it) and writes b entries of the merged module.
    Every entry sees the same operations in the same order as on the whole stack, so the result is
    bit for bit the per-module one (tests/merging/test_fast_equals_reference.py).

    Deviation from the first fast version (issue 23): it combined up to 256 MiB stacks of whole
    modules, which streamed each of the ~10 passes of a TIES combination through main memory; the
    blocks keep them in cache (2-4x less time on the ready adapters' 576x576 modules).
    """
    groups: dict[tuple, list[str]] = {}
    for path in inputs.paths:
        idx = tuple(inputs.present(path))
        groups.setdefault((inputs.shape(path), idx), []).append(path)
    how = params.get("truncate", "exact")
    out: ModuleFactors = {}
    bar = tqdm(total=len(inputs.paths), desc=prune.__module__.rsplit(".", 1)[-1], leave=False,
               disable=len(inputs.paths) < PROGRESS_FROM)
    for ((out_f, in_f), idx), paths in groups.items():
        dtype = inputs.adapters[idx[0]].modules[paths[0]].A.dtype
        weights = torch.tensor([inputs.weights[i] for i in idx], dtype=dtype)  # (K,)
        n = out_f * in_f
        step = max(1, BLOCK_BYTES // (len(idx) * torch.finfo(dtype).bits // 8))  # entries per block
        block = torch.empty(len(idx), min(step, n), dtype=dtype)  # (K, b), reused
        for path in paths:
            pruned = []
            state = None
            for k, i in enumerate(idx):
                t, s = inputs.pruned(i, path, prune, own, stochastic)
                pruned.append(t.reshape(-1))  # (n,) shared: read only
                if k == 0:
                    state = s
            merged = torch.empty(n, dtype=dtype)  # (out·in,)
            for start in range(0, n, step):
                stop = min(start + step, n)
                blk = block[:, : stop - start]
                for k, t in enumerate(pruned):
                    blk[k].copy_(t[start:stop])
                merged[start:stop] = combine(blk, weights, peft_compat=False, **own)
            del pruned
            rank = resolve_rank(params.get("rank"), inputs.ranks(path), rank_default)
            g = None
            if how == "lowrank":  # the first source's generator, where its pruning left it
                g = torch.Generator()
                g.set_state(state)
            out[path] = dense_svd(merged.view(out_f, in_f), rank, how, g)
            bar.update()
    bar.close()
    return {path: out[path] for path in inputs.paths}


def _peft_factor_space(inputs: MergeInputs, path: str, fn: Callable, own: dict,
                       gens: list[torch.Generator]) -> tuple[torch.Tensor, torch.Tensor]:
    """peft's ``_generalized_task_arithmetic_weighted_adapter``: the method runs on the stack of the
    Aᵢ with weights sign(wᵢsᵢ)·√|wᵢsᵢ| and on the stack of the Bᵢ with weights √|wᵢsᵢ|, separately."""
    idx = inputs.present(path)
    ranks = {inputs.adapters[i].modules[path].r for i in idx}
    if len(ranks) != 1:
        raise WorkbenchError(f"module {path!r}: peft_compat needs equal ranks (got {sorted(ranks)})")
    ws = [inputs.weights[i] * inputs.adapters[i].scale(path) for i in idx]
    a = torch.tensor([(1.0 if w >= 0 else -1.0) * abs(w) ** 0.5 for w in ws])
    b = torch.tensor([abs(w) ** 0.5 for w in ws])
    As = torch.stack([inputs.adapters[i].modules[path].A.detach().clone() for i in idx])  # (K, r, in)
    Bs = torch.stack([inputs.adapters[i].modules[path].B.detach().clone() for i in idx])  # (K, out, r)
    A = fn(As, a.to(As.dtype), generators=gens, peft_compat=True, **own)
    B = fn(Bs, b.to(Bs.dtype), generators=gens, peft_compat=True, **own)
    return A, B
