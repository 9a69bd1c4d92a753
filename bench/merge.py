"""Benchmark: the factored ``svd`` merge against peft's ``add_weighted_adapter(combination_type="svd")``,
and ``ties`` on a Llama-2-7B-shaped target set with its peak memory.

A Llama-2-7B-shaped target set (32 layers of q, k, v, o (4096 x 4096), gate, up (11008 x 4096) and
down (4096 x 11008)), 4 random rank-16 adapters in float32. One run measures, side by side:

- ``svd`` ours on the whole set (``workbench.merging.merge(adapters, "svd")``: QR of the stacked
  factors and an SVD of a 64 x 64 core per module), and on the modules peft is timed on;
- peft 0.21.2 on the same factors: a torch module tree with Linear layers of those shapes (created
  on the meta device and given uninitialized storage, so the base weights cost no time), wrapped by
  ``get_peft_model``, our factors copied into its four adapters, then ``add_weighted_adapter(...,
  combination_type="svd")``. peft materializes each ΔWᵢ and runs a full dense SVD per module
  (``svd_full_matrices=True``, its default), minutes for the whole set, so it runs on one module of
  each shape (``--peft-modules``) and the comparison is per module; agreement is checked on them;
- ``ties`` ours (density 0.2) on the whole set, one dense module at a time, with its peak memory.
  Its output rank is Σrᵢ = 64 per module, factored by a randomized SVD (``truncate="lowrank"``): an
  exact dense SVD of every 4096-wide result would take hours on one core.

    python bench/merge.py            # full size (tens of minutes on one core); writes the table
    python bench/merge.py --quick    # 2 layers, 1024-wide modules; prints the table only
    python bench/merge.py --ready    # every method on the ready adapters (bench/merge_ready.py)

Peak memory, times and the load average are measured as in ``bench/geometry.py``.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import nn
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).parent))
from common import publish, write_atomically  # noqa: E402
from geometry import MIB, factor_bytes, llama2_7b_shapes, measure  # noqa: E402

from workbench.adapters.adapter import Adapter  # noqa: E402
from workbench.adapters.init import new_adapter  # noqa: E402
from workbench.merging import merge  # noqa: E402

OUT = Path(__file__).parent / "results" / "merge.md"
PEFT_MODULES = ("model.layers.0.self_attn.q_proj", "model.layers.0.mlp.gate_proj",
                "model.layers.0.mlp.down_proj")


def mmap_large_buffers(threshold: int = MIB) -> bool:
    """Have glibc serve buffers above ``threshold`` by mmap (returned to the OS when freed).

    glibc raises its mmap threshold (up to 32 MiB) after each freed large buffer and then keeps freed
    module-sized buffers in its heap, so the resident set's high-water mark would count allocator
    caching, not live memory. At full size every dense module (45-180 MiB) is above 32 MiB anyway.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(-3, threshold))  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


def subset(adapter: Adapter, paths: list[str]) -> Adapter:
    return Adapter(adapter.name, {p: adapter.modules[p] for p in paths}, adapter.scaling,
                   adapter.base_fingerprint)


# -- peft on a module tree of the same shapes -------------------------------------------------
class Tree(nn.Module):
    """``model.layers.<i>.<self_attn|mlp>.<name>`` Linear layers (no bias) at the given paths."""

    def __init__(self, shapes: dict[str, tuple[int, int]]):
        super().__init__()
        for path, (out_f, in_f) in shapes.items():
            parent = self
            *parents, leaf = path.split(".")
            for part in parents:
                if not hasattr(parent, part):
                    parent.add_module(part, nn.Module())
                parent = getattr(parent, part)
            parent.add_module(leaf, nn.Linear(in_f, out_f, bias=False))


def peft_model(adapters: list[Adapter], paths: list[str]):
    """peft's LoraModel over a Tree of ``paths``, holding ``adapters``' factors."""
    from peft import LoraConfig, get_peft_model

    shapes = {p: (adapters[0].modules[p].out_features, adapters[0].modules[p].in_features) for p in paths}
    with torch.device("meta"):
        tree = Tree(shapes)
    tree.to_empty(device="cpu")  # storage without initialization: untouched pages
    f0 = adapters[0].modules[paths[0]]
    config = LoraConfig(r=f0.r, lora_alpha=f0.alpha, target_modules=paths, init_lora_weights=False)
    model = get_peft_model(tree, config, adapter_name=adapters[0].name)
    for a in adapters[1:]:
        model.add_adapter(a.name, config)
    with torch.no_grad():
        for a in adapters:
            for p in paths:
                layer = model.base_model.model.get_submodule(p)
                layer.lora_A[a.name].weight.copy_(a.modules[p].A)
                layer.lora_B[a.name].weight.copy_(a.modules[p].B)
    return model


def peft_svd(model, adapters: list[Adapter], weights: list[float]) -> None:
    model.add_weighted_adapter([a.name for a in adapters], weights, "merged", combination_type="svd")


def agreement(model, ours: Adapter, paths: list[str]) -> float:
    """max over modules of ||ΔW_ours − ΔW_peft||_F / ||ΔW_peft||_F."""
    worst = 0.0
    for p in paths:
        theirs = model.base_model.model.get_submodule(p).get_delta_weight("merged").double()
        worst = max(worst, float(torch.linalg.matrix_norm(ours.delta(p).double() - theirs)
                                 / torch.linalg.matrix_norm(theirs)))
    return worst


# -- report -----------------------------------------------------------------------------------
def report(args, adapters, shapes, svd_full, svd_modules, peft_modules, agree, ties, dense_bytes,
           load) -> str:
    size = factor_bytes(adapters)
    n = len(shapes)
    per_ours_full = svd_full["wall"] / n
    rows = []
    for p in args.peft_modules:
        o, i = shapes[p]
        ours, theirs = svd_modules[p], peft_modules[p]
        rows.append(f"| `{p.rsplit('.', 1)[-1]}` {o}x{i} | {ours['wall'] * 1e3:,.1f} | {theirs['wall']:,.2f} "
                    f"| **{theirs['wall'] / ours['wall']:,.0f}x** | {ours['extra'] / MIB:,.0f} "
                    f"| {theirs['extra'] / MIB:,.0f} |")
    total_ours = sum(svd_modules[p]["wall"] for p in args.peft_modules)
    total_peft = sum(peft_modules[p]["wall"] for p in args.peft_modules)
    ratio = total_peft / total_ours
    peak = ties["extra"]
    transient = peak - ties["output"]  # the peak minus the merged adapter, which is the result
    bound = (args.adapters + 5) * dense_bytes
    return "\n".join([
        "# Merge benchmark: factored `svd` vs peft, and `ties` memory",
        "",
        f"`python bench/merge.py --layers {args.layers}` ({time.strftime('%Y-%m-%d')}).",
        "",
        f"- Target set: Llama-2-7B shapes, {args.layers} layers x 7 = {n} modules (q, k, v, o "
        f"{args.hidden}x{args.hidden}; gate, up {args.ffn}x{args.hidden}; down {args.hidden}x{args.ffn}).",
        f"- {args.adapters} random adapters (`new_adapter(init=\"random\")`), rank {args.rank}, alpha "
        f"{2 * args.rank}, float32: {size / MIB:,.0f} MiB of factors; weights "
        f"{', '.join(f'{w:g}' for w in args.weights)}.",
        f"- Machine: {platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__}; "
        f"**{args.threads} thread(s)** (`--threads`); load average {load[0]:.1f} before, "
        f"{load[1]:.1f} after.",
        "",
        "## `svd` merge (rank max rᵢ = 16): ours vs peft `add_weighted_adapter(combination_type=\"svd\")`",
        "",
        "| module | ours (ms) | peft (s) | peft ÷ ours | ours peak extra (MiB) | peft peak extra (MiB) |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"- **Speed-up on these modules, peft ÷ ours wall time: {ratio:,.0f}x** (sum over "
        f"{len(args.peft_modules)} modules: {total_peft:,.1f} s against {total_ours * 1e3:,.1f} ms). "
        f"Target ≥ 100x: {'met' if ratio >= 100 else 'not met'}.",
        f"- **Same result:** max relative Frobenius difference of ΔW between ours and peft's on these "
        f"modules: {agree:.1e} (float32 dense SVD in peft, float64 core in ours).",
        f"- Ours on the whole set: {svd_full['wall']:,.2f} s for {n} modules ({per_ours_full * 1e3:,.1f} ms "
        f"per module on average), peak extra {svd_full['extra'] / MIB:,.0f} MiB; error against the "
        f"exact weighted sum {svd_full['result']:.4f} (the Eckart–Young tail of a rank-{args.rank} cut "
        f"of a rank-{args.adapters * args.rank} sum). peft on the whole set would take about "
        f"{sum(peft_modules[p]['wall'] for p in args.peft_modules) / len(args.peft_modules) * n / 60:,.0f} "
        "min at the measured per-module times; it was timed on one module of each shape only.",
        "",
        f"## `ties` (density 0.2, rank Σrᵢ = {args.adapters * args.rank}, `truncate=\"lowrank\"`) on the "
        "whole set",
        "",
        f"- Wall time {ties['wall']:,.1f} s (CPU {ties['cpu']:,.1f} s), {ties['wall'] / n:,.2f} s per "
        "module; "
        f"error against the exact weighted sum {ties['result']:.3f} (TIES trims and averages: it is "
        "not meant to equal the sum).",
        f"- **Peak extra memory {peak / MIB:,.0f} MiB**: the merged adapter itself "
        f"({ties['output'] / MIB:,.0f} MiB at rank Σrᵢ) plus {transient / MIB:,.0f} MiB of work buffers "
        f"= **{transient / dense_bytes:.1f}x one dense module** ({dense_bytes / MIB:,.0f} MiB: the largest "
        f"ΔW, {args.ffn}x{args.hidden} float32). Bound: one module at a time, at most (K + 5) dense "
        f"modules of work buffers = {bound / MIB:,.0f} MiB for K = {args.adapters}, whatever the number "
        f"of modules: {'met' if transient <= bound else 'not met'}. A "
        f"dense ΔW of every module and adapter at once would need "
        f"{sum(o * i for o, i in shapes.values()) * 4 * args.adapters / 2**30:,.0f} GiB.",
        "",
        f"Memory: {ties['method']}, as in `bench/geometry.py` (peak resident set during the call minus "
        "its level just before; the adapters are already in memory)"
        + ("; glibc serves buffers above 1 MiB by mmap (`mallopt`), so freed module buffers leave the "
           "resident set at once" if args.mmap else "") + ". Times: `time.perf_counter`.",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--ffn", type=int, default=11008)
    parser.add_argument("--adapters", type=int, default=4)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="torch threads (default 1; --ready: 1 2, each measured)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of our (fast) svd path")
    parser.add_argument("--skip-ties", action="store_true")
    parser.add_argument("--quick", action="store_true", help="2 layers, 1024/2752 wide; print only")
    parser.add_argument("--out", type=Path, default=None, help=f"the Markdown table (default {OUT})")
    parser.add_argument("--ready", action="store_true",
                        help="every registered method on the four ready adapters, and interference")
    parser.add_argument("--methods", nargs="*", default=None, help="--ready: only these methods")
    parser.add_argument("--label", default="current code", help="--ready: the table's title label")
    parser.add_argument("--compare-with", type=Path, default=None,
                        help="--ready: another checkout's root, timed against this tree (before/after)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # --compare-with's worker
    args = parser.parse_args(argv)
    if args.serve or args.ready:
        import merge_ready

        if args.serve:
            merge_ready.serve()
            return 0
        args.threads = args.threads or [1, 2]
        if args.compare_with:
            out = args.out or merge_ready.OUT.with_name("merge_ready_compare.md")
            merge_ready.compare(args, lambda text: write_atomically(out, text))
            print(out.read_text())
            return 0
        publish(merge_ready.main(args), args.out or merge_ready.OUT)
        return 0
    args.threads = (args.threads or [1])[0]
    if args.quick:
        args.layers, args.hidden, args.ffn = 2, 1024, 2752
    args.peft_modules = list(PEFT_MODULES)
    args.weights = [1.0, 0.7, 0.5, -0.3, 1.2, 0.9, -0.6, 0.4][: args.adapters]
    out = args.out or (None if args.quick else OUT)
    args.mmap = mmap_large_buffers()

    shapes = llama2_7b_shapes(args.layers, args.hidden, args.ffn)
    adapters = [new_adapter(n, shapes, r=args.rank, init="random", seed=i)
                for i, n in enumerate(tqdm("abcdefgh"[: args.adapters], desc="random adapters"))]
    dense_bytes = args.ffn * args.hidden * 4
    load_before = os.getloadavg()[0]
    torch.set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads):
        runs = [measure(lambda: merge(adapters, "svd", args.weights).total_error)
                for _ in tqdm(range(args.repeat), desc="ours svd, whole set")]
        svd_full = sorted(runs, key=lambda r: r["wall"])[len(runs) // 2]
        print("ours svd:", ", ".join(f"{r['wall']:.2f} s" for r in runs), flush=True)
        svd_modules, peft_modules = {}, {}
        for p in args.peft_modules:
            sub = [subset(a, [p]) for a in adapters]
            tries = [measure(lambda sub=sub: merge(sub, "svd", args.weights)) for _ in range(5)]
            svd_modules[p] = sorted(tries, key=lambda r: r["wall"])[2]
        ours_sub = merge([subset(a, args.peft_modules) for a in adapters], "svd", args.weights).adapter
        agree = 0.0
        for p in tqdm(args.peft_modules, desc="peft svd, per module"):
            one = peft_model(adapters, [p])
            peft_modules[p] = measure(lambda one=one: peft_svd(one, adapters, args.weights))
            agree = max(agree, agreement(one, ours_sub, [p]))
            print(f"peft svd {p}: {peft_modules[p]['wall']:.2f} s, agreement {agree:.1e}", flush=True)
            del one
        if args.skip_ties:
            ties = {"wall": float("nan"), "cpu": float("nan"), "extra": 0, "result": float("nan"),
                    "method": "-", "output": 0}
        else:
            ties = measure(lambda: merge(adapters, "ties", args.weights, density=0.2, truncate="lowrank"))
            ties["output"] = factor_bytes([ties["result"].adapter])  # the merged adapter itself (rank 64)
            ties["result"] = ties["result"].total_error
            print(f"ties: {ties['wall']:.1f} s, peak extra {ties['extra'] / MIB:.0f} MiB", flush=True)
    text = report(args, adapters, shapes, svd_full, svd_modules, peft_modules, agree, ties, dense_bytes,
                  (load_before, os.getloadavg()[0]))
    publish(text, out)
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
