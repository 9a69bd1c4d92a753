"""Generation: LoRAs made by ICM-LoRA, SG-LoRA and ICM-Fusion against trained ones, on SmolLM2.

Claims (each a qualitative claim of a paper, tried on CPU-sized runs):

1. ICM-LoRA: generated LoRAs recover the trained LoRA's gain over the base ("comparable or exceeding";
   merging.md §4's check: ≥ 90%), on each expert's own task;
2. ICM-LoRA: swapping the condition switches the behaviour (the LoRA generated for another task is
   worse on this task than the one generated for it);
3. SG-LoRA: for a held-out task described in words only ("classify a quote as being about computers
   or sports"), the generated LoRA beats the nearest expert, and
4. the uniform average of the experts;
5. ICM-Fusion: the fused LoRA has a lower mean multi-task loss than task arithmetic of the same LoRAs;
6. storage: the generator is smaller than the LoRAs it replaces.

Experts: six binary sub-tasks of the real data (``workbench.tasks.pairs``): five topic pairs (every
pair of Computers, Food, Sports, Science but Computers/Sports, the held-out one) and German/Dutch
from the language task, each with a one-sentence description. Every arm shares the seed's experts:
a rank-2 LoRA on q_proj/v_proj per expert with a checkpoint every step (the ``experts`` arm trains
them and keeps copies; the other arms read the copies, and train them again when run alone).

Reference: Shao et al., ICM-LoRA, IJCAI 2025 (arXiv 2501.17635); Li et al., SG-LoRA, arXiv
2509.10535; Shao et al., ICM-Fusion, AAAI 2026 (arXiv 2508.04153) (reconstructions where no code).
"""

from __future__ import annotations

import time

import pandas as pd

from workbench.experiments.base import (
    EXPERIMENTS,
    Experiment,
    Schedule,
    Verdict,
    decide,
    per_seed,
    rows,
    scratch,
)
from workbench.experiments.stats import mean_interval
from workbench.generation import ICMFusion, ICMLoRA, MiniLMEncoder, SGLoRA, task_vector

TOPIC_PAIRS = (
    ("Computers", "Food"),
    ("Computers", "Science"),
    ("Food", "Sports"),
    ("Science", "Sports"),
    ("Food", "Science"),
)
HELD_OUT = ("Computers", "Sports")
HELD_OUT_TEXT = "classify a quote as being about computers or sports"
FUSED = ("topic_computers_food", "topic_science_sports", "language_german_dutch")
R, ALPHA, TARGETS = 1, 2, ["q_proj", "v_proj"]  # L = 57,600 values: a CVAE step ~0.2 s
CHANNELS, LATENT, LATE = (2, 4, 8, 16, 32, 64, 64, 32, 16, 8, 4, 2), 32, 0.75
K, TAU, PROJ = 2, 0.05, 16
N_CONDITION = 4  # training examples per task vector
META = {"steps": 3, "shots": 2, "inner_lr": 0.5, "outer_lr": 0.05}


@EXPERIMENTS.register("generate")
class GenerateExperiment(Experiment):
    """ICM-LoRA, SG-LoRA and ICM-Fusion on expert sub-tasks of topic and language."""

    title = "Generation: ICM-LoRA, SG-LoRA, ICM-Fusion against trained LoRAs (topic and language pairs)"
    claims = (
        "ICM-LoRA: generated LoRAs recover ≥ 90% of the trained LoRA's gain over the base",
        "ICM-LoRA: swapping the condition switches the behaviour",
        "SG-LoRA: for a task described in words, the generated LoRA beats the nearest expert",
        "SG-LoRA: for a task described in words, the generated LoRA beats the uniform average",
        "ICM-Fusion: the fused LoRA beats task arithmetic of the same LoRAs on mean multi-task loss",
        "storage: the generator is smaller than the LoRAs it replaces",
    )
    arms = ("experts", "icm_lora", "sg_lora", "icm_fusion")
    tasks = ("topic", "language")
    full = Schedule(steps=4, lr=3e-3, batch_size=2, eval_limit=6)
    quick = Schedule(steps=2, lr=3e-3, batch_size=2, eval_limit=2, seeds=(0,))
    cvae_steps = {"full": 100, "quick": 4}
    notes = (
        "sizing: about 5 minutes a seed at 1 torch thread on a quiet core (15-20 minutes for 3 seeds); "
        "the CPU scale is far below the papers' (ICM-LoRA: 200-epoch LoRAs, 100 checkpoints each, a "
        "2000-epoch CVAE): small effects cannot show.",
        "experts (6): binary sub-tasks of the real tasks (workbench.tasks.pairs): topic pairs "
        "Computers/Food, Computers/Science, Food/Sports, Science/Sports, Food/Science and language "
        "German/Dutch; each has a one-sentence description (e.g. 'classify a quote as being about "
        "food or sports'). Held out: Computers/Sports, described only in words.",
        f"LoRAs: rank {R}, alpha {ALPHA}, q_proj/v_proj of every layer, the schedule's steps, lr and batch, "
        f"a checkpoint every step; the later {LATE:.0%} of each run's checkpoints train the generators.",
        f"CVAE: ICM-LoRA's 1-D conv CVAE with the authors' channels / 4 {CHANNELS}, latent {LATENT}, "
        "kl weight 0.005, lr 2e-3, batch 2, 100 steps (quick: 4).",
        f"ICM-LoRA: the condition is the base model's last-layer last-position hidden state averaged over "
        f"the task's first {N_CONDITION} training examples (one forward per example, not beam decoding).",
        f"SG-LoRA (reconstruction, no public code): MiniLM-L6 description embeddings (not CLIP), top-{K} "
        f"softmax(cos/τ), τ = {TAU}; 2 samples, their mean loss is the SG score; the uniform average is "
        "Σ ΔW_i / 6 of the six experts; the nearest expert is the one of largest weight.",
        f"ICM-Fusion (reconstruction, no public code): linear P to {PROJ} dims in front of the CVAE, "
        f"fused by softmax weights, first-order MAML {META} on the tasks' training examples; fused LoRA "
        f"= dec(0, Σ w_t P(v_t)) over {list(FUSED)}; task arithmetic: Σ ΔW_t (λ = 1); the "
        "uniform-weight fusion before meta-learning and the average Σ ΔW_t / 3 are reported too.",
        "ICM-LoRA generation: one sample (seed = the run's seed) per expert from that expert's own fitted "
        "condition; the swap reads the sample made for another kind of task on this expert's task (a topic "
        "expert gets German/Dutch's sample, German/Dutch gets Computers/Food's).",
        "score: the loss of the answer tokens on the first eval_limit held-out examples (lower is better); "
        "recovered = (base − generated) / (base − trained) per expert, averaged over the experts.",
        "storage: generator parameters (CVAE; + P for fusion) against the LoRA parameters of the "
        "experts it was fitted on.",
    )

    def __init__(self):
        self._cache: dict[int, dict] = {}  # seed -> the experts' final LoRAs, checkpoints, conditions

    # -- what a test replaces --------------------------------------------------------------------
    def load_experts(self) -> tuple[dict, dict, object, str]:
        """(expert tasks {name: Task}, descriptions {name: str}, the held-out Task, its description)."""
        from workbench.tasks.pairs import pair_task

        loaded = self.load_tasks()
        experts = {
            t.name: t
            for t in [pair_task(loaded["topic"], a, b) for a, b in TOPIC_PAIRS]
            + [pair_task(loaded["language"], "German", "Dutch")]
        }
        return (
            experts,
            {n: t.description for n, t in experts.items()},
            pair_task(loaded["topic"], *HELD_OUT),
            HELD_OUT_TEXT,
        )

    def encoder(self):
        """The SG-LoRA text encoder."""
        return MiniLMEncoder()

    def fused(self, experts: dict) -> list[str]:
        """The experts ICM-Fusion fuses."""
        return [n for n in FUSED if n in experts]

    def partner(self, experts: dict, name: str) -> str:
        """The expert whose condition is swapped in for ``name`` (another kind of task)."""
        names = list(experts)
        return names[-1] if name != names[-1] else names[0]

    # -- the shared experts ----------------------------------------------------------------------
    def shared(self, lab, seed: int, schedule: Schedule) -> dict:
        """The seed's experts (trained once per seed, kept outside the lab) and their conditions."""
        if seed in self._cache:
            return self._cache[seed]
        experts, descriptions, heldout, text = self.load_experts()
        finals, checkpoints, t0 = {}, {}, time.perf_counter()
        with scratch(lab):
            for name, task in experts.items():
                run = lab.train_multitask(
                    name,
                    [task],
                    r=R,
                    alpha=ALPHA,
                    targets=TARGETS,
                    steps=schedule.steps,
                    lr=schedule.lr,
                    batch_size=schedule.batch_size,
                    seed=seed,
                    checkpoint_every=1,
                    progress=False,
                )
                finals[name], checkpoints[name] = run.adapter.copy(), run.checkpoints
        seconds = time.perf_counter() - t0
        conditions = {n: task_vector(lab, t.train[:N_CONDITION]) for n, t in experts.items()}
        self._cache = {
            seed: {
                "experts": experts,
                "descriptions": descriptions,
                "heldout": heldout,
                "text": text,
                "finals": finals,
                "checkpoints": checkpoints,
                "conditions": conditions,
                "train_seconds": seconds,
            }
        }
        return self._cache[seed]

    def _loss(self, lab, adapters: dict, task, schedule: Schedule) -> dict[str, float]:
        """label -> loss on ``task`` of each composition, Adapter or None (the base)."""
        scores = lab.evaluate(adapters, task, limit=schedule.eval_limit, progress=False)
        return dict(zip(scores.adapter, scores.value, strict=True))

    def _fit_cvae(self, gen, arm: str, conditions, shared, schedule: Schedule, seed: int) -> list[dict]:
        """Fit a generator's CVAE on the shared checkpoints (one setting for every arm); its time as rows."""
        t0 = time.perf_counter()
        gen.fit(shared["checkpoints"], conditions, late=LATE, steps=self._cvae_steps(schedule), lr=2e-3,
                batch_size=2, seed=seed, progress=False)
        return rows(arm, {"fit_seconds": time.perf_counter() - t0})

    def _cvae_steps(self, schedule: Schedule) -> int:
        return self.cvae_steps["quick" if schedule == self.quick else "full"]

    def run_arm(self, lab, arm: str, seed: int, schedule: Schedule) -> pd.DataFrame:
        shared = self.shared(lab, seed, schedule)
        arms = {
            "experts": self.arm_experts,
            "icm_lora": self.arm_icm_lora,
            "sg_lora": self.arm_sg_lora,
            "icm_fusion": self.arm_icm_fusion,
        }
        with scratch(lab):
            for adapter in shared["finals"].values():
                lab.add_adapter(adapter.copy())
            t0 = time.perf_counter()
            out = arms[arm](lab, shared, seed, schedule)
            out += rows(arm, {"arm_seconds": time.perf_counter() - t0})
        return pd.DataFrame(out)

    def _base_and_trained(self, lab, shared, schedule) -> dict[str, tuple[float, float]]:
        got = shared.setdefault("base_trained", {})
        for name, task in shared["experts"].items():
            if name not in got:
                scores = self._loss(lab, {"base": None, name: name}, task, schedule)
                got[name] = (scores["base"], scores[name])
        return got

    # -- the arms --------------------------------------------------------------------------------
    def arm_experts(self, lab, shared, seed, schedule) -> list[dict]:
        out = rows(
            "experts",
            {
                "train_seconds": shared["train_seconds"],
                "lora_params": sum(a.num_parameters() for a in shared["finals"].values()),
            },
        )
        for name, (base, trained) in self._base_and_trained(lab, shared, schedule).items():
            out += rows("experts", {"loss_base": base, "loss_trained": trained}, task=name)
        heldout = shared["heldout"]
        out += rows(
            "experts",
            {"loss_base": self._loss(lab, {"base": None}, heldout, schedule)["base"]},
            task=heldout.name,
        )
        return out

    def arm_icm_lora(self, lab, shared, seed, schedule) -> list[dict]:
        experts, conditions = shared["experts"], shared["conditions"]
        gen = ICMLoRA(lab, channels=CHANNELS, latent=LATENT)
        out = self._fit_cvae(gen, "icm_lora", conditions, shared, schedule, seed)
        made = {n: gen.generate(conditions[n], seed=seed, name=f"icm_{i}") for i, n in enumerate(experts)}
        known = self._base_and_trained(lab, shared, schedule)
        recovered, gaps = [], []
        for name, task in experts.items():
            other = self.partner(experts, name)
            scores = self._loss(lab, [made[name], made[other]], task, schedule)
            own, swapped = scores[made[name].name], scores[made[other].name]
            base, trained = known[name]
            frac = (base - own) / (base - trained) if base != trained else float("nan")
            recovered.append(frac)
            gaps.append(swapped - own)
            out += rows(
                "icm_lora", {"loss_generated": own, "loss_swapped": swapped, "recovered": frac}, task=name
            )
        lora = sum(a.num_parameters() for a in shared["finals"].values())
        out += rows(
            "icm_lora",
            {
                "recovered_fraction": _nanmean(recovered),
                "swap_gap": sum(gaps) / len(gaps),
                "generator_params": gen.num_parameters(),
                "lora_params": lora,
                "storage_ratio": gen.num_parameters() / lora,
                "cvae_recon": float(gen.history["recon"].tail(10).mean()),
            },
        )
        return out

    def arm_sg_lora(self, lab, shared, seed, schedule) -> list[dict]:
        experts, heldout = shared["experts"], shared["heldout"]
        gen = SGLoRA(lab, encoder=self.encoder(), k=K, tau=TAU, channels=CHANNELS, latent=LATENT)
        out = self._fit_cvae(gen, "sg_lora", shared["descriptions"], shared, schedule, seed)
        weights = gen.proximity(shared["text"])
        nearest = str(weights.idxmax())
        samples = gen.generate(shared["text"], n=2, seed=seed, name="sg")
        uniform = {n: 1.0 / len(experts) for n in experts}
        scores = self._loss(
            lab, [*samples, {"nearest": nearest}, {"uniform": uniform}, None], heldout, schedule
        )
        sg = sum(scores[a.name] for a in samples) / len(samples)
        out += rows(
            "sg_lora",
            {
                "loss_sg": sg,
                "loss_sg_sample0": scores[samples[0].name],
                "loss_sg_sample1": scores[samples[1].name],
                "loss_nearest": scores["nearest"],
                "loss_uniform": scores["uniform"],
                "loss_base": scores["base"],
            },
            task=heldout.name,
        )
        for name in experts:
            out += rows("sg_lora", {"proximity": float(weights[name])}, task=name)
        lora = sum(a.num_parameters() for a in shared["finals"].values())
        out += rows(
            "sg_lora",
            {
                "nearest_minus_sg": scores["nearest"] - sg,
                "uniform_minus_sg": scores["uniform"] - sg,
                "generator_params": gen.num_parameters(),
                "storage_ratio": gen.num_parameters() / lora,
            },
        )
        return out

    def arm_icm_fusion(self, lab, shared, seed, schedule) -> list[dict]:
        from workbench.tasks import encode_for_training

        experts, names = shared["experts"], self.fused(shared["experts"])
        fusion = ICMFusion(lab, proj_dim=PROJ, channels=CHANNELS, latent=LATENT)
        t0 = time.perf_counter()
        fusion.fit(
            {n: shared["checkpoints"][n] for n in names},
            {n: shared["conditions"][n] for n in names},
            late=LATE,
            steps=self._cvae_steps(schedule),
            lr=2e-3,
            batch_size=2,
            seed=seed,
            progress=False,
        )
        before = fusion.fuse(name="fused_uniform")
        support = {
            n: encode_for_training(lab.tokenizer, experts[n], experts[n].train[: 4 * META["shots"]])
            for n in names
        }
        meta = fusion.meta_fit(
            support,
            steps=META["steps"] if schedule != self.quick else 1,
            shots=META["shots"],
            inner_lr=META["inner_lr"],
            outer_lr=META["outer_lr"],
            seed=seed,
            progress=False,
        )
        after = fusion.fuse(name="fused_meta")
        out = rows(
            "icm_fusion",
            {
                "fit_seconds": time.perf_counter() - t0,
                "meta_query_loss_first": meta[meta.step == 0].query_loss.mean(),
                "meta_query_loss_last": meta[meta.step == meta.step.max()].query_loss.mean(),
            },
        )
        runs = [
            after,
            before,
            {"ta": dict.fromkeys(names, 1.0)},
            {"average": dict.fromkeys(names, 1 / len(names))},
            None,
        ]
        per = {label: [] for label in ("fused_meta", "fused_uniform", "ta", "average", "base")}
        for name in names:
            scores = self._loss(lab, runs, experts[name], schedule)
            for label in per:
                per[label].append(scores[label])
                out += rows("icm_fusion", {f"loss_{label}": scores[label]}, task=name)
        means = {f"multitask_loss_{label}": sum(v) / len(v) for label, v in per.items()}
        out += rows(
            "icm_fusion",
            means
            | {
                "ta_minus_fused": means["multitask_loss_ta"] - means["multitask_loss_fused_meta"],
                "generator_params": fusion.num_parameters(),
                "storage_ratio": fusion.num_parameters()
                / sum(shared["finals"][n].num_parameters() for n in names),
            },
        )
        for name, w in fusion.weights.items():
            out += rows("icm_fusion", {"fusion_weight": float(w)}, task=name)
        return out

    # -- verdicts --------------------------------------------------------------------------------
    def verdicts(self, table: pd.DataFrame) -> list[Verdict]:
        out = []

        def interval(arm, measure):
            values = per_seed(table, arm, measure).dropna()
            return mean_interval(values.tolist()) if len(values) else None

        checks = [
            (0, "icm_lora", "recovered_fraction", 0.9, "mean over experts of (base − gen)/(base − trained)"),
            (1, "icm_lora", "swap_gap", 0.0, "loss of the swapped-condition LoRA − own-condition LoRA"),
            (2, "sg_lora", "nearest_minus_sg", 0.0, "held-out loss: nearest expert − SG-LoRA"),
            (3, "sg_lora", "uniform_minus_sg", 0.0, "held-out loss: uniform average − SG-LoRA"),
            (4, "icm_fusion", "ta_minus_fused", 0.0, "mean multi-task loss: task arithmetic − fused"),
        ]
        for i, arm, measure, above, note in checks:
            iv = interval(arm, measure)
            if iv is not None:
                out.append(
                    Verdict(self.claims[i], f"{measure} ({note}) vs {above:g}", iv, decide(iv, above=above))
                )
        iv = interval("icm_lora", "storage_ratio")
        if iv is not None:
            holds = None if iv.n < 2 else bool(iv.high < 1) if iv.high < 1 or iv.low > 1 else None
            out.append(
                Verdict(
                    self.claims[5], "storage_ratio: generator parameters / LoRA parameters (< 1)", iv, holds
                )
            )
        return out


def _nanmean(values: list[float]) -> float:
    kept = [v for v in values if v == v]
    return sum(kept) / len(kept) if kept else float("nan")
