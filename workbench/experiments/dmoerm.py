"""DMoERM (double-layer MoE reward model) against one reward model, on preference pairs of the real tasks.

Claim (Quan, DMoERM, arXiv 2403.01197): splitting reward modelling by task (outer sparse router) and
by capability (inner dense mixture of capability LoRA experts aggregated by an MLP) gives a reward
model that agrees with preferences more often than one reward model trained on the same data. Tried
as: pairwise preference accuracy on held-out pairs, overall and per capability, against a plain LoRA
+ reward head of the same trainable count trained on the same pairs for the same number of steps.

Preference data (a workbench construction, ``workbench.tasks.preference``): per capability (one per
real task) a prompt with its correct answer (chosen) against a corrupted one (rejected: another
choice, or the number moved by a small offset). Training pairs from the task's train split, held-out
pairs from its eval split. Two categories for the outer level: ``labels`` (topic, language: say what a
text is) and ``answers`` (arithmetic, trivia: compute or recall an answer).

Phases (the code's recipe at CPU scale): (2) per capability a new LoRA on q/v + a value head, trained
with the pairwise loss on that capability's pairs; (3) everything frozen, per category an MLP over the
concatenated last-token states of its capability experts, trained on the category's pairs; the outer
router is a linear head over the base model's last-token state of the prompt (the code: a separately
fine-tuned classifier LLM over the user turns), trained with cross-entropy on the training prompts'
categories. Phase 1 (a full fine-tune of the base reward model whose value head phase 2 copies) is
left out: the value heads start from a seeded init.

Reference: Quan, "DMoERM: Recipes of Mixture-of-Experts for Effective Reward Modeling" (arXiv
2403.01197); code github quanshr/DMoERM-v1 (innermoe/, router/).
"""

from __future__ import annotations

import contextlib
import math
import time

import pandas as pd
import torch
from torch import nn

from workbench import tasks as task_registry
from workbench.analysis.reward_mixture import capability_weights, router_bars
from workbench.experiments.base import (
    EXPERIMENTS,
    Experiment,
    Schedule,
    Verdict,
    at_least,
    decide,
    matched_rank,
    paired,
    per_rank,
    rows,
    scratch,
)
from workbench.experiments.stats import mean_interval
from workbench.routing.dmoerm import DMoERM, pairwise_loss
from workbench.tasks.preference import preference_pairs
from workbench.training import Loop, Losses, Shuffled

CATEGORIES = {"labels": ("topic", "language"), "answers": ("arithmetic", "trivia")}
TARGETS = ["q_proj", "v_proj"]  # the code's LoRA targets
RANK = 8  # per capability expert (the code: 32)
HEAD_STEPS, HEAD_LR = 100, 1e-3  # phase 3 MLPs and the router head, full batch on cached states
PLAIN, ROUTED = "single_rm", "dmoerm"


@EXPERIMENTS.register("dmoerm")
class DMoERMExperiment(Experiment):
    """DMoERM (task router + capability LoRA experts + MLP) against one LoRA reward model."""

    title = "DMoERM against one reward model of the same budget, on correct-vs-corrupted answer pairs"
    claims = ("the double-layer MoE reward model beats one reward model on held-out preferences",
              "the outer router sends each conversation to its task category (above chance)")
    arms = (PLAIN, ROUTED)
    full = Schedule(steps=3, lr=3e-3, batch_size=2, eval_limit=6)
    quick = Schedule(steps=1, lr=2e-3, batch_size=1, eval_limit=2, seeds=(0,))
    notes = ("pairs: per capability (task) a prompt with the correct answer against a corrupted one (another "
             "choice; a whole number moved by ±1..10); steps × batch training pairs per capability from the "
             "train split, eval_limit held-out pairs per capability from the eval split; the pairs are the "
             "same for every seed and arm.",
             f"categories (outer level): {CATEGORIES}; capability experts (inner level): one LoRA "
             f"(r = {RANK}, α = 2r, q/v) + value head per task, `steps` steps of `batch` pairs each "
             "with the pairwise loss −log σ(r_w − r_l); then per category an MLP (W1: C·H → H, PReLU, "
             f"w2: H → 1) over the frozen experts' last-token states ({HEAD_STEPS} full-batch Adam steps, "
             f"lr {HEAD_LR:g}); router: a Linear(H → 2) over the base model's last-token state of the "
             "prompt, CE on the training prompts (same steps, lr).",
             "single_rm: one LoRA on q/v, rank chosen so its trainable count (+ its value head) is the "
             "closest to DMoERM's (4 experts + value heads + 2 MLPs + router head), α = 2r, trained on all "
             "capabilities' pairs mixed for 4 × `steps` steps of `batch` pairs (as many gradient steps as "
             "the four experts together).",
             "deviations: phase 1 (full fine-tune of a base reward model) left out; the outer router is a "
             "head over the frozen base (the code fine-tunes a separate LLM); LoRA r = 8 not 32, α = 2r not "
             "r; Adam with a constant lr; pairs built from labels, not LLM-API capability annotations.",
             "pref_accuracy: share of held-out pairs with r(chosen) > r(rejected) (ties count ½), per "
             "capability and their mean. expert_accuracy (dmoerm): a capability's own phase-2 expert and "
             "value head on its pairs. router_accuracy: share of held-out prompts routed to their category; "
             "route_prob:<category> the router bars. capability_weight:<expert>: the MLP's gradient × input "
             "share of each expert's state on the category's held-out conversations.",
             "CPU scale: 3 steps of 2 pairs per expert (6 training pairs per capability); the paper trains "
             "Qwen-1.8B on thousands of pairs.")

    _states: dict | None = None  # (adapter, text) -> last-token state; the base's are the same every seed

    def categories(self) -> dict[str, tuple[str, ...]]:
        """category -> its capabilities (task names); the tests give toy ones."""
        return CATEGORIES

    def load_tasks(self) -> dict:
        """name -> Task for every capability (the tests give toy tasks for the tiny models)."""
        return task_registry.load([t for caps in self.categories().values() for t in caps])

    def run_arm(self, lab, arm: str, seed: int, schedule: Schedule) -> pd.DataFrame:
        loaded, categories = self.load_tasks(), self.categories()
        n_train = schedule.steps * schedule.batch_size
        train = {n: preference_pairs(lab.tokenizer, t, t.train[:n_train], seed=0) for n, t in loaded.items()}
        held = {n: preference_pairs(lab.tokenizer, t, t.eval[:schedule.eval_limit], seed=1)
                for n, t in loaded.items()}
        self._states = {k: v for k, v in (self._states or {}).items() if k[0] is None}  # keep the base's
        with scratch(lab):
            t0 = time.perf_counter()
            if arm == PLAIN:
                r = matched_rank(lab, dmoerm_budget(lab, categories) - value_head_size(lab), TARGETS)
                lab.new_adapter(PLAIN, r=r, alpha=2.0 * r, targets=TARGETS, seed=seed)
                head = value_head(lab, seed)
                mixed = [p for n in loaded for p in train[n]]
                train_reward(lab, PLAIN, head, mixed, steps=len(loaded) * schedule.steps,
                             batch=schedule.batch_size, lr=schedule.lr, seed=seed)
                out = rows(arm, {"trainable_params": lora_size(lab, PLAIN) + value_head_size(lab),
                                 "rank": r})
                accuracy = {n: pairwise_accuracy(*self.rewards(lab, PLAIN, head, held[n])) for n in loaded}
            else:
                out, accuracy = self.run_dmoerm(lab, categories, train, held, seed, schedule)
            out += rows(arm, {"train_seconds": time.perf_counter() - t0,
                              "pref_accuracy": sum(accuracy.values()) / len(accuracy)})
            out += [r for n, a in accuracy.items() for r in rows(arm, {"pref_accuracy": a}, task=n)]
        return pd.DataFrame(out)

    def run_dmoerm(self, lab, categories, train, held, seed: int, schedule: Schedule):
        """Phases 2 and 3 and the router; held-out accuracy per capability, and the two levels' measures."""
        heads, size = {}, 0
        for i, name in enumerate(train):  # phase 2: one LoRA + value head per capability
            lab.new_adapter(name, r=RANK, alpha=2.0 * RANK, targets=TARGETS, seed=seed * 100 + i)
            heads[name] = value_head(lab, seed * 100 + i)
            train_reward(lab, name, heads[name], train[name], steps=schedule.steps, batch=schedule.batch_size,
                         lr=schedule.lr, seed=seed)
            size += lora_size(lab, name) + value_head_size(lab)
        rm = DMoERM(lab, {c: list(caps) for c, caps in categories.items()}, seed=seed)
        size += sum(p.numel() for p in rm.parameters())
        names = list(categories)
        index = {t: names.index(c) for c, caps in categories.items() for t in caps}
        # router: CE on the training prompts' categories, over the base model's last-token states
        prompts = [p.prompt for n in train for p in train[n]]
        labels = torch.tensor([index[n] for n in train for _ in train[n]])
        fit_full_batch(rm.head, lambda: nn.functional.cross_entropy(rm.head(self.states(lab, None, prompts)),
                                                                     labels))
        for c, caps in categories.items():  # phase 3: the category's MLP over its frozen experts
            pairs = [p for t in caps for p in train[t]]
            chosen, rejected = (self.features(lab, caps, [getattr(p, side) for p in pairs])
                                for side in ("chosen", "rejected"))
            fit_full_batch(rm.inner[c], lambda c=c, w=chosen, lost=rejected: pairwise_loss(rm.inner[c](w),
                                                                                           rm.inner[c](lost)))
        # held-out: route each prompt, then the routed category's inner reward model
        pairs = [p for n in held for p in held[n]]
        with torch.no_grad():
            probs = rm.head(self.states(lab, None, [p.prompt for p in pairs])).softmax(-1)
        route = probs.argmax(-1).tolist()
        out = rows(ROUTED, {"trainable_params": size,
                            "router_accuracy": sum(route[i] == index[p.task] for i, p in enumerate(pairs))
                            / len(pairs)})
        for b in router_bars(probs, [p.task for p in pairs], names).itertuples():
            out += rows(ROUTED, {f"route_prob:{b.category}": b.prob}, task=b.group)
        won = {n: [] for n in held}
        for c, name in enumerate(names):
            mine = [p for i, p in enumerate(pairs) if route[i] == c]
            if not mine:
                continue
            caps = categories[name]
            fc, fr = (self.features(lab, caps, [getattr(p, side) for p in mine])
                      for side in ("chosen", "rejected"))
            with torch.no_grad():
                rc, rr = rm.inner[name](fc), rm.inner[name](fr)
            for p, a, b in zip(mine, rc.tolist(), rr.tolist(), strict=True):
                won[p.task].append(pairwise_accuracy(torch.tensor([a]), torch.tensor([b])))
            groups = [p.task for p in mine] * 2
            for w in capability_weights(rm.inner[name], torch.cat([fc, fr]), list(caps), groups).itertuples():
                out += rows(ROUTED, {f"capability_weight:{w.expert}": w.weight}, task=w.group)
        for name, head in heads.items():  # phase 2 alone: a capability's own expert on its own pairs
            accuracy = pairwise_accuracy(*self.rewards(lab, name, head, held[name]))
            out += rows(ROUTED, {"expert_accuracy": accuracy}, task=name)
        return out, {n: sum(v) / len(v) if v else 0.0 for n, v in won.items()}

    def states(self, lab, adapter: str | None, texts: list[str]) -> torch.Tensor:
        """(N, H) last-token states of ``texts`` with ``adapter`` on (None: the base), memoised per run."""
        cache = self._states if self._states is not None else {}
        self._states = cache
        missing = list(dict.fromkeys(t for t in texts if (adapter, t) not in cache))
        for i in range(0, len(missing), 8):
            part = missing[i:i + 8]
            with torch.no_grad(), lab.session(adapter, train=False):
                for t, h in zip(part, last_states(lab, part), strict=True):
                    cache[(adapter, t)] = h
        return torch.stack([cache[(adapter, t)] for t in texts])

    def features(self, lab, experts, texts: list[str]) -> torch.Tensor:
        """(N, C·H) the experts' last-token states concatenated (the inner MLP's input)."""
        return torch.cat([self.states(lab, e, texts) for e in experts], dim=-1)

    def rewards(self, lab, adapter: str, head: nn.Linear, pairs) -> tuple[torch.Tensor, torch.Tensor]:
        """(r_chosen, r_rejected) of one LoRA + value head on ``pairs``."""
        with torch.no_grad():
            return (head(self.states(lab, adapter, [p.chosen for p in pairs])).squeeze(-1),
                    head(self.states(lab, adapter, [p.rejected for p in pairs])).squeeze(-1))

    def verdicts(self, table: pd.DataFrame) -> list[Verdict]:
        out = []
        if {PLAIN, ROUTED} <= set(table.arm):
            d = paired(table, "pref_accuracy", ROUTED, PLAIN)
            out.append(Verdict(self.claims[0], "pref_accuracy: dmoerm − single_rm", d, at_least(d)))
            tasks = [t for t in dict.fromkeys(table[table.measure == "pref_accuracy"].task) if t]
            for t in tasks:
                d = paired(table, "pref_accuracy", ROUTED, PLAIN, task=t)
                out.append(Verdict(f"{t}: dmoerm ≥ one reward model",
                                   f"pref_accuracy ({t}): dmoerm − single_rm", d, at_least(d)))
        part = table[(table.arm == ROUTED) & (table.measure == "router_accuracy")]
        if len(part):
            chance = 1 / len(self.categories())
            r = mean_interval(part["value"].tolist())
            out.append(Verdict(self.claims[1], f"router_accuracy (chance {chance:.2f})", r,
                               decide(r, above=chance)))
        return out


def last_states(lab, texts: list[str]) -> torch.Tensor:
    """(N, H) last-layer state at each text's last real token, with what the lab uses now (the caller
    decides about gradients).

    The decoder alone (``model.base_model``): its last hidden state is the causal LM's
    ``hidden_states[-1]`` (after the final norm), without computing the vocabulary logits.
    """
    batch = lab.encode(texts)
    h = lab.model.base_model(**batch).last_hidden_state  # (N, T, H)
    last = batch["attention_mask"].cumsum(1).argmax(1)  # the last real token (right padding)
    return h[torch.arange(h.shape[0], device=h.device), last]


def pairwise_accuracy(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> float:
    """Share of pairs with r_chosen > r_rejected; a tie counts ½."""
    wins = (r_chosen > r_rejected).float() + 0.5 * (r_chosen == r_rejected).float()
    return float(wins.mean())


def value_head(lab, seed: int) -> nn.Linear:
    """A Linear(H → 1) reward head with nn.Linear's default init, from ``seed``."""
    hidden = lab.model.config.hidden_size
    g = torch.Generator().manual_seed(10_000 + seed)
    head = nn.Linear(hidden, 1)
    bound = 1 / math.sqrt(hidden)
    with torch.no_grad():
        head.weight.copy_((torch.rand(1, hidden, generator=g) * 2 - 1) * bound)
        head.bias.copy_((torch.rand(1, generator=g) * 2 - 1) * bound)
    return head.to(lab.device)


def value_head_size(lab) -> int:
    return lab.model.config.hidden_size + 1


def lora_size(lab, name: str) -> int:
    return sum(f.A.numel() + f.B.numel() for f in lab.adapters[name].modules.values())


def dmoerm_budget(lab, categories: dict) -> int:
    """DMoERM's trainable count: per capability a rank-RANK LoRA + value head; per category the MLP
    (C·H·H + H, one PReLU slope, H + 1); the router head (H·n + n)."""
    hidden = lab.model.config.hidden_size
    caps = sum(len(c) for c in categories.values())
    mlps = sum(len(c) * hidden * hidden + hidden + 1 + hidden + 1 for c in categories.values())
    router = hidden * len(categories) + len(categories)
    return caps * (RANK * per_rank(lab, TARGETS) + hidden + 1) + mlps + router


class PairwiseObjective:
    """The ``Loop`` objective of a reward model: −log σ(r_chosen − r_rejected) over a batch of pairs.

    ``r`` is ``head`` on the last-token state of each text with what the lab applies (the session's
    adapter).
    """

    def __init__(self, lab, head: nn.Linear):
        self.lab, self.head, self.module = lab, head, lab.model

    def __call__(self, items, present: int | None = None) -> Losses:
        part = [pair for _, pair in items]
        texts = [p.chosen for p in part] + [p.rejected for p in part]
        r = self.head(last_states(self.lab, texts)).squeeze(-1)
        return Losses(pairwise_loss(r[:len(part)], r[len(part):]))


class FullBatchObjective:
    """The ``Loop`` objective of a small module trained full batch: ``loss_fn()`` whatever the items."""

    def __init__(self, module: nn.Module, loss_fn):
        self.module, self.loss_fn = module, loss_fn

    def __call__(self, items, present: int | None = None) -> Losses:
        return Losses(self.loss_fn())


def train_reward(lab, adapter: str, head: nn.Linear, pairs, *, steps: int, batch: int, lr: float,
                 seed: int) -> list[float]:
    """Train ``adapter``'s factors and ``head`` with the pairwise loss on ``pairs`` through the one loop.

    Seeded order (``Shuffled``), AdamW without weight decay, the loop's schedule without warm-up.
    """
    lora = [p for f in lab.adapters[adapter].modules.values() for p in (f.A, f.B)]
    source = Shuffled([(0, pair) for pair in pairs], seed)
    loop = Loop([*lora, *head.parameters()], PairwiseObjective(lab, head), source,
                session=lambda: lab.session(adapter, train=True, trainable=lora),
                label=f"reward model {adapter}", steps=steps, lr=lr, batch_size=batch, seed=seed, warmup=0.0,
                progress=False)
    loop.run()
    return loop.history()["loss"].tolist()


def fit_full_batch(module: nn.Module, loss_fn, steps: int = HEAD_STEPS, lr: float = HEAD_LR,
                   seed: int = 0) -> float:
    """``steps`` full-batch steps of ``loss_fn()`` on ``module``'s parameters through the one loop; the
    last loss (AdamW without weight decay, the loop's schedule without warm-up)."""
    loop = Loop(list(module.parameters()), FullBatchObjective(module, loss_fn), Shuffled([(0, None)], seed),
                session=contextlib.nullcontext, label="full-batch head", steps=steps, lr=lr, batch_size=1,
                seed=seed, warmup=0.0, progress=False)
    loop.run()
    return float(loop.history()["loss"].iloc[-1])


def level_frames(summary: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(router bars ``group, category, prob``, capability weights ``group, expert, weight``), each with
    ``low, high``, from a measure table's ``route_prob:`` and ``capability_weight:`` rows (means over
    seeds)."""
    def frame(prefix: str, key: str, value: str) -> pd.DataFrame:
        part = summary[(summary.arm == ROUTED) & summary.measure.str.startswith(prefix)]
        return pd.DataFrame({"group": part.task.to_numpy(), key: part.measure.str[len(prefix):].to_numpy(),
                             value: part["mean"].to_numpy(), "low": part.low.to_numpy(),
                             "high": part.high.to_numpy()})

    return frame("route_prob:", "category", "prob"), frame("capability_weight:", "expert", "weight")
