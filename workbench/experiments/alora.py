"""ALoRA against a plain LoRA of the same trainable budget, multi-task on SmolLM2.  ⚠ RECONSTRUCTED ⚠

Claim (Liu et al., ALoRA, arXiv 2405.17830): a multi-head attention placed upon LoRA, which lets
the current token's LoRA representation draw on the preceding tokens', helps over plain LoRA. Tried
here as: the multi-task score of ALoRA ≥ a plain LoRA of equal trainable parameters, trained on the
same tasks with the same steps, learning rate, batch and seeds. The mechanism is the workbench's
reconstruction (``workbench.routing.mechanisms.alora``: the paper has no public code).

A second measure says whether the attention is used at all: ``prev_token_share``, the attention mass
each real token puts on *earlier* tokens' codes (1 − its weight on itself), over held-out prompts,
averaged over the wrapped modules. At initialisation it is the softmax over uniform-ish logits (about
1 − 1/t); it tells whether the trained attention mixes in the context or collapses onto the token.

Tasks: topic, language and trivia (first-token accuracy). Arithmetic (exact match by greedy decoding
with a KV cache) is left out: ALoRA has no cache of the earlier tokens' codes (it needs the whole
sequence at every step), so the lab's cached decoding cannot run it.

Reference: Liu et al., "More Than Catastrophic Forgetting: Integrating General Capabilities For
Domain-Specific LLMs" (arXiv 2405.17830, EMNLP'24); no code released (the mechanism is reconstructed).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd
import torch

from workbench.analysis.routing import records
from workbench.experiments._heldout import held_out_prompts
from workbench.experiments.base import (
    EXPERIMENTS,
    Experiment,
    Schedule,
    Verdict,
    at_least,
    decide,
    matched_rank,
    paired,
    rows,
    scratch,
)
from workbench.experiments.stats import mean_interval
from workbench.training import encode_tasks, fit

TASKS = ("topic", "language", "trivia")  # first-token accuracy: no cached decoding (see the docstring)
RANK, HEADS, TARGETS = 16, 2, "attention"
PLAIN, ROUTED = "lora", "alora"


@EXPERIMENTS.register("alora")
class ALoRAExperiment(Experiment):
    """ALoRA (causal attention over the LoRA codes, reconstructed) against plain LoRA of equal budget."""

    title = "ALoRA (attention over the LoRA states, reconstructed) against a plain LoRA of the same budget"
    claims = ("attention over the LoRA states helps: multi-task score ≥ plain LoRA of equal budget",
              "the trained ALoRA relies on its attention: removing it (O = 0) lowers the score")
    arms = (PLAIN, ROUTED)
    tasks = TASKS
    full = Schedule(steps=16, lr=3e-3, batch_size=4, eval_limit=16, prompts=4)
    quick = Schedule(steps=2, lr=2e-3, batch_size=2, eval_limit=2, seeds=(0,), prompts=2)
    notes = (f"ALoRA (RECONSTRUCTED, no public code): r={RANK}, α=2r (s = 2), {HEADS} heads over the "
             f"r-dim code z = A x, causal, residual ẑ = z + MHA(z), Δ = s·B ẑ, on q/k/v/o; A "
             "Kaiming-uniform, B = 0, Q/K/V/O nn.Linear default init. The paper's ranks, heads and targets "
             "are unknown.",
             "plain LoRA: q/k/v/o, rank chosen so its trainable count is the closest to ALoRA's (A, B and "
             "the four r×r attention maps per module), α = 2r, the same steps, lr, batch and seeds.",
             f"tasks: {', '.join(TASKS)} (first-token accuracy, the first eval_limit held-out examples "
             "each); arithmetic is left out: ALoRA cannot decode with a KV cache. multitask_score = their "
             "mean.",
             "multitask_score_no_attention: the trained ALoRA scored again with its attention output map "
             "O set to zero (ẑ = z: its own A and B as a plain LoRA); the second claim is the paired "
             "drop.",
             "prev_token_share (descriptive): mean over real tokens (held-out prompts, `prompts` per "
             "task) and over wrapped modules of 1 − the attention weight a token's code puts on itself "
             "(heads averaged).",
             "CPU scale: 16 steps of batch 4 per arm (at 1 thread on SmolLM2-135M, with a load average "
             "near 10 on 2 cores: about 4 min for the LoRA arm, 11 for ALoRA, whose attention over z "
             "and second evaluation cost more); the paper fine-tunes 7B models on legal-domain data.")


    def run_arm(self, lab, arm: str, seed: int, schedule: Schedule) -> pd.DataFrame:
        loaded = self.load_tasks()
        task_list = list(loaded.values())
        with scratch(lab):
            t0 = time.perf_counter()
            if arm == PLAIN:
                r = matched_rank(lab, alora_budget(lab), TARGETS)
                adapter, history = lab.train_lora(PLAIN, task_list, r=r, alpha=2 * r, targets=TARGETS,
                                                  steps=schedule.steps, lr=schedule.lr,
                                                  batch_size=schedule.batch_size, seed=seed, progress=False)
                params = sum(f.A.numel() + f.B.numel() for f in adapter.modules.values())
            else:
                routed = lab.add_router(ROUTED, "alora", TARGETS, seed=seed, r=RANK, alpha=2.0 * RANK,
                                        heads=HEADS)
                history = fit(lab, routed.trainable(), encode_tasks(lab, task_list), use=ROUTED, label=arm,
                              steps=schedule.steps, lr=schedule.lr, batch_size=schedule.batch_size, seed=seed,
                              progress=False)
                params = routed.n_parameters(trainable_only=True)
            seconds = time.perf_counter() - t0
            scores = lab.evaluate({arm: arm}, loaded, limit=schedule.eval_limit, progress=False)
            out = rows(arm, {"trainable_params": params, "train_seconds": seconds,
                             "final_loss": history["loss"].tail(max(1, len(history) // 4)).mean(),
                             "multitask_score": scores["value"].mean()})
            for s in scores.itertuples():
                out += rows(arm, {"score": s.value}, task=s.task)
            if arm == ROUTED:
                with attention_off(lab.routers[ROUTED]):
                    ablated = lab.evaluate({arm: arm}, loaded, limit=schedule.eval_limit, progress=False)
                out += rows(arm, {"multitask_score_no_attention": ablated["value"].mean()})
                share = attention_share(lab, ROUTED, loaded, schedule.prompts)
                out += rows(arm, {"prev_token_share": share["prev_token_share"].mean()})
                for task, part in share.groupby("group"):
                    out += rows(arm, {"prev_token_share": part["prev_token_share"].mean()}, task=task)
        return pd.DataFrame(out)

    def verdicts(self, table: pd.DataFrame) -> list[Verdict]:
        out = []
        if {PLAIN, ROUTED} <= set(table.arm):
            d = paired(table, "multitask_score", ROUTED, PLAIN)
            out.append(Verdict(self.claims[0], "multitask_score: alora − lora", d, at_least(d)))
        part = table[(table.arm == ROUTED) & (table.task == "")].pivot_table(
            index="seed", columns="measure", values="value")
        if "multitask_score_no_attention" in part:
            s = mean_interval((part["multitask_score"] - part["multitask_score_no_attention"]).tolist())
            out.append(Verdict(self.claims[1], "multitask_score: alora − alora with O = 0", s, decide(s)))
        return out


def alora_budget(lab) -> int:
    """ALoRA's trainable count on q/k/v/o: r·(in + out) + 4r² (Q, K, V, O) per module."""
    return sum(RANK * (i + o) + 4 * RANK * RANK for o, i in lab.shapes(TARGETS).values())


@contextmanager
def attention_off(routed) -> Iterator[None]:
    """Inside the block every ALoRA module's output map O is zero (ẑ = z: the plain LoRA s·B A x)."""
    saved = [(r.W_o, r.W_o.detach().clone()) for r in routed.modules.values()]
    try:
        with torch.no_grad():
            for w, _ in saved:
                w.zero_()
        yield
    finally:
        with torch.no_grad():
            for w, old in saved:
                w.copy_(old)


def prev_token_share(weights: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(B,) per row: the mean over its real tokens of 1 − the token's attention weight on itself.

    Args:
        weights: (B, T, T) attention of each query token over the key tokens (rows sum to 1).
        mask: (B, T) real tokens (None: all real).
    """
    self_weight = weights.diagonal(dim1=-2, dim2=-1)  # (B, T)
    real = torch.ones_like(self_weight, dtype=torch.bool) if mask is None else mask.bool()
    other = (1 - self_weight) * real
    return other.sum(-1) / real.sum(-1).clamp(min=1)


def uniform_prev_share(length: int) -> float:
    """``prev_token_share`` of a uniform causal attention over ``length`` real tokens: token t spreads
    1/t over tokens 1..t, so it puts 1 − 1/t on earlier ones; the mean over t is the yardstick that
    tells an attention that *selects* earlier tokens from one that merely averages them."""
    return sum(1 - 1 / t for t in range(1, length + 1)) / length


@torch.no_grad()
def attention_share(lab, router: str, loaded: dict, n_prompts: int) -> pd.DataFrame:
    """``layer, module, group, prev_token_share`` of ``router`` on each task's held-out prompts."""
    prompts = held_out_prompts(lab, loaded, n_prompts)
    out = []
    with lab.using(router), lab.session(train=False):
        for task, texts in prompts.items():
            batch = lab.encode(texts)
            _, cache = lab.run(batch, record=f"*.routes.{router}.hook_route")
            for (layer, module, _), rec in records(cache).items():
                share = prev_token_share(rec.weights.float().cpu(), batch["attention_mask"].cpu())
                out.append({"layer": layer, "module": module, "group": task,
                            "prev_token_share": float(share.mean())})
    return pd.DataFrame(out)

