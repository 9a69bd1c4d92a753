"""RecLoRA: per-user mixtures of a meta-LoRA bank against one LoRA, for users built from task mixes.

Claims (Zhu et al., RecLoRA, arXiv 2408.03533):

1. per-context (per-user) mixtures of a bank of meta-LoRAs beat one plain LoRA of the same trainable
   budget for heterogeneous users, scored per user;
2. it is the user's own context that helps: the same bank and mixing MLP fed one shared context
   (the mean of the users' vectors) does worse;
3. the mixtures follow the users: users whose task mixes differ more get more different mixtures.

Users: each user is a different mixture of the real tasks (``USERS``): their training and held-out
examples are drawn from the tasks in those proportions. A user's context vector u stands in for the
paper's CTR-model user representation: the mean, over the user's history (8 of its training
examples, prompt and answer), of the base model's mean-pooled last hidden state.

Arms (same users, schedule and seeds): ``lora`` (one LoRA on q/v, rank matched to RecLoRA's trainable
count), ``reclora`` (M = 4 meta-LoRAs of rank 8 on q/v, soft mixing from u by the code's MLP),
``reclora_shared`` (the same, every sample given the mean user vector).

Reference: Zhu et al., "Lifelong Personalized Low-Rank Adaptation of Large Language Models for
Recommendation" (arXiv 2408.03533); code github Gebro13/RecLoRA @90f45f9.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from workbench import tasks as task_registry
from workbench.analysis.user_mixtures import alignment, user_distances, user_mixture
from workbench.experiments.answers import answer_features, answer_scores
from workbench.experiments.banks import final_loss, n_trainable, train_plain
from workbench.experiments.base import (
    EXPERIMENTS,
    Experiment,
    Schedule,
    Verdict,
    decide,
    matched_rank,
    paired,
    rows,
    scratch,
)
from workbench.experiments.stats import mean_interval
from workbench.tasks import collate
from workbench.training import fit

TASKS = ("arithmetic", "topic", "language")
# user -> its task mix (three specialists and a generalist)
USERS = {"arith_fan": (0.8, 0.1, 0.1), "topic_fan": (0.1, 0.8, 0.1), "lang_fan": (0.1, 0.1, 0.8),
         "generalist": (1 / 3, 1 / 3, 1 / 3)}
M, RANK, HISTORY, N_TRAIN, DATA_SEED = 4, 8, 8, 48, 0
TARGETS = ["q_proj", "v_proj"]  # the code's targets
PLAIN, ROUTED, SHARED = "lora", "reclora", "reclora_shared"


def counts(mix, n: int) -> list[int]:
    """``n`` split by ``mix`` (largest remainders): how many examples of each task a user has."""
    raw = np.asarray(mix, float) * n / sum(mix)
    out = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - out), kind="stable")[: n - out.sum()]:
        out[i] += 1
    return out.tolist()


def user_examples(loaded: dict, mix, n: int, split: str,
                  rng: np.random.Generator) -> list[tuple[int, object]]:
    """(task index, Example) pairs of one user: ``counts(mix, n)`` drawn without replacement per task."""
    out = []
    for t, (task, c) in enumerate(zip(loaded.values(), counts(mix, n), strict=True)):
        pool = getattr(task, split)
        out += [(t, pool[i]) for i in rng.choice(len(pool), size=min(c, len(pool)), replace=False)]
    return out


@torch.no_grad()
def history_contexts(lab, histories: list[list[dict]]) -> torch.Tensor:
    """(U, d): per user, the mean over its history features of the base's mean-pooled last hidden state."""
    pad = (lab.tokenizer.pad_token_id or 0) if lab.tokenizer is not None else 0
    out = []
    with lab.session(None, train=False):
        for feats in histories:
            batch = {k: v.to(lab.device) for k, v in collate(feats, pad).items()}
            h = lab.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          output_hidden_states=True).hidden_states[-1].float()  # (B, T, d)
            m = batch["attention_mask"][..., None].float()
            out.append(((h * m).sum(1) / m.sum(1)).mean(0))
    return torch.stack(out)


def reclora_budget(lab, ctr_dim: int, hidden: int = 60) -> int:
    """RecLoRA's trainable count on ``TARGETS``: M meta-LoRAs + the mixing MLP, per module."""
    mlp = 2 * ctr_dim + ctr_dim * hidden + hidden + hidden * M + M
    return sum(M * RANK * (i + o) + mlp for o, i in lab.shapes(TARGETS).values())


@EXPERIMENTS.register("reclora")
class RecLoRAExperiment(Experiment):
    """RecLoRA (per-user meta-LoRA mixtures) against one plain LoRA of equal budget, users = task mixes."""

    title = "RecLoRA: per-user mixtures of meta-LoRAs against one plain LoRA, users built from task mixes"
    claims = ("per-user mixtures beat one plain LoRA of equal budget, scored per user",
              "the user's own context helps: one shared context does worse",
              "the mixtures follow the users' task mixes")
    arms = (PLAIN, ROUTED, SHARED)
    full = Schedule(steps=4, lr=3e-3, batch_size=4, eval_limit=6)
    quick = Schedule(steps=2, lr=2e-3, batch_size=2, eval_limit=2, seeds=(0,))
    notes = ("users (task mix over " + ", ".join(TASKS) + "): "
             + "; ".join(f"{u} {tuple(round(x, 2) for x in m)}" for u, m in USERS.items())
             + f". Each user: {N_TRAIN} training examples and eval_limit held-out ones drawn by its mix "
             f"(largest-remainder counts, examples drawn with data seed {DATA_SEED}, the same users in "
             "every seed).",
             f"context u: the mean over {HISTORY} of the user's training examples of the base model's "
             "mean-pooled last hidden state (d = the model width); deviation: the paper's u comes from a "
             "CTR model over the user's behaviour history.",
             f"reclora: M={M} meta-LoRAs of rank {RANK}, α=16 (the code's), on q/v, soft routing T=1, "
             "the code's mixing MLP (LayerNorm, 60 hidden, ReLU, dropout 0.1), LoRA dropout 0.05. "
             "reclora_shared: the same, every sample given the mean of the users' u.",
             "lora: one LoRA on q/v whose rank gives the trainable count closest to RecLoRA's (meta-LoRAs + "
             "MLPs), α = 2r, no dropout.",
             "user_loss: mean teacher-forced NLL of the answer tokens over the user's held-out examples; "
             "user_accuracy: first-token accuracy among the choices on its examples that have choices; "
             "user_loss_mean / user_loss_worst: mean and maximum over users.",
             "mix_alignment: Pearson correlation over user pairs of the distance of their mixture weights "
             "(total variation, mean over modules) and of their task mixes; weight_spread: the mean pairwise "
             "weight distance. mix_weight (task = user/meta-LoRA): a user's weight on a meta-LoRA, mean over "
             "modules (meta-LoRAs are not aligned across seeds: read the map seed by seed).",
             "CPU scale (sized for ~12 min at 1 thread on a busy machine): 4 steps of batch 4 at lr 3e-3, "
             "3 seeds (very little training: the arms differ mostly by their start). In these users the "
             "prompt itself tells the task, so per-user routing can only help "
             "by giving each user's mix its own capacity; users whose answers conflict would test more.")

    _data: tuple | None = None

    def data(self, lab, schedule: Schedule) -> tuple:
        """(train features, eval features, contexts (U, d)), built once per eval_limit."""
        if self._data is not None and self._data[0] == schedule.eval_limit:
            return self._data[1:]
        loaded = task_registry.load(list(TASKS))
        tasks, rng = list(loaded.values()), np.random.default_rng(DATA_SEED)
        train, evals, histories = [], [], []
        for u, mix in enumerate(USERS.values()):
            encode = task_registry.encode_for_training
            mine = [encode(lab.tokenizer, tasks[t], [e])[0] | {"task": t, "user": u}
                    for t, e in user_examples(loaded, mix, N_TRAIN, "train", rng)]
            train += mine
            histories.append([mine[i] for i in rng.choice(len(mine), size=HISTORY, replace=False)])
            evals += [answer_features(lab.tokenizer, tasks[t], [e], task_index=t, user=u)[0]
                      for t, e in user_examples(loaded, mix, schedule.eval_limit, "eval", rng)]
        self._data = (schedule.eval_limit, train, evals, history_contexts(lab, histories))
        return self._data[1:]

    def run_arm(self, lab, arm: str, seed: int, schedule: Schedule) -> pd.DataFrame:
        train, evals, contexts = self.data(lab, schedule)
        return pd.DataFrame(reclora_arm(lab, arm, seed, schedule, train, evals, contexts, list(USERS)))

    def verdicts(self, table: pd.DataFrame) -> list[Verdict]:
        out, arms = [], set(table.arm)
        for arm, base, claim in ((ROUTED, PLAIN, 0), (ROUTED, SHARED, 1)):
            if {arm, base} <= arms:
                for measure in ("user_loss_mean", "user_loss_worst"):
                    d = paired(table, measure, base, arm)
                    label = self.claims[claim] + ("" if measure.endswith("mean") else " (worst user)")
                    out.append(Verdict(label, f"{measure}: {base} − {arm} (> 0: {arm} better)", d, decide(d)))
                if (table.measure == "user_accuracy_mean").any():
                    a = paired(table, "user_accuracy_mean", arm, base)
                    out.append(Verdict(self.claims[claim] + " (accuracy)",
                                       f"user_accuracy_mean: {arm} − {base}", a, decide(a)))
        part = table[(table.arm == ROUTED) & (table.measure == "mix_alignment")]["value"].dropna()
        if len(part):
            a = mean_interval(part.tolist())
            out.append(Verdict(self.claims[2], "mix_alignment (reclora)", a, decide(a)))
        return out


def reclora_arm(lab, arm: str, seed: int, schedule: Schedule, train: list[dict], evals: list[dict],
                contexts: torch.Tensor, users: list[str], profiles: dict | None = None) -> list[dict]:
    """Train and score one arm; features carry ``user`` (row of ``contexts``) and ``task``."""
    profiles = profiles or USERS
    ctx = contexts if arm != SHARED else contexts.mean(0, keepdim=True).expand_as(contexts)

    def context(batch, feats):
        return {"context": ctx[[f["user"] for f in feats]].to(lab.device)}

    opts = dict(steps=schedule.steps, lr=schedule.lr, batch_size=schedule.batch_size, seed=seed)
    with scratch(lab):
        t0 = time.perf_counter()
        budget = reclora_budget(lab, contexts.shape[1])
        if arm == PLAIN:
            adapter, history = train_plain(lab, "lora", train, r=matched_rank(lab, budget, TARGETS),
                                           targets=TARGETS, **opts)
            use, params, ctx_fn = "lora", n_trainable(adapter), None
        else:
            routed = lab.add_router("rec", "reclora", TARGETS, seed=seed, ctr_dim=contexts.shape[1], M=M,
                                    r=RANK, alpha=16.0)
            history = fit(lab, routed.trainable(), train, use="rec", label=arm, progress=False,
                          context=context, **opts)
            use, params, ctx_fn = "rec", routed.n_parameters(trainable_only=True), context
        out = rows(arm, {"trainable_params": params, "train_seconds": time.perf_counter() - t0,
                         "final_loss": final_loss(history)})
        out += user_rows(arm, answer_scores(lab, evals, use=use, context=ctx_fn), users)
        if arm != PLAIN:
            frame = mixture_frame(lab.routers["rec"], ctx, users)
            dist = user_distances(frame)
            out += rows(arm, {"weight_spread": dist["distance"].mean()})
            for (user, m), w in frame.groupby(["user", "lora"], sort=False)["weight"].mean().items():
                out += rows(arm, {"mix_weight": w}, task=f"{user}/{m}")  # the user × LoRA map, module mean
            align = alignment(dist, profiles)  # NaN when the mixtures do not vary (reclora_shared)
            out += [] if np.isnan(align) else rows(arm, {"mix_alignment": align})
    return out


def user_rows(arm: str, scores: pd.DataFrame, users: list[str]) -> list[dict]:
    """Per-user ``user_loss`` / ``user_accuracy`` rows and their mean and worst over users."""
    per = scores.groupby("user").agg(loss=("loss", "mean"), accuracy=("correct", "mean"))
    out = []
    for u, r in per.iterrows():
        out += rows(arm, {"user_loss": r.loss}, task=users[u])
        if not pd.isna(r.accuracy):
            out += rows(arm, {"user_accuracy": r.accuracy}, task=users[u])
    out += rows(arm, {"user_loss_mean": per.loss.mean(), "user_loss_worst": per.loss.max()})
    if per.accuracy.notna().any():
        out += rows(arm, {"user_accuracy_mean": per.accuracy.dropna().mean()})
    return out


@torch.no_grad()
def mixture_frame(routed, contexts: torch.Tensor, users: list[str]) -> pd.DataFrame:
    """RecLoRA's user × meta-LoRA weights at every module (eval mode: no MLP dropout)."""
    weights = {}
    for path, router in routed.modules.items():
        was = router.training
        router.eval()
        weights[path] = router.mix_weights(contexts.to(router.A.device, router.A.dtype))[1]
        router.train(was)
    return user_mixture(weights, users)
