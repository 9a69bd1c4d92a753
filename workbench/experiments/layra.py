"""LayRA: a new language through LoRA on the first and last layers only, plus model arithmetic.

Claims (Owodunni & Kumar, LayRA, arXiv 2509.11414):

1. LayRA forgets the old language less than LoRA on every layer: the English continuation loss after
   training on the new language is lower with LayRA than with an all-layer LoRA of the same trainable
   count;
2. LayRA learns the new language about as well: its new-language loss is not above the all-layer LoRA's;
3. model arithmetic brings instruction following without instruction data in the new language:
   θ_LayRA + λ′·τ_instruct (τ_instruct: a LoRA trained on ENGLISH dialog pairs) has a lower loss on
   new-language dialog replies than θ_LayRA alone (λ′ = 1).

Data (chatterbot-corpus, ``workbench.tasks.chatterbot``): the new language is Indonesian (not among
SmolLM2's training languages' usual set, nor among the ``language`` task's six); "pretraining data"
is its conversation turns as text continuation (the first half of a turn's words as the prompt, the
rest as the target), from three quarters of its conversations; the other quarter gives the held-out
continuations (``new_nll``) and the dialog pairs (first turn → reply, ``dialog_nll``). The old language
is English: continuations of English turns (``old_nll``). The instruction adapter trains on English
dialog pairs. Every ``*_nll`` is the mean loss per target token (``loss`` metric).

Reference: Owodunni & Kumar, "Continually Adding New Languages to Multilingual Language Models"
(LayRA, arXiv 2509.11414); no public code: the layer choice is ``workbench.training.layers.layra_targets``.
"""

from __future__ import annotations

import time

import pandas as pd
import torch

from workbench.errors import WorkbenchError
from workbench.experiments.base import (
    EXPERIMENTS,
    Experiment,
    Schedule,
    Verdict,
    at_least,
    decide,
    paired,
    per_seed,
    rows,
    scratch,
)
from workbench.experiments.stats import mean_interval
from workbench.tasks import Example, Task
from workbench.training.layers import layer_paths, layra_targets

NEW, OLD = "indonesian", "english"
FIRST_K, LAST_K, R_ALL = 2, 2, 2  # LayRA's layers; the all-layer rank (LayRA's: R_ALL · layers / 4)
LAMBDAS = (0.0, 1.0)  # λ′ of the instruction task vector
N_INSTRUCT, N_OLD = 256, 64  # English dialog pairs for the instruction adapter; English continuations
INSTRUCT, PLAIN, LAYRA = "instruct", "lora_all", "layra"
CONTINUE = "Continue the text in the same language."


@EXPERIMENTS.register("layra")
class LayRAExperiment(Experiment):
    """LayRA (first and last layers) against all-layer LoRA for a new language, with model arithmetic."""

    title = "LayRA: a new language (Indonesian) on the first and last layers, plus θ + λ′·τ_instruct"
    claims = ("LayRA forgets the old language (English) less than an all-layer LoRA of equal budget",
              "LayRA's new-language loss is not above the all-layer LoRA's",
              "θ_LayRA + λ′·τ_instruct lowers the new-language dialog loss (λ′ = 1)")
    arms = (INSTRUCT, PLAIN, LAYRA)
    full = Schedule(steps=8, lr=3e-3, batch_size=4, eval_limit=24)
    quick = Schedule(steps=2, lr=3e-3, batch_size=2, eval_limit=2, seeds=(0,))
    notes = (f"layra: LoRA on q/k/v/o of the first {FIRST_K} and last {LAST_K} layers at rank "
             f"{R_ALL}·layers/{FIRST_K + LAST_K}; lora_all: rank {R_ALL} on q/k/v/o of every layer (the same "
             "trainable count); α = 2r; both train on the new language's continuations only (no replay).",
             f"instruct: a rank-8 LoRA on every layer's q/k/v/o trained on {N_INSTRUCT} English dialog pairs "
             "(chatterbot-corpus english), the same steps; τ_instruct is its ΔW; θ + λ′τ is the lab's "
             f"weighted composition {{arm: 1, instruct: λ′}}, λ′ ∈ {LAMBDAS}.",
             "new_nll, old_nll, dialog_nll: mean loss per target token on the first eval_limit held-out "
             "examples (new-language continuations, English continuations, new-language replies); the "
             "instruct arm also reports the base model's (base_*).",
             "delta_norm (task L<layer>): ‖ΔW‖_F summed over the layer's q/k/v/o, the layer map.",
             "Deviations: the paper adds Galician, Swahili and Urdu to multilingual models with real "
             "pretraining corpora and judges on multilingual benchmarks; here CPU scale: a few steps on "
             "chatterbot-corpus turns, losses instead of benchmark scores. λ′ is fixed at 1 for the "
             "verdict (the paper picks the best λ′ per task; the sweep is reported).",
             "Size: the full schedule is cut to fit about 10 minutes at 1 thread on a quiet core (3 seeds); "
             "the CPUs were shared with other runs (load average in the header).")

    def __init__(self):
        self._instruct: dict[int, object] = {}  # seed -> the instruction adapter (shared by the arms)

    def load_data(self) -> dict[str, Task]:
        """``lm`` (new-language continuations: train / held-out), ``old``, ``dialog`` and ``instruct``."""
        return corpus_tasks()

    def run_arm(self, lab, arm: str, seed: int, schedule: Schedule) -> pd.DataFrame:
        data = self.load_data()
        evals = {"new_nll": data["lm"], "old_nll": data["old"], "dialog_nll": data["dialog"]}
        out: list[dict] = []
        with scratch(lab):
            t0 = time.perf_counter()
            instruct = self._instruct_adapter(lab, data, seed, schedule)
            if arm == INSTRUCT:
                out += rows(arm, _scores(lab, None, evals, schedule, "base_"))
                out += rows(arm, _scores(lab, INSTRUCT, evals, schedule))
            else:
                layers = layer_paths(lab, "attention")
                if arm == LAYRA:  # a model of fewer than 4 layers (tests) keeps one first and one last
                    first, last = min(FIRST_K, len(layers) // 2), min(LAST_K, len(layers) // 2)
                    targets = layra_targets(lab, first, last)
                    r = R_ALL * len(layers) // (first + last)
                else:
                    targets, r = [p for ps in layers.values() for p in ps], R_ALL
                adapter, history = lab.train_lora(arm, [data["lm"]], r=r, alpha=2 * r, targets=targets,
                                                  steps=schedule.steps, lr=schedule.lr,
                                                  batch_size=schedule.batch_size, seed=seed, progress=False)
                out += rows(arm, {"trainable_params": sum(f.A.numel() + f.B.numel()
                                                          for f in adapter.modules.values()),
                                  "final_loss": history["loss"].tail(max(1, len(history) // 4)).mean()})
                out += rows(arm, _scores(lab, arm, {"new_nll": data["lm"], "old_nll": data["old"]}, schedule))
                for lam in LAMBDAS:
                    use = {arm: 1.0, instruct: lam} if lam else arm
                    out += rows(arm, _scores(lab, use, {f"dialog_nll@{lam:g}": data["dialog"]}, schedule))
                out += [r for layer, v in delta_norms(lab, arm, layers).items()
                        for r in rows(arm, {"delta_norm": v}, task=f"L{layer:02d}")]
            out += rows(arm, {"train_seconds": time.perf_counter() - t0})
        return pd.DataFrame(out)

    def _instruct_adapter(self, lab, data: dict[str, Task], seed: int, schedule: Schedule) -> str:
        """Train the English instruction adapter once per seed; add a copy of it to the lab for this arm."""
        if seed not in self._instruct:
            adapter, _ = lab.train_lora(INSTRUCT, [data["instruct"]], r=8, alpha=16, targets="attention",
                                        steps=schedule.steps, lr=schedule.lr, batch_size=schedule.batch_size,
                                        seed=seed, progress=False)
            self._instruct[seed] = adapter.copy()
        else:
            lab.add_adapter(self._instruct[seed].copy())
        return INSTRUCT

    def verdicts(self, table: pd.DataFrame) -> list[Verdict]:
        out = []
        if {PLAIN, LAYRA} <= set(table.arm):
            f = paired(table, "old_nll", PLAIN, LAYRA)
            out.append(Verdict(self.claims[0], "old_nll: lora_all − layra (> 0: LayRA forgets less)", f,
                               decide(f)))
            n = paired(table, "new_nll", PLAIN, LAYRA)
            out.append(Verdict(self.claims[1], "new_nll: lora_all − layra (≥ 0: LayRA learns as well)", n,
                               at_least(n)))
        if LAYRA in set(table.arm):
            gain = mean_interval((per_seed(table, LAYRA, "dialog_nll@0")
                                  - per_seed(table, LAYRA, "dialog_nll@1")).dropna().tolist())
            out.append(Verdict(self.claims[2], "dialog_nll: layra − (layra + 1·τ_instruct)", gain,
                               decide(gain)))
        return out


def _scores(lab, use, tasks: dict[str, Task], schedule: Schedule, prefix: str = "") -> dict[str, float]:
    """measure -> the task's loss with ``use`` applied (None: the base)."""
    measure = {t.name: m for m, t in tasks.items()}  # one measure per task
    found = lab.evaluate({"run": use}, list(tasks.values()), limit=schedule.eval_limit, progress=False,
                         cache=False)
    return {f"{prefix}{measure[r.task]}": float(r.value) for r in found.itertuples()}


def delta_norms(lab, name: str, layers: dict[int, list[str]]) -> dict[int, float]:
    """Layer -> Σ over its modules of ‖s B A‖_F of adapter ``name`` (0 where it has no module)."""
    out = {}
    for layer, paths in layers.items():
        total = 0.0
        for p in paths:
            lora = lab.layers.get(p)
            if lora is not None and name in lora.lora_A:
                with torch.no_grad():
                    total += float((lora.scaling[name] * lora.lora_B[name] @ lora.lora_A[name]).norm())
        out[layer] = total
    return out


def layer_map(table: pd.DataFrame) -> pd.DataFrame:
    """``seed, arm, layer, delta_norm``: the layer map of a layra table (rows ``delta_norm``)."""
    part = table[table.measure == "delta_norm"]
    if part.empty:
        raise WorkbenchError("this table has no delta_norm rows; give the per-seed table of the layra "
                             "experiment")
    return pd.DataFrame({"seed": part.seed.to_numpy(), "arm": part.arm.to_numpy(),
                         "layer": part.task.str[1:].astype(int).to_numpy(),
                         "delta_norm": part.value.to_numpy()}).sort_values(["arm", "seed", "layer"],
                                                                           ignore_index=True)


def continuation(text: str) -> Example | None:
    """A turn as text continuation: the first half of its words as the prompt, the rest as the target."""
    words = text.split()
    if len(words) < 4 or len(text) > 200:
        return None
    half = len(words) // 2
    return Example(" ".join(words[:half]), " ".join(words[half:]))


def corpus_tasks() -> dict[str, Task]:
    """The four tasks of the experiment from chatterbot-corpus (see the module docstring)."""
    from workbench.tasks.chatterbot import conversations, pairs, topics

    convs = [c for t in topics(NEW) for c in conversations(NEW, t)]
    train_c, held_c = [c for i, c in enumerate(convs) if i % 4], [c for i, c in enumerate(convs) if not i % 4]
    lm_train = [e for c in train_c for turn in c if (e := continuation(turn))]
    lm_eval = [e for c in held_c for turn in c if (e := continuation(turn))]
    dialog = [Example(c[0], c[1]) for c in held_c if len(c) >= 2]
    english = sorted({t for top in topics(OLD) for c in conversations(OLD, top) for t in c})
    g = torch.Generator().manual_seed(0)
    old = [e for i in torch.randperm(len(english), generator=g).tolist() if (e := continuation(english[i]))]
    en_pairs = [Example(a, b) for top in topics(OLD) for a, b in pairs(OLD, top)]
    en_pairs = [en_pairs[i] for i in torch.randperm(len(en_pairs), generator=g)[:N_INSTRUCT].tolist()]
    lm = Task("lm", f"{NEW} chatterbot turns as continuations", "loss", lm_train, lm_eval, system=CONTINUE,
              max_length=96)
    return {"lm": lm,
            "old": Task("old", f"{OLD} turns as continuations", "loss", old[:1], old[1:N_OLD + 1],
                        system=CONTINUE, max_length=96),
            "dialog": Task("dialog", f"{NEW} first turn -> reply", "loss", dialog[:1], dialog, max_length=96),
            "instruct": Task("instruct", f"{OLD} first turn -> reply", "loss", en_pairs, en_pairs[:1],
                             max_length=96)}
