"""TARA: token masks keep each composed adapter on its own tokens, against the plain sum of the LoRAs.

Claims (Peng et al., TARA, arXiv 2508.08812):

1. token masks stop one adapter's effect leaking into the other's tokens: composed under TARA's masks
   (every attention projection masked), the change in one task's answer predictions caused by the
   other task's adapter is smaller than when the same LoRAs are simply summed;
2. the same with TARA's own setting, masks on the key/value projections only;
3. the masked composition answers both tasks better than the plain sum (what the masks are for:
   composing independently trained adapters without interference).

Setting, an LM analogue of TARA's multi-concept composition: two task LoRAs trained independently
(topic and language), and two-turn conversations whose first turn is one task's question and
answer and whose second turn is the other's (the order alternates). Each adapter's mask is its own
turn (user message, assistant header and answer); the system prompt gets no adapter.

Arms (the same two LoRAs, nothing trained, so the trainable budget is equal by construction):
``plain_sum`` (the plain LoRAs summed on every token), ``tara`` (TARA, masks on q/k/v/o),
``tara_kv`` (TARA, masks on k/v only; q/o apply the plain sum). Seeds draw different conversations.

Reference: Peng et al., "TARA: Token-Aware LoRA for Composable Personalization in Diffusion Models"
(arXiv 2508.08812); code github YuqiPeng77/TARA @cbd5dd5.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from workbench import tasks as task_registry
from workbench.analysis.leakage import cross_and_own, leakage
from workbench.experiments.banks import n_trainable, task_bank
from workbench.experiments.base import (
    EXPERIMENTS,
    Experiment,
    Schedule,
    Verdict,
    decide,
    paired,
    per_seed,
    rows,
    scratch,
)
from workbench.experiments.stats import mean_interval
from workbench.routing import routing_context
from workbench.tasks import DEFAULT_SYSTEM, collate
from workbench.tasks.encoding import IGNORE_INDEX, end_of_turn_id
from workbench.tasks.metrics import first_token_ids

TASKS = ("topic", "language")  # the two concepts (ready task LoRAs, trained independently)
PLAIN, MASKED, KV = "plain_sum", "tara", "tara_kv"
BATCH = 4


def _ids(tokenizer, messages: list[dict], generation: bool = False) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def composite(tokenizer, turns: list[tuple[int, object]]) -> dict:
    """One conversation of several (owner, Example) turns: ids, labels on each answer, owners, choices.

    ``owner`` (per token) is the turn's owner index for the tokens of its user message, assistant
    header and answer, -1 for the system prompt. ``first`` lists (position of the first answer token,
    owner, the choices' first-token ids or None).
    """
    messages = [{"role": "system", "content": DEFAULT_SYSTEM}]
    start = len(_ids(tokenizer, messages))
    spans = []
    for owner, ex in turns:
        messages.append({"role": "user", "content": ex.prompt})
        answer = len(_ids(tokenizer, messages, generation=True))
        messages.append({"role": "assistant", "content": ex.target})
        end = len(_ids(tokenizer, messages))
        spans.append((owner, start, answer, end, ex))
        start = end
    ids = _ids(tokenizer, messages)
    labels, owners, first = [IGNORE_INDEX] * len(ids), [-1] * len(ids), []
    eot = end_of_turn_id(tokenizer)
    for owner, s, a, e, ex in spans:
        n = len(tokenizer(ex.target, add_special_tokens=False)["input_ids"]) + 1  # target + end of turn
        if ids[a + n - 1] != eot:
            raise ValueError(f"the chat template did not end the answer at {a + n - 1}; cannot place labels")
        labels[a:a + n] = ids[a:a + n]
        owners[s:e] = [owner] * (e - s)
        first.append((a, owner, first_token_ids(tokenizer, ex.choices) if ex.choices else None))
    return {"input_ids": ids, "labels": labels, "owner": owners, "first": first}


def conversations(tokenizer, loaded: dict, n: int, seed: int) -> list[dict]:
    """``n`` two-turn conversations, one turn per task, the first task alternating (seeded draws)."""
    rng = np.random.default_rng(seed)
    tasks = list(loaded.values())
    picks = [rng.choice(len(t.eval), size=n, replace=len(t.eval) < n) for t in tasks]
    out = []
    for i in range(n):
        order = [0, 1] if i % 2 == 0 else [1, 0]
        out.append(composite(tokenizer, [(t, tasks[t].eval[int(picks[t][i])]) for t in order]))
    return out


@EXPERIMENTS.register("tara")
class TARAExperiment(Experiment):
    """TARA's token masks against the plain sum of the same two task LoRAs: leakage and composed answers."""

    title = "TARA: token-masked composition of two task LoRAs against their plain sum (leakage, answers)"
    claims = ("token masks stop one adapter's effect leaking into the other's tokens",
              "k/v-only masks (TARA's setting) stop the leakage too",
              "the masked composition answers both tasks better than the plain sum")
    arms = (PLAIN, MASKED, KV)
    full = Schedule(steps=0, batch_size=BATCH, eval_limit=12)
    quick = Schedule(steps=0, batch_size=2, eval_limit=2, seeds=(0,))
    notes = (f"adapters: the shipped ready task LoRAs {', '.join(TASKS)} (rank 8, α 16, q/k/v/o, each "
             "trained alone, seed 0), the same in every seed and arm; nothing is trained here (steps 0), so "
             "every arm has the same parameters. Seeds draw different conversations (eval_limit of them per "
             "seed, from the tasks' held-out examples, the first task alternating).",
             "deviation: TARA is a diffusion method whose masks act on the text tokens' cross-attention "
             "keys/values; here the masks act on a causal LM's own attention projections, each adapter's "
             "mask being its own turn (user message, assistant header, answer). tara masks q/k/v/o "
             "(kv_only=False); tara_kv is the paper's k/v-only setting.",
             "leakage (nats): at the positions that predict adapter d's answer tokens, the mean "
             "KL(p_with both ‖ p_with source s taken out); cross_leakage = the mean over s ≠ d, own_effect = "
             "over s = d, leak_ratio = cross/own; the leakage rows' task column reads source→target. Taking "
             "s out = the other adapter alone (plain_sum) or TARA over the other adapter alone.",
             "segment_loss / segment_accuracy: each turn's answer NLL and first-token accuracy among its "
             "choices, with both adapters on; composed_loss / composed_accuracy: their means over the two "
             "tasks. solo_loss (plain_sum): each turn with its own adapter alone.",
             "the relative verdicts (log of the masked arm's cross_leakage over the plain sum's, per seed) "
             "were added after the first full run, whose absolute differences straddled 0 because the "
             "plain sum's leakage varies with each seed's conversations; the run's own summary has only "
             "the absolute ones.",
             "CPU scale (sized for ~15 min at 1 thread): 12 conversations per seed, 3 seeds.")

    def run_arm(self, lab, arm: str, seed: int, schedule: Schedule) -> pd.DataFrame:
        loaded = task_registry.load(list(TASKS))
        convs = conversations(lab.tokenizer, loaded, schedule.eval_limit, seed)
        encode = task_registry.encode_for_training
        train = {n: [f | {"task": i} for f in encode(lab.tokenizer, t, t.train)]
                 for i, (n, t) in enumerate(loaded.items())}
        with scratch(lab):  # the ready LoRAs on SmolLM2 (trained here on another base)
            task_bank(lab, train, steps=schedule.steps or 10, lr=schedule.lr, batch_size=schedule.batch_size,
                      seed=seed)
            return pd.DataFrame(tara_arm(lab, arm, list(TASKS), convs, batch_size=schedule.batch_size))

    def verdicts(self, table: pd.DataFrame) -> list[Verdict]:
        out, arms = [], set(table.arm)
        for arm, claim in ((MASKED, 0), (KV, 1)):
            if {arm, PLAIN} <= arms:
                d = paired(table, "cross_leakage", PLAIN, arm)
                out.append(Verdict(self.claims[claim], f"cross_leakage: {PLAIN} − {arm} (> 0: less leakage)",
                                   d, decide(d)))
        for arm, claim in ((MASKED, 0), (KV, 1)):
            if {arm, PLAIN} <= arms:  # the share of the plain sum's leakage left, per seed, on a log scale
                masked, plain = per_seed(table, arm, "cross_leakage"), per_seed(table, PLAIN, "cross_leakage")
                seeds = masked.index.intersection(plain.index)
                d = mean_interval(np.log(masked[seeds] / plain[seeds]).tolist())
                out.append(Verdict(self.claims[claim] + " (relative)",
                                   f"log(cross_leakage {arm} / {PLAIN}) (< 0: less leakage)", d,
                                   None if decide(d) is None else not decide(d),
                                   f"{np.exp(d.mean):.1%} of the plain sum's leakage left (geometric mean)"))
        for arm in (MASKED, KV):
            if {arm, PLAIN} <= arms and (table.measure == "composed_loss").any():
                d = paired(table, "composed_loss", PLAIN, arm)
                out.append(Verdict(self.claims[2] + ("" if arm == MASKED else " (k/v only)"),
                                   f"composed_loss: {PLAIN} − {arm} (> 0: {arm} better)", d, decide(d)))
        return out


def tara_arm(lab, arm: str, bank: list[str], convs: list[dict], *, batch_size: int = BATCH) -> list[dict]:
    """Score one arm on conversations (``composite`` features); ``bank`` are the lab's adapters, in owner
    order. Adds (and removes) the TARA routers it needs."""
    with scratch(lab):
        if arm != PLAIN:
            kv = arm == KV
            lab.add_router("tara_all", "tara", bank=bank, kv_only=kv)
            for c in bank:
                lab.add_router(f"tara_no_{c}", "tara", bank=[b for b in bank if b != c], kv_only=kv)
        full, without, owner, labels, firsts = [], {c: [] for c in bank}, [], [], []
        for start in range(0, len(convs), batch_size):
            part = convs[start:start + batch_size]
            batch = collate(part, 0)
            width = batch["input_ids"].shape[1]
            own = torch.tensor([f["owner"] + [-1] * (width - len(f["owner"])) for f in part])  # (B, T)
            masks = {c: (own == i).float() for i, c in enumerate(bank)}
            at = batch["labels"][:, 1:] != IGNORE_INDEX  # (B, T-1) positions that predict an answer token
            logits = _run(lab, arm, bank, None, batch, masks)
            full.append(logits[:, :-1][at])
            for c in bank:
                without[c].append(_run(lab, arm, bank, c, batch, masks)[:, :-1][at])
            owner.append(own[:, 1:][at])
            labels.append(batch["labels"][:, 1:][at])
            firsts += _first_hits(logits, part)
        full_t, owner_t, label_t = torch.cat(full), torch.cat(owner), torch.cat(labels)  # (N, V), (N,), (N,)
        without_t = {c: torch.cat(v) for c, v in without.items()}
        targets = {c: owner_t == i for i, c in enumerate(bank)}
        frame = leakage(full_t, without_t, targets, condition=arm)
        cross, own_effect = cross_and_own(frame)
        out = rows(arm, {"trainable_params": sum(n_trainable(lab.adapters[c]) for c in bank),
                         "cross_leakage": cross, "own_effect": own_effect, "leak_ratio": cross / own_effect})
        for r in frame.itertuples():
            out += rows(arm, {"leakage": r.leakage}, task=f"{r.source}→{r.target}")
        nll = F.cross_entropy(full_t.float(), label_t, reduction="none")  # (N,)
        seg = [float(nll[targets[c]].mean()) for c in bank]
        for c, v in zip(bank, seg, strict=True):
            out += rows(arm, {"segment_loss": v}, task=c)
        out += rows(arm, {"composed_loss": sum(seg) / len(seg)})
        if arm == PLAIN and len(bank) == 2:  # each answer with its own adapter alone = the other taken out
            solo = [float(F.cross_entropy(without_t[bank[1 - i]][targets[c]].float(), label_t[targets[c]]))
                    for i, c in enumerate(bank)]
            out += rows(arm, {"solo_loss": sum(solo) / 2})
        hits = pd.DataFrame(firsts, columns=["owner", "correct"])
        if len(hits):
            acc = hits.groupby("owner")["correct"].mean()
            for i, v in acc.items():
                out += rows(arm, {"segment_accuracy": v}, task=bank[i])
            out += rows(arm, {"composed_accuracy": acc.mean()})
    return out


@torch.no_grad()
def _run(lab, arm: str, bank: list[str], drop: str | None, batch: dict, masks: dict) -> torch.Tensor:
    """Logits (B, T, V) with the bank on (or without ``drop``), composed as the arm composes."""
    keep = [c for c in bank if c != drop]
    use = keep if arm == PLAIN else ("tara_all" if drop is None else f"tara_no_{drop}")
    with lab.session(use, train=False), routing_context(token_masks={c: masks[c] for c in keep},
                                                        attention_mask=batch["attention_mask"]):
        return lab.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def _first_hits(logits: torch.Tensor, part: list[dict]) -> list[tuple[int, float]]:
    """(owner, correct) for each turn with choices: its first answer token against the choices'."""
    out = []
    for b, f in enumerate(part):
        for pos, owner, ids in f.get("first", []):
            if ids:
                best = ids[int(logits[b, pos - 1, ids].float().argmax())]
                out.append((owner, float(best == f["input_ids"][pos])))
    return out
