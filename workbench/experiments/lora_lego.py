"""LoRA-LEGO's merging claims on SmolLM2: rank-wise clusters of the task LoRAs' units, against task
arithmetic and TIES cut to the same merged rank.

Claims (Zhao et al., LoRA-LEGO, ICLR 2025; abstract and Sec. 3-4):

1. merged by LoRA-LEGO (k-means of the pooled rank-1 units into k = r clusters, one centroid per
   cluster, with the dual reweighting), the task LoRAs keep more of each task's score than merged by
   task arithmetic or TIES at the same merged rank;
2. the clusters group units from different LoRAs that do similar things;
3. the output half of the dual reweighting helps: the merge with both halves beats the one with the
   parameter reweighting alone.

Arms (the four shipped ready task LoRAs, rank 8 on q/k/v/o; every merge at rank 8 = max rᵢ, the
paper's k = r, weights 1): ``task_arithmetic`` (Σ ΔWᵢ, SVD-cut to rank 8), ``ties`` (TIES, density 0.2,
SVD-cut to rank 8), ``lora_lego`` (parameter reweighting + output reweighting "match"),
``lora_lego_param`` (parameter reweighting only), ``lora_lego_svd`` (our ablation: ``lora_lego`` on
units re-factored by each source's SVD, which the shared A initialisation of the ready LoRAs cannot
steer). A seed sets LoRA-LEGO's k-means initialisation and
draws the held-out examples each arm is scored on (the same draw for every arm of a seed).

Reference: Zhao et al., "Merging LoRAs like Playing LEGO: Pushing the Modularity of LoRA to Extremes
Through Rank-Wise Clustering", ICLR 2025 (arXiv 2409.16167); mechanism in
``workbench/merging/methods/lora_lego.py``, cluster measures in ``workbench/analysis/unit_clusters.py``.
"""

from __future__ import annotations

import random
import time

import pandas as pd

from workbench.analysis.unit_clusters import mean_cluster_measures
from workbench.experiments.answers import answer_features, answer_scores
from workbench.experiments.banks import BANK_RANK, task_bank, uses_ready
from workbench.experiments.base import (
    EXPERIMENTS,
    Experiment,
    Schedule,
    Verdict,
    decide,
    paired,
    rows,
    scratch,
)
from workbench.experiments.stats import mean_interval
from workbench.merging import merge
from workbench.merging.methods.lora_lego import lego_clusters

TA, TIES, LEGO, LEGO_P, LEGO_SVD = "task_arithmetic", "ties", "lora_lego", "lora_lego_param", "lora_lego_svd"
METHODS = {TA: ("task_arithmetic", {}), TIES: ("ties", {"density": 0.2}),
           LEGO: ("lora_lego", {"output_reweight": "match"}),
           LEGO_P: ("lora_lego", {"output_reweight": "none"}),
           LEGO_SVD: ("lora_lego", {"output_reweight": "match", "unit_basis": "svd"})}
N_INIT = 10  # k-means restarts (the method's default)


@EXPERIMENTS.register("lora_lego")
class LoRALegoExperiment(Experiment):
    """LoRA-LEGO merges of the ready task LoRAs against task arithmetic and TIES at the same rank."""

    title = "LoRA-LEGO against task arithmetic and TIES merging four task LoRAs at the same rank"
    tasks = ("arithmetic", "topic", "language", "code")  # the merged sources
    scored = ("arithmetic", "topic", "language")  # the tasks the merges are scored on
    claims = ("LoRA-LEGO merges keep more of each task's score than task arithmetic at the same merged rank",
              "LoRA-LEGO merges keep more of each task's score than TIES at the same merged rank",
              "the clusters group units from different LoRAs that do similar things",
              "the output reweighting (the second half of the dual reweighting) improves the merge")
    arms = (TA, TIES, LEGO, LEGO_P, LEGO_SVD)
    full = Schedule(steps=6, lr=3e-3, batch_size=4, eval_limit=12)  # eval_limit: per scored task
    quick = Schedule(steps=2, lr=2e-3, batch_size=2, eval_limit=2, seeds=(0,))
    notes = ("sources: the four shipped ready task LoRAs (arithmetic, topic, language, code: rank 8, α 16, "
             "q/k/v/o, each trained alone for 80-120 steps of batch 8, all with seed 0), the same in every "
             "seed; no training here (a tiny test lab trains its own bank for `steps`).",
             f"every merge: weights 1, merged rank {BANK_RANK} (= max rᵢ, the paper's k = r): "
             "task_arithmetic is Σ ΔWᵢ cut to rank 8 by SVD; ties is TIES (density 0.2, total sign "
             "election) cut to rank 8 by SVD; lora_lego pools the 32 rank-1 units of each module, "
             "k-means (k-means++, best of "
             f"{N_INIT}) into 8 clusters, one centroid each, parameter reweighting on (each centroid at its "
             "members' mean norm) and output reweighting 'match' (‖ΔW'‖_F = RMS of the sources' ‖ΔWᵢ‖_F, "
             "the variance matching of our reconstruction); lora_lego_param: parameter reweighting only.",
             "⚠ reconstruction: the paper gives no code; the output reweighting's formula and the √s folding "
             "are ours (see the method file). At k = r the √(r̄/k) form of output reweighting is 1 (a no-op), "
             "so the variance-matching form is the arm tried.",
             "scores are teacher-forced on held-out examples (one forward, no generation): loss = mean NLL "
             "of the answer tokens; accuracy = first-token accuracy among the choices (topic, language). "
             "keep = (loss_base − loss_merged) / (loss_base − loss_own): the share of the task LoRA's own "
             "loss reduction the merge keeps (1: all of it, < 0: worse than the base); mean_keep averages "
             "it over the scored tasks. Deviation (CPU time): all four LoRAs are merged, but the merges are "
             "scored on arithmetic, topic and language only; code (a loss-only task with answers of up to "
             "256 tokens, most of the evaluation's cost) is a source, not scored.",
             "a seed draws eval_limit held-out examples per task (the same draw for every arm of that "
             "seed) and seeds LoRA-LEGO's k-means; the merges of task_arithmetic and ties do not depend "
             "on the seed, so their spread over seeds is the evaluation draw's.",
             "cluster measures (lora_lego arm; lora_lego_param has the same clusters), over the 120 "
             "modules, on pairs of units from different LoRAs: mixed_cluster_share (clusters of ≥ 2 "
             "units holding units of ≥ 2 LoRAs), update_cos_gap (mean |cos| of the rank-1 updates b·aᵀ "
             "in one cluster minus in different clusters), output_cos_gap (the same on b), "
             "same_index_share (same-cluster pairs with the same rank index). The ready LoRAs share their "
             "A initialisation (seed 0; cos(Aᵢ, Aⱼ) ≈ 0.9-0.95 after training), so units of one rank "
             "index start alike: same_index_share says how much of the grouping that explains.",
             "claim 2's verdict: update_cos_gap > 0; mixed_cluster_share above 1/2 is tried beside it.",
             "lora_lego_svd (our ablation, not in the paper): the same merge as lora_lego, but each source's "
             "update is first re-factored by its SVD (aⱼ = √σⱼvⱼ, bⱼ = √σⱼuⱼ), so the units do not inherit "
             "the shared A initialisation; its cluster measures say what the clusters join without it "
             "(same_index_share there: the same singular-value order).",
             "CPU scale: 12 held-out examples per task per seed (a seeded draw from the 64-96 held out), "
             "3 seeds, about 10 min at 1 thread; the paper merges on larger models and benchmarks.")

    _reference: dict | None = None

    def run_arm(self, lab, arm: str, seed: int, schedule: Schedule) -> pd.DataFrame:
        loaded = self.load_tasks()
        names = list(loaded)  # the merged sources
        scored = [n for n in names if n in self.scored]  # the tasks each merge is scored on
        held = {n: answer_features(lab.tokenizer, t, draw(t.eval, schedule.eval_limit, seed), task_index=i)
                for i, (n, t) in enumerate(loaded.items()) if n in scored}
        train = {} if uses_ready(lab, names) else {
            n: answer_features(lab.tokenizer, t, t.train, task_index=i)
            for i, (n, t) in enumerate(loaded.items())}
        out = []
        with scratch(lab):
            bank = task_bank(lab, train or dict.fromkeys(names, ()), steps=schedule.steps, lr=schedule.lr,
                             batch_size=schedule.batch_size, seed=seed)
            ref = self._references(lab, scored, held, seed)
            if arm == TA:
                for n in scored:
                    out += rows(arm, {k: v for k, v in ref[n].items() if v == v}, task=n)  # NaN: no choices
            method, params = METHODS[arm]
            t0 = time.perf_counter()
            result = merge(bank, method, rank=BANK_RANK, seed=seed, name=f"merged_{arm}", **params)
            seconds = time.perf_counter() - t0
            lab.add_adapter(result.adapter)
            keeps, losses, accs = [], [], []
            for n in scored:
                scores = answer_scores(lab, held[n], use=result.adapter.name)
                loss, acc = float(scores["loss"].mean()), float(scores["correct"].mean())
                base, own = ref[n]["loss_base"], ref[n]["loss_own"]
                keep = (base - loss) / (base - own) if base != own else float("nan")
                out += rows(arm, {"loss": loss, "keep": keep}, task=n)
                if acc == acc:  # a choice task
                    out += rows(arm, {"accuracy": acc}, task=n)
                    accs.append(acc)
                keeps.append(keep)
                losses.append(loss)
            out += rows(arm, {"mean_keep": sum(keeps) / len(keeps),
                              "multitask_loss": sum(losses) / len(losses),
                              "merge_error": result.total_error, "merge_seconds": seconds})
            if accs:
                out += rows(arm, {"multitask_accuracy": sum(accs) / len(accs)})
            if arm in (LEGO, LEGO_SVD):
                basis = params.get("unit_basis", "factors")
                out += rows(arm, mean_cluster_measures(lego_clusters(bank, rank=BANK_RANK, seed=seed,
                                                                     n_init=N_INIT, unit_basis=basis)))
        return pd.DataFrame(out)

    def _references(self, lab, names: list[str], held: dict, seed: int) -> dict[str, dict[str, float]]:
        """task -> {loss_base, loss_own, accuracy_base, accuracy_own} on the seed's draw (the base model
        and the task's own LoRA); computed once per seed (the bank is the same for every arm of a seed)."""
        key = (lab.name, seed, tuple(len(held[n]) for n in names))
        if self._reference is None:
            self._reference = {}
        if key not in self._reference:
            ref = {}
            for n in names:
                base, own = answer_scores(lab, held[n], use=None), answer_scores(lab, held[n], use=n)
                ref[n] = {"loss_base": float(base["loss"].mean()), "loss_own": float(own["loss"].mean()),
                          "accuracy_base": float(base["correct"].mean()),
                          "accuracy_own": float(own["correct"].mean())}
            self._reference[key] = ref
        return self._reference[key]

    def verdicts(self, table: pd.DataFrame) -> list[Verdict]:
        out, arms = [], set(table.arm)
        for claim, base in ((0, TA), (1, TIES)):
            if {LEGO, base} <= arms:
                d = paired(table, "mean_keep", LEGO, base)
                out.append(Verdict(self.claims[claim], f"mean_keep: {LEGO} − {base} (> 0: LEGO keeps more)",
                                   d, decide(d)))
                if (table.measure == "multitask_accuracy").any():
                    a = paired(table, "multitask_accuracy", LEGO, base)
                    out.append(Verdict(self.claims[claim] + " (accuracy)",
                                       f"multitask_accuracy: {LEGO} − {base}", a, decide(a)))
        for arm, label in ((LEGO, ""), (LEGO_SVD, " [SVD units, our ablation]")):
            lego = table[table.arm == arm]
            gap = lego[lego.measure == "update_cos_gap"]["value"].tolist()
            if gap:
                g = mean_interval(gap)
                out.append(Verdict(self.claims[2] + label, f"update_cos_gap of {arm} (> 0: same-cluster "
                                   "units of different LoRAs are more alike)", g, decide(g)))
                mixed = mean_interval((lego[lego.measure == "mixed_cluster_share"]["value"] - 0.5).tolist())
                out.append(Verdict(self.claims[2] + label + " (most clusters mix LoRAs)",
                                   f"mixed_cluster_share of {arm} − 1/2", mixed, decide(mixed)))
        if {LEGO_SVD, TA} <= arms:
            d = paired(table, "mean_keep", LEGO_SVD, TA)
            out.append(Verdict(self.claims[0] + " [SVD units, our ablation]", f"mean_keep: {LEGO_SVD} − {TA}",
                               d, decide(d)))
        if {LEGO, LEGO_P} <= arms:
            d = paired(table, "mean_keep", LEGO, LEGO_P)
            out.append(Verdict(self.claims[3], f"mean_keep: {LEGO} − {LEGO_P}", d, decide(d)))
        return out


def draw(examples: list, limit: int | None, seed: int) -> list:
    """``limit`` held-out examples drawn with ``seed`` (all of them, in order, when ``limit`` is None
    or not below their number)."""
    if limit is None or limit >= len(examples):
        return list(examples)
    picks = sorted(random.Random(f"lora_lego|{seed}").sample(range(len(examples)), limit))
    return [examples[i] for i in picks]
