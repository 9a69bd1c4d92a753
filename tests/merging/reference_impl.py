"""The merge engine as it was before the speed work (issue 23), kept as the oracle of the fast one.

A minimal copy of the per-module code of commit fdba2de: ``workbench/ops/sparsify.py`` (masks, sign
election, means), ``ops/lowrank.py`` (stack, factored and dense SVD, truncation, norms),
``merging/inputs.py`` (dense stacks, generators, the elementwise and factored runners),
``merging/kmeans.py``, the method bodies of ``methods/*.py`` and ``analysis/interference.py``. Checks,
lineage and errors of bad input are the engine's own (unchanged) and not copied. Do not "improve"
this file: it is what the fast code must equal.

    factors = reference_merge(adapters, "ties", [1.0, 1.0], seed=0, density=0.2)  # {path: (A', B')}
"""

from __future__ import annotations

import math
import zlib

import torch

from workbench.merging import MERGES


# -- ops/sparsify.py -------------------------------------------------------------------------
def top_magnitude_mask(t, density):
    flat = t.detach().reshape(-1)
    n, k = flat.numel(), int(density * flat.numel())
    if k >= n:
        return torch.ones_like(t, dtype=torch.bool)
    if k == 0:
        return torch.zeros_like(t, dtype=torch.bool)
    mag = flat.abs()
    part = mag.cpu().numpy().copy()
    part.partition(n - k)
    cut = float(part[n - k])
    keep = mag > cut
    short = k - int(keep.sum())
    if short > 0:
        keep[(mag == cut).nonzero().squeeze(1)[:short]] = True
    return keep.view_as(t)


def magnitude_prune_(t, density):
    if density >= 1:
        return t
    return t.masked_fill_(~top_magnitude_mask(t, density), 0.0)


def random_prune_(t, density, generator, rescale=True):
    if density >= 1:
        return t
    mask = torch.bernoulli(torch.full_like(t, density), generator=generator)
    t.mul_(mask)
    return t.div_(density) if rescale else t


def outlier_keep(t, density, gamma):
    """The kept mask of ``outlier_prune_`` (None: keep all)."""
    flat = t.view(-1)
    n = flat.numel()
    keep_n = int(density * n)
    top_n = min(int(gamma * n), n - keep_n)
    if keep_n >= n:
        return None
    order = torch.sort(flat.abs(), descending=True, stable=True).indices
    keep = torch.zeros(n, dtype=torch.bool)
    keep[order[top_n:top_n + keep_n]] = True
    return keep.view_as(t)


def outlier_prune_(t, density, gamma):
    keep = outlier_keep(t, density, gamma)
    return t if keep is None else t.view(-1).mul_(keep.view(-1)).view_as(t)


def magprune_(t, density, epsilon, generator):
    if density >= 1:
        return t
    rows = t.view(-1, t.shape[-1])
    n = rows.shape[1]
    ranks = rows.abs().argsort(dim=1).argsort(dim=1).to(t.dtype)
    p = density - epsilon + (2 * epsilon) * ranks / max(n - 1, 1)
    keep = torch.bernoulli(p, generator=generator)
    rows.mul_(keep).div_(p)
    return t


def elect(stack, method="total"):
    if method == "total":
        return stack.sum(0) >= 0
    count = torch.zeros_like(stack[0])
    for k in range(stack.shape[0]):
        count += (stack[k] > 0).to(count.dtype)
        count -= (stack[k] < 0).to(count.dtype)
    return count >= 0


def ties_merge_(pruned, weights, method, unweighted):
    w = weights.to(pruned.dtype).tolist()
    if not unweighted:
        for k in range(pruned.shape[0]):
            pruned[k].mul_(w[k])
    positive = elect(pruned, method)
    count = torch.zeros_like(pruned[0])
    for k in range(pruned.shape[0]):
        agree = torch.where(positive, pruned[k] > 0, pruned[k] < 0)
        pruned[k].masked_fill_(~agree, 0.0)
        count += agree
        if unweighted:
            pruned[k].mul_(w[k])
    return pruned.sum(0).div_(count.clamp_(min=1.0))


def weighted_sum_(stack, weights):
    w = weights.view(-1, *([1] * (stack.dim() - 1))).to(stack.dtype)
    return stack.mul_(w).sum(0)


# -- ops/lowrank.py --------------------------------------------------------------------------
def stack(parts, weights):
    B = torch.cat([w * sB for (_, sB), w in zip(parts, weights, strict=True)], dim=1)
    A = torch.cat([A for A, _ in parts], dim=0)
    return B, A


def factored_svd(B, A):
    Q_B, R_B = torch.linalg.qr(B)
    Q_A, R_A = torch.linalg.qr(A.T)
    u, S, vh = torch.linalg.svd(R_B @ R_A.T, full_matrices=False)
    return Q_B @ u, S, vh @ Q_A.T


def truncate(U, S, Vh, rank):
    k = min(rank, S.shape[0])
    A, B = Vh[:k].clone(), U[:, :k] * S[:k]
    if k < rank:
        A = torch.cat([A, A.new_zeros(rank - k, A.shape[1])])
        B = torch.cat([B, B.new_zeros(B.shape[0], rank - k)], dim=1)
    return A, B


def dense_svd(D, rank, how="exact", generator=None):
    if how == "lowrank" and rank + 8 < min(D.shape):
        with torch.random.fork_rng(devices=[]):
            if generator is not None:
                torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
            U, S, V = torch.svd_lowrank(D, q=rank + 8, niter=4)
        return truncate(U, S, V.T, rank)
    U, S, Vh = torch.linalg.svd(D, full_matrices=False)
    return truncate(U, S, Vh, rank)


def factored_norm(B, A):
    B, A = B.to(torch.float64), A.to(torch.float64)
    _, R_B = torch.linalg.qr(B)
    _, R_A = torch.linalg.qr(A.T)
    return float(torch.linalg.matrix_norm(R_B @ R_A.T))


# -- the elementwise methods (methods/*.py) ----------------------------------------------------
def ties(deltas, weights, *, generators, peft_compat, density=0.2, majority_sign_method="total"):
    for k in range(deltas.shape[0]):
        magnitude_prune_(deltas[k], density)
    return ties_merge_(deltas, weights, majority_sign_method, unweighted=peft_compat)


def magnitude_prune(deltas, weights, *, generators, peft_compat, density=0.2):
    for k in range(deltas.shape[0]):
        magnitude_prune_(deltas[k], density)
    return weighted_sum_(deltas, weights)


def dare_linear(deltas, weights, *, generators, peft_compat, density=0.5):
    for k in range(deltas.shape[0]):
        random_prune_(deltas[k], density, generators[k])
    return weighted_sum_(deltas, weights)


def dare_ties(deltas, weights, *, generators, peft_compat, density=0.5, majority_sign_method="total"):
    for k in range(deltas.shape[0]):
        random_prune_(deltas[k], density, generators[k])
    return ties_merge_(deltas, weights, majority_sign_method, unweighted=peft_compat)


def della(deltas, weights, *, generators, peft_compat, density=0.3, epsilon=0.15,
          majority_sign_method="total"):
    for k in range(deltas.shape[0]):
        magprune_(deltas[k], density, epsilon, generators[k])
    return ties_merge_(deltas, weights, majority_sign_method, unweighted=False)


def breadcrumbs(deltas, weights, *, generators, peft_compat, density=0.2, gamma=0.01):
    for k in range(deltas.shape[0]):
        outlier_prune_(deltas[k], density, gamma)
    return weighted_sum_(deltas, weights)


ELEMENTWISE = {"ties": ties, "magnitude_prune": magnitude_prune, "dare_linear": dare_linear,
               "dare_ties": dare_ties, "della": della, "breadcrumbs": breadcrumbs}
# every method this reference reproduces (the engine before issue 23); later methods have their own tests
METHODS = {"cat", "knots", "lora_lego", "svd", "task_arithmetic", *ELEMENTWISE,
           *(f"{m}_svd" for m in ELEMENTWISE)}


# -- merging/inputs.py -----------------------------------------------------------------------
class Inputs:
    def __init__(self, adapters, weights, seed, paths):
        self.adapters, self.weights, self.seed, self.paths = adapters, weights, seed, paths
        self._shared = None

    def present(self, path):
        return [i for i, a in enumerate(self.adapters) if path in a.modules]

    def shape(self, path):
        f = next(a.modules[path] for a in self.adapters if path in a.modules)
        return f.out_features, f.in_features

    def ranks(self, path):
        idx = self.present(path)
        live = [i for i in idx if self.weights[i] != 0] or idx
        return [self.adapters[i].modules[path].r for i in live]

    def parts(self, path):
        idx = self.present(path)
        parts = []
        for i in idx:
            A, sB = self.adapters[i].factors(path)
            parts.append((A.detach().to(torch.float64), sB.detach().to(torch.float64)))
        return parts, [self.weights[i] for i in idx]

    def deltas(self, path):
        idx = self.present(path)
        f0 = self.adapters[idx[0]].modules[path]
        out = torch.empty(len(idx), f0.out_features, f0.in_features, dtype=f0.A.dtype)
        for k, i in enumerate(idx):
            a = self.adapters[i]
            f = a.modules[path]
            torch.matmul(f.B.detach(), f.A.detach(), out=out[k])
            out[k] *= a.scale(path)
        return out, torch.tensor([self.weights[i] for i in idx], dtype=out.dtype)

    def generators(self, path, *, shared=False):
        idx = self.present(path)
        if shared:
            if self._shared is None:
                self._shared = torch.Generator().manual_seed(self.seed)
            return [self._shared] * len(idx)
        return [torch.Generator().manual_seed(
            zlib.crc32(f"{self.seed}|{path}|{self.adapters[i].name}".encode())) for i in idx]


def resolve_rank(rank, ranks, default):
    if rank is not None:
        return int(rank)
    return sum(ranks) if default == "sum" else max(ranks)


def run_elementwise(inputs, fn, params, *, rank_default, factor_space):
    own = {k: v for k, v in params.items() if k not in ("rank", "truncate", "peft_compat")}
    peft_compat = bool(params.get("peft_compat", False))
    out = {}
    for path in inputs.paths:
        gens = inputs.generators(path, shared=peft_compat)
        if peft_compat and factor_space:
            out[path] = _peft_factor_space(inputs, path, fn, own, gens)
            continue
        deltas, weights = inputs.deltas(path)
        merged = fn(deltas, weights, generators=gens, peft_compat=peft_compat, **own)
        rank = resolve_rank(params.get("rank"), inputs.ranks(path), rank_default)
        out[path] = dense_svd(merged, rank, params.get("truncate", "exact"), gens[0] if gens else None)
    return out


def _peft_factor_space(inputs, path, fn, own, gens):
    idx = inputs.present(path)
    ws = [inputs.weights[i] * inputs.adapters[i].scale(path) for i in idx]
    a = torch.tensor([(1.0 if w >= 0 else -1.0) * abs(w) ** 0.5 for w in ws])
    b = torch.tensor([abs(w) ** 0.5 for w in ws])
    As = torch.stack([inputs.adapters[i].modules[path].A.detach().clone() for i in idx])
    Bs = torch.stack([inputs.adapters[i].modules[path].B.detach().clone() for i in idx])
    A = fn(As, a.to(As.dtype), generators=gens, peft_compat=True, **own)
    B = fn(Bs, b.to(Bs.dtype), generators=gens, peft_compat=True, **own)
    return A, B


# -- the factored methods --------------------------------------------------------------------
def _knots(parts, weights, *, generators, merge="ties", density=1.0, majority_sign_method="total"):
    inner = {**ELEMENTWISE, "dare": dare_ties,
             "sum": lambda d, w, **_: weighted_sum_(d, w)}
    live = [i for i, w in enumerate(weights) if w != 0]
    if not live:
        A, sB = parts[0]
        return A.new_zeros(1, A.shape[1]), sB.new_zeros(sB.shape[0], 1)
    sub = [parts[i] for i in live]
    Q_B, R_B = torch.linalg.qr(torch.cat([sB for _, sB in sub], dim=1))
    QR_A = [torch.linalg.qr(A.T) for A, _ in sub]
    core = R_B @ torch.block_diag(*[R.T for _, R in QR_A])
    u, S, vh = torch.linalg.svd(core, full_matrices=False)
    k = max(1, int((S > S[0] * max(core.shape) * torch.finfo(torch.float32).eps).sum())) if S[0] > 0 else 1
    blocks, start = [], 0
    for Q, R in QR_A:
        r = R.shape[0]
        blocks.append(S[:k, None] * (vh[:k, start:start + r] @ Q.T))
        start += r
    stacked = torch.stack(blocks)
    kwargs = {"density": density}
    if merge in ("ties", "dare_ties", "dare"):
        kwargs["majority_sign_method"] = majority_sign_method
    merged = inner[merge](stacked, torch.tensor([weights[i] for i in live], dtype=stacked.dtype),
                          generators=[generators[i] for i in live], peft_compat=False, **kwargs)
    return merged, Q_B @ u[:, :k]


def _factored(inputs, params, method):
    out = {}
    for path in inputs.paths:
        parts, weights = inputs.parts(path)
        if method == "cat":
            A = torch.cat([A for A, _ in parts])
            B = torch.cat([w * sB for (_, sB), w in zip(parts, weights, strict=True)], dim=1)
            out[path] = (A, B)
        elif method == "knots":
            out[path] = _knots(parts, weights, generators=inputs.generators(path), **params)
        else:
            rank = resolve_rank(params.get("rank"), inputs.ranks(path),
                                "sum" if method == "task_arithmetic" else "max")
            out[path] = truncate(*factored_svd(*stack(parts, weights)), rank)
    return out


def kmeans(points, k, *, generator, n_init=10, max_iter=100):
    best, best_inertia = None, float("inf")
    for _ in range(n_init):
        n = points.shape[0]
        centers = [points[int(torch.randint(n, (1,), generator=generator))]]
        d2 = ((points - centers[0]) ** 2).sum(1)
        for _ in range(1, k):
            total = float(d2.sum())
            probs = d2 / total if total > 0 else torch.full_like(d2, 1.0 / n)
            i = int(torch.multinomial(probs, 1, generator=generator))
            centers.append(points[i])
            d2 = torch.minimum(d2, ((points - points[i]) ** 2).sum(1))
        centers = torch.stack(centers).clone()
        labels = None
        for _ in range(max_iter):
            d = torch.cdist(points, centers, compute_mode="donot_use_mm_for_euclid_dist") ** 2
            new = d.argmin(dim=1)
            if labels is not None and torch.equal(new, labels):
                break
            labels = new
            for j in range(k):
                members = points[labels == j]
                if len(members):
                    centers[j] = members.mean(0)
        inertia = float(((points - centers[labels]) ** 2).sum())
        if inertia < best_inertia:
            best, best_inertia = labels, inertia
    return best


def _lego(inputs, params):
    out = {}
    for path in inputs.paths:
        out_f, in_f = inputs.shape(path)
        k = resolve_rank(params["rank"], inputs.ranks(path), "max")
        rows, norms = [], []
        for i in inputs.present(path):
            w, a = inputs.weights[i], inputs.adapters[i]
            if w == 0:
                continue
            f, s = a.modules[path], a.scale(path)
            c = math.sqrt(abs(w) * s)
            A, B = f.A.detach().double(), f.B.detach().double()
            rows.append(torch.cat([c * A, (c if w > 0 else -c) * B.T], dim=1))
            norms.append(factored_norm(w * s * B, A))
        pool = torch.cat(rows) if rows else torch.zeros(0, 0, dtype=torch.float64)
        pool = pool[pool.abs().amax(dim=1) > 0] if len(pool) else pool
        if params["sign_canonicalize"] and len(pool):
            lead = pool[:, :in_f].gather(1, pool[:, :in_f].abs().argmax(dim=1, keepdim=True))
            pool = pool * torch.where(lead < 0, -1.0, 1.0).to(pool.dtype)
        n = pool.shape[0]
        if n == 0:
            out[path] = (torch.zeros(k, in_f), torch.zeros(out_f, k))
            continue
        if k >= n:
            centroids = torch.cat([pool, pool.new_zeros(k - n, pool.shape[1])])
        else:
            g = torch.Generator().manual_seed(zlib.crc32(f"{inputs.seed}|{path}".encode()))
            labels = kmeans(pool, k, generator=g, n_init=params["n_init"])
            centroids = pool.new_zeros(k, pool.shape[1])
            for j in range(k):
                members = pool[labels == j]
                if not len(members):
                    continue
                c = members.mean(0)
                if params["parameter_reweight"] and float(c.norm()) > 0:
                    c = c * (members.norm(dim=1).mean() / c.norm())
                centroids[j] = c
        A, B = centroids[:, :in_f], centroids[:, in_f:].T
        gamma = 1.0
        if params["output_reweight"] == "sqrt_rank":
            gamma = math.sqrt(sum(inputs.ranks(path)) / len(inputs.ranks(path)) / k)
        elif params["output_reweight"] == "match":
            merged = factored_norm(B, A)
            target = math.sqrt(sum(x * x for x in norms) / len(norms))
            gamma = target / merged if merged > 0 else 1.0
        out[path] = (A, gamma * B)
    return out


# -- the entry point -------------------------------------------------------------------------
def reference_merge(adapters, method, weights, *, seed=0, **params):
    """{path: (A', B')} as the old engine computed them (same modules, same parameters, defaults filled)."""
    full = MERGES.check(method, params)
    paths = list(dict.fromkeys(p for a in adapters for p in a.modules))
    inputs = Inputs(adapters, [float(w) for w in weights], seed, paths)
    with torch.no_grad():
        base = method.removesuffix("_svd")
        if base in ELEMENTWISE:
            return run_elementwise(inputs, ELEMENTWISE[base], full,
                                   rank_default="max" if method.endswith("_svd") else "sum",
                                   factor_space=not method.endswith("_svd"))
        if method == "task_arithmetic" and full["peft_compat"]:
            return {p: _peft_factor_space(inputs, p, lambda s, w, **_: weighted_sum_(s, w), {}, [])
                    for p in paths}
        if method == "lora_lego":
            return _lego(inputs, full)
        own = {k: v for k, v in full.items() if k != "peft_compat"}
        return _factored(inputs, own, method)


def reference_interference_masks(deltas, density):
    """The old ``trim_mask`` of each weighted dense update in a (K, out, in) stack."""
    return torch.stack([top_magnitude_mask(d, density) & (d != 0) for d in deltas])


def reference_interference(named, weights, density):
    """The old ``analysis.interference`` rows (module order, before ``tidy``)."""
    weight_of = dict(zip(named, weights, strict=True))
    rows = []
    for path in dict.fromkeys(p for a in named.values() for p in a.modules):
        have = [n for n in named if path in named[n].modules]
        if len(have) < 2:
            continue
        deltas = torch.stack([weight_of[n] * named[n].delta(path).detach().double() for n in have])
        masks = reference_interference_masks(deltas, density)
        kept = deltas * masks
        count = masks.sum(0)
        shared = count >= 2
        positive, negative = (kept > 0).sum(0), (kept < 0).sum(0)
        conflicts = shared & (positive > 0) & (negative > 0)
        n_shared, n_any = int(shared.sum()), int((count >= 1).sum())
        total = float(deltas.abs().sum())
        rows.append({"path": path, "adapters": len(have),
                     "conflict_rate": int(conflicts.sum()) / n_shared if n_shared else float("nan"),
                     "overlap": n_shared / n_any if n_any else float("nan"),
                     "mass_lost": 1.0 - float(kept.abs().sum()) / total if total else float("nan")})
    return rows
