"""Benchmark: mixed-adapter batches (one adapter per row), the workbench's pool path against peft's
``adapter_names`` and the base model, interleaved in one process at one torch thread.

For each model (SmolLM2-135M from the zoo; an 8-layer d=1024 Llama shape, random init) and each rank
mix (all r=16; ranks 8/16/64 in turn), 64 adapters on all seven linear modules are loaded into both
the workbench and peft (peft's factors share our tensors, so both read the same memory), and

- prefill: a batch of 32 × 128 tokens (last-token logits only, as a server does);
- decode: a batch of 64, one token on a KV cache of 32 tokens (the cache is cropped back each step);

run with 1, 16 and 64 adapters present (rows assigned round-robin in a shuffled order; a prefill
batch of 32 rows holds at most 32). Each cell: median seconds of base / peft / workbench (each
repetition times the three in turn), ratios to the base and to peft, and for decode the
memory-traffic bound: bytes of base weights, adapter factors present and KV cache read per step,
over the copy bandwidth measured here with a 512 MB tensor copy. The largest |ours − peft| of the
logits checks that both computed the same thing.

    python bench/mixed.py                       # writes bench/results/mixed.md (slow on a CPU)
    python bench/mixed.py --prefill-tokens 16   # a shorter prefill where the full one takes minutes
    python bench/mixed.py --quick               # small sizes, prints only
    python bench/mixed.py --models smollm2 --ranks 8/16/64            # SmolLM2, ranks 8/16/64 only
    python bench/mixed.py --models smollm2 --ranks 8/16/64 --adapters 2 --prefill-batch 2 \
        --decode-batch 2 --repeat 1 --prefill-repeat 1 --out -        # a smoke run (prints only)
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import random
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from common import publish  # bench/common.py (this script's folder is on sys.path)

from workbench import Workbench
from workbench.adapters import new_adapter

OUT = Path(__file__).parent / "results" / "mixed.md"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
RANK_MIXES = {"16": (16,), "8/16/64": (8, 16, 64)}


def llama_1024(layers: int = 8, hidden: int = 1024, ffn: int = 2816) -> Workbench:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=32000, hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers,
                      num_attention_heads=hidden // 64, num_key_value_heads=hidden // 64,
                      tie_word_embeddings=False)
    return Workbench(LlamaForCausalLM(cfg).eval(), None, name=f"llama-{layers}x{hidden}")


def smollm2() -> Workbench:
    return Workbench.from_zoo("smollm2-135m")


def bandwidth() -> float:
    """Bytes per second of a large tensor copy (read + write counted)."""
    src = torch.ones(128 * 2**20)  # 512 MB
    dst = torch.empty_like(src)
    dst.copy_(src)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        dst.copy_(src)
        times.append(time.perf_counter() - t0)
    return 2 * src.numel() * 4 / min(times)


def build(make, ranks: tuple[int, ...], n: int):
    """(lab, peft model, adapter names): n adapters on both, peft's factors sharing ours."""
    from peft import LoraConfig, get_peft_model

    lab, other = make(), make()
    names = [f"a{i}" for i in range(n)]
    shapes = lab.shapes("all-linear")
    for i, name in enumerate(names):
        r = ranks[i % len(ranks)]
        lab.add_adapter(new_adapter(name, shapes, r=r, alpha=2 * r, init="random", seed=i,
                                    base_fingerprint=lab.fingerprint), check_base=False)
    peft_model = None
    for i, name in enumerate(names):
        r = ranks[i % len(ranks)]
        cfg = LoraConfig(r=r, lora_alpha=2 * r, target_modules=TARGETS)
        if peft_model is None:
            peft_model = get_peft_model(other.model, cfg, adapter_name=name)
        else:
            peft_model.add_adapter(name, cfg)
    ours = lab.layers
    for path, module in peft_model.base_model.model.named_modules():
        if hasattr(module, "lora_A") and path in ours:
            for name in names:  # share our tensors: same values, same memory footprint
                module.lora_A[name].weight = ours[path].lora_A[name]
                module.lora_B[name].weight = ours[path].lora_B[name]
    return lab, peft_model.eval(), names


def rows_for(names: list[str], n: int, batch: int, seed: int = 0) -> list[str]:
    order = list(range(batch))
    random.Random(seed).shuffle(order)
    return [names[order[i] % n] for i in range(batch)]


def factor_bytes(lab: Workbench, present: set[str]) -> int:
    return sum((layer.lora_A[a].numel() + layer.lora_B[a].numel()) * layer.lora_A[a].element_size()
               for layer in lab.layers.values() for a in present if a in layer.lora_A)


def base_bytes(model) -> int:
    return sum(m.weight.numel() * m.weight.element_size() for m in model.modules()
               if isinstance(m, torch.nn.Linear))


def contenders(lab, peft_model, rows, inputs):
    """{label: step} for base, peft and ours on the same inputs."""
    def base():
        with lab.using(None):
            return lab.model(**inputs).logits

    def peft():
        return peft_model(**inputs, adapter_names=rows).logits

    def ours():
        with lab.using(rows=rows):
            return lab.model(**inputs).logits
    return {"base": base, "peft": peft, "ours": ours}


@torch.no_grad()
def measure(fns: dict, repeat: int, after=None) -> tuple[dict[str, float], float]:
    """Median seconds per contender, interleaved, after one warm-up each; and max |ours - peft|."""
    outs = {}
    for k, f in fns.items():
        outs[k] = f().float()
        if after:
            after()
    times = {k: [] for k in fns}
    for _ in range(repeat):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
            if after:
                after()
    diff = float((outs["ours"] - outs["peft"]).abs().max())
    return {k: statistics.median(v) for k, v in times.items()}, diff


def run_model(label, make, args, bw) -> list[dict]:
    rows_out = []
    for mix in args.ranks:
        ranks = RANK_MIXES[mix]
        lab, peft_model, names = build(make, ranks, max(args.adapters))
        vocab = lab.model.config.vocab_size
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(0, vocab, (args.prefill_batch, args.prefill_tokens), generator=g)
        prefill = {"input_ids": ids, "logits_to_keep": 1}
        ctx = torch.randint(0, vocab, (args.decode_batch, args.context), generator=g)
        with torch.no_grad(), lab.using(None):
            cache = lab.model(input_ids=ctx, use_cache=True).past_key_values
        kv_bytes = sum(t.numel() * t.element_size()
                       for layer in cache.layers for t in (layer.keys, layer.values))
        crop = cache.crop
        decode = {"input_ids": ctx[:, -1:], "past_key_values": cache, "use_cache": True}
        for n in args.adapters:
            for phase, inputs, batch in (("prefill", prefill, args.prefill_batch),
                                         ("decode", decode, args.decode_batch)):
                rows = rows_for(names, n, batch)
                after = functools.partial(crop, -1) if phase == "decode" else None  # back to the context
                t, diff = measure(contenders(lab, peft_model, rows, inputs),
                                  args.repeat if phase == "decode" else args.prefill_repeat, after)
                present = set(rows)
                traffic = (base_bytes(lab.model) + factor_bytes(lab, present)
                           + (kv_bytes if phase == "decode" else 0))
                rows_out.append({"model": label, "ranks": mix, "phase": phase, "adapters": n,
                                 "present": len(present), **t, "bound": traffic / bw, "diff": diff})
                print(rows_out[-1], flush=True)
    return rows_out


def table(rows: list[dict], args, bw: float, load: tuple[float, float]) -> str:
    lines = [
        "# Mixed-adapter batches: workbench pool path vs peft `adapter_names`",
        "",
        f"`python bench/mixed.py {' '.join(args.argv)}`".replace(" `", "`"),
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread, fp32; "
        f"load average {load[0]:.1f} before, {load[1]:.1f} after; copy bandwidth {bw / 1e9:.1f} GB/s.",
        f"Prefill: batch {args.prefill_batch} × {args.prefill_tokens} tokens (last-token logits); decode: "
        f"batch {args.decode_batch}, one token on a {args.context}-token KV cache. "
        f"{max(args.adapters)} adapters loaded, "
        "r on all seven linear modules; `present` = adapters in the batch. Times are medians in ms "
        f"({args.prefill_repeat} prefill / {args.repeat} decode repetitions, contenders interleaved). "
        "bound = (base weights + factors present + KV cache) bytes / copy bandwidth (decode only: "
        "prefill is compute-bound). diff = max |logits ours − peft|.",
        "",
        "| model | ranks | phase | adapters (present) | base ms | peft ms | ours ms | peft/base | ours/base "
        "| peft/ours | bound ms | ours/bound | diff |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        bound = "– | –"
        if r["phase"] == "decode":
            bound = f"{r['bound'] * 1e3:.1f} | {r['ours'] / r['bound']:.2f}"
        lines.append(
            f"| {r['model']} | {r['ranks']} | {r['phase']} | {r['adapters']} ({r['present']}) | "
            f"{r['base'] * 1e3:.1f} | {r['peft'] * 1e3:.1f} | {r['ours'] * 1e3:.1f} | "
            f"{r['peft'] / r['base']:.2f} | {r['ours'] / r['base']:.2f} | {r['peft'] / r['ours']:.2f} | "
            f"{bound} | {r['diff']:.1e} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2-layer d=256 Llama, 16 tokens; print only")
    parser.add_argument("--models", default="smollm2,llama1024", help="comma list: smollm2, llama1024")
    parser.add_argument("--prefill-batch", type=int, default=32)
    parser.add_argument("--prefill-tokens", type=int, default=128)
    parser.add_argument("--decode-batch", type=int, default=64)
    parser.add_argument("--context", type=int, default=32, help="KV cache length for decode")
    parser.add_argument("--repeat", type=int, default=7, help="decode repetitions")
    parser.add_argument("--prefill-repeat", type=int, default=3)
    parser.add_argument("--ranks", default=",".join(RANK_MIXES),
                        help=f"comma list of rank mixes: {', '.join(RANK_MIXES)} (8/16/64: ranks in turn)")
    parser.add_argument("--adapters", default="1,16,64",
                        help="comma list of adapters present per batch; the largest is how many are loaded")
    parser.add_argument("--out", type=Path, default=OUT, help="the table's file; '-' prints only")
    args = parser.parse_args()
    args.argv = sys.argv[1:]
    args.adapters = [int(n) for n in args.adapters.split(",")]
    args.ranks = args.ranks.split(",")
    unknown = [m for m in args.ranks if m not in RANK_MIXES]
    if unknown:
        parser.error(f"--ranks {unknown}: choose from {list(RANK_MIXES)}")
    if str(args.out) == "-":
        args.out = None
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    makers = {"smollm2": ("SmolLM2-135M", smollm2), "llama1024": ("Llama 8×1024", llama_1024)}
    if args.quick:
        makers = {"llama256": ("Llama 2×256", lambda: llama_1024(2, 256, 704))}
        args.prefill_tokens, args.repeat, args.prefill_repeat, args.out = 16, 3, 1, None
    else:
        makers = {k: makers[k] for k in args.models.split(",")}
    load0 = os.getloadavg()[0]
    bw = bandwidth()
    rows = []
    for label, make in makers.values():  # the table is written after each model: a killed run keeps it
        rows += run_model(label, make, args, bw)
        publish(table(rows, args, bw, (load0, os.getloadavg()[0])), args.out)


if __name__ == "__main__":
    main()
