"""Benchmark: our LoRA training step against peft's, and the cost of gradient-conflict capture.

One run, one model (SmolLM2-135M by default; ``--model tiny-llama`` for a smoke test):

1. **LoRA step, ours vs peft.** The same base weights, the same batch (fixed token ids), the same
   rank, alpha and targets (q, k, v, o): one forward, backward and AdamW step of the factors. Ours is
   the lab's ``LoraLayer`` (what ``train_lora``'s loop runs); peft's is ``get_peft_model`` on a deep
   copy of the base. The two are timed in alternating blocks (so a load change on a shared machine
   hits both), and the ratio of the medians is reported. Target: ours ≤ 1.05 × peft.
2. **Conflict capture.** ``MultiTaskTrainer`` on three tasks' worth of batches, with capture every
   step, every 10 steps, and never: one trainer per setting, timed in alternating blocks of 10 steps
   (as for 1.); mean step time of each.

    python bench/training.py                      # SmolLM2, writes bench/results/training.md
    python bench/training.py --model tiny-llama --steps 2 --capture-blocks 1 --quick   # smoke test
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from common import publish  # bench/common.py (this script's folder is on sys.path)
from tqdm.auto import tqdm

OUT = Path(__file__).parent / "results" / "training.md"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def fixed_batch(vocab: int, batch: int, length: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random token ids with labels on the second half (the shape of a chat example's answer)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, length), generator=g)
    labels = ids.clone()
    labels[:, : length // 2] = -100
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def ours(model, batch, r: int, alpha: float, lr: float):
    """A step function on the lab's LoraLayer adapter."""
    from workbench import Workbench

    lab = Workbench(model, None, name="bench")
    lab.new_adapter("bench", r=r, alpha=alpha, targets=TARGETS, seed=0)
    lab.use("bench")
    params = [p for layer in lab.layers.values() for p in (layer.lora_A["bench"], layer.lora_B["bench"])]
    for p in params:
        p.requires_grad_(True)
    return adamw_step(model, params, batch, lr)


def peft_step(model, batch, r: int, alpha: float, lr: float):
    """The same step on peft's LoRA."""
    from peft import LoraConfig, get_peft_model

    pm = get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, target_modules=TARGETS, lora_dropout=0.0,
                                          init_lora_weights=True))
    return adamw_step(pm, [p for p in pm.parameters() if p.requires_grad], batch, lr)


def adamw_step(model, params: list, batch, lr: float):
    """(step, number of trained parameters): one forward, backward and AdamW update of ``params``."""
    opt = torch.optim.AdamW(params, lr=lr)
    model.train()

    def step() -> float:
        loss = model(**batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return step, sum(p.numel() for p in params)


def timed(step, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        step()
        out.append(time.perf_counter() - t)
    return out


def capture_trainers(lab, settings, batch: int, r: int, vocab: int, length: int, steps: int) -> dict:
    """One 3-task MultiTaskTrainer per capture setting (``every``; 0: never), each on its own adapter."""
    from workbench.training import MultiTaskTrainer

    tasks = {}
    for t in range(3):
        b = fixed_batch(vocab, 16, length, seed=t + 1)
        tasks[f"task{t}"] = [{"input_ids": ids.tolist(), "labels": lab_.tolist()}
                             for ids, lab_ in zip(b["input_ids"], b["labels"], strict=True)]
    return {every: MultiTaskTrainer(lab, f"cap{every}", tasks, r=r, targets=TARGETS, steps=steps, lr=1e-3,
                                    batch_size=batch, capture_every=every, progress=False)
            for every in settings}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="a zoo causal LM (smollm2-135m, tiny-llama)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=64, help="tokens per example")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--blocks", type=int, default=4, help="alternating timing blocks per implementation")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per block")
    parser.add_argument("--capture-blocks", type=int, default=3,
                        help="alternating blocks of 10 trainer steps per capture setting")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="print only, unless --out is given")
    parser.add_argument("--out", type=Path, default=None, help=f"the Markdown table (default {OUT})")
    args = parser.parse_args(argv)
    out = args.out or (None if args.quick else OUT)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    from workbench import Workbench, zoo

    z = zoo.load(args.model)
    base = z.model
    vocab = base.config.vocab_size
    batch = fixed_batch(vocab, args.batch, args.length)
    alpha = 2.0 * args.rank
    load_before = os.getloadavg()[0]
    ours_step, n_ours = ours(copy.deepcopy(base), batch, args.rank, alpha, 1e-3)
    peft_fn, n_peft = peft_step(copy.deepcopy(base), batch, args.rank, alpha, 1e-3)
    assert n_ours == n_peft, (n_ours, n_peft)
    for f in (ours_step, peft_fn):  # warm-up
        timed(f, 2)
    t_ours, t_peft = [], []
    for _ in tqdm(range(args.blocks), desc="ours vs peft"):
        t_ours += timed(ours_step, args.steps)
        t_peft += timed(peft_fn, args.steps)
    m_ours, m_peft = statistics.median(t_ours), statistics.median(t_peft)
    ratio = m_ours / m_peft
    print(f"ours {m_ours:.3f} s, peft {m_peft:.3f} s, ratio {ratio:.3f}", flush=True)

    # Capture: the three settings in alternating blocks of 10 steps (each block of "every 10" holds
    # exactly one capture step), after one warm-up step each; mean step time over all blocks.
    lab = Workbench(copy.deepcopy(base), z.tokenizer, name=args.model)
    settings = (0, 10, 1)
    trainers = capture_trainers(lab, settings, args.batch, args.rank, vocab, args.length,
                                steps=1 + args.capture_blocks * 10)
    for tr in trainers.values():
        tr.step(1)
    spent = dict.fromkeys(settings, 0.0)
    for _ in tqdm(range(args.capture_blocks), desc="capture (alternating blocks)"):
        for every in settings:
            t0 = time.perf_counter()
            trainers[every].step(10)
            spent[every] += time.perf_counter() - t0
    caps = {e: spent[e] / (10 * args.capture_blocks) for e in settings}
    for e in settings:
        print(f"capture every {e or 'never'}: {caps[e]:.3f} s/step", flush=True)
    load_after = os.getloadavg()[0]

    text = "\n".join([
        "# Training benchmark: our LoRA step vs peft's, and the cost of conflict capture",
        "",
        f"`python bench/training.py --model {args.model} --batch {args.batch} --length {args.length} "
        f"--rank {args.rank}` ({time.strftime('%Y-%m-%d')}).",
        "",
        f"- Model: {args.model}; LoRA r={args.rank}, alpha={alpha:g} on {', '.join(TARGETS)} "
        f"({n_ours:,} trainable parameters in both); batch {args.batch} × {args.length} tokens, fixed ids; "
        "AdamW, fp32.",
        f"- Machine: {platform.machine()}, {os.cpu_count()} cores, {args.threads} torch thread(s); torch "
        f"{torch.__version__}; load average {load_before:.1f} before, {load_after:.1f} after (a shared "
        "machine: both sides are timed in alternating blocks).",
        "",
        "## LoRA training step (forward + backward + AdamW)",
        "",
        "| implementation | median step (s) | steps timed |",
        "|---|---:|---:|",
        f"| ours (`LoraLayer`) | {m_ours:.3f} | {len(t_ours)} |",
        f"| peft `get_peft_model` | {m_peft:.3f} | {len(t_peft)} |",
        "",
        f"**Ratio ours ÷ peft: {ratio:.3f}** (target ≤ 1.05: {'met' if ratio <= 1.05 else 'NOT met'}).",
        "",
        "## Gradient-conflict capture (MultiTaskTrainer, 3 tasks, method sum)",
        "",
        "| capture | mean step (s) | ÷ no capture |",
        "|---|---:|---:|",
        *[f"| {label} | {caps[e]:.3f} | {caps[e] / caps[0]:.2f} |"
          for e, label in ((0, "never"), (10, "every 10 steps"), (1, "every step"))],
        "",
        "A capture step gives every task present its own forward and backward pass (to get per-task "
        "gradients) and reduces them to (T × T) Gram matrices per module; other steps run one "
        "forward and backward over the whole batch. The same batch size in all three settings; "
        f"{args.capture_blocks} alternating blocks of 10 steps each.",
        "",
    ])
    publish(text, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
