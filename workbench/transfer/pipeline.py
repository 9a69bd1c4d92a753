"""``transfer``: Trans-LoRA end to end, from a LoRA on a source model to a LoRA on a target model.

    adapter, report = transfer(source_lab, "arith", target_lab, task, n_synthetic=64, seed=0)

Five stages (a ``tqdm.auto`` bar steps through them):

1. **synthesis** — the synthesizer (the source base model by default; ``synthesizer="target"`` as on
   the paper's transfer side) writes two disjoint pools of task inputs from ``n_seeds`` real seeds:
   one to train the discriminator on, one to filter (a discriminator trained on the very inputs it
   filters would reject them all);
2. **discriminator** — a LoRA on the source model, real task inputs vs the first pool
   (``discriminator.train_discriminator``, the one training loop);
3. **filtering** — the second pool's inputs with ``p(real) ≥ threshold`` (or the ``top`` fraction) stay;
4. **labelling** — the source model with ``source_adapter`` answers them;
5. **distillation** — a LoRA on the target model trains on the labelled inputs (its own tokenizer).

``filter=False`` skips stages 2–3 (every synthetic input is labelled), the paper's "no filter" arm.
The discriminator is removed from the source lab at the end unless ``keep_discriminator``. A stage that
fails (zero inputs kept, a bad argument, an error inside training) leaves both labs' adapters and what
they use as they were, and the error names the stage and the fix.

Reference: Wang et al., "Trans-LoRA: towards data-free Transferable Parameter Efficient Finetuning",
NeurIPS 2024 (arXiv 2405.17258). Deviations: CPU scale (tens of synthetic inputs, short trainings);
one synthesis round and one filtering round (no regeneration until enough pass); the synthesizer is the
source base model by default; hard teacher labels; the real inputs of the discriminator are the
task's training inputs (the source side's data), of which the first ``n_seeds`` are the stored seeds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pandas as pd
from tqdm.auto import tqdm

from workbench.adapters import Adapter
from workbench.errors import WorkbenchError
from workbench.tasks import Example, Task
from workbench.transfer.discriminator import CHOICES, real_probability, train_discriminator
from workbench.transfer.distillation import distill
from workbench.transfer.filtering import filter_inputs
from workbench.transfer.labelling import label
from workbench.transfer.synthesis import normalized, synthesize

STAGES = ("synthesis", "discriminator", "filtering", "labelling", "distillation")
SYNTHESIZERS = ("source", "target")


@dataclass
class TransferResult:
    """What ``transfer`` returns. ``adapter, report = transfer(...)`` unpacks the first two."""

    adapter: Adapter  # the target LoRA, already in the target lab
    report: pd.DataFrame  # stage, measure, value
    scores: pd.DataFrame | None  # the filter's frame (sample, text, value, rank, kept); None without filter
    labelled: list[Example] = field(default_factory=list)  # what the target LoRA trained on
    discriminator: Adapter | None = None  # kept in the source lab only with keep_discriminator=True
    samples: pd.DataFrame | None = None  # text, group, value, kept: every input the discriminator scored

    @staticmethod
    def sample_frame(real: list[Example], contrast: list[Example], p_train, scores: pd.DataFrame | None):
        """``text, group, value, kept``: the real and the discriminator's synthetic inputs (group
        ``real``/``contrast``, their p(real) after training) and the filtered pool (``synthetic``),
        for an embedding map of real, raw synthetic and filtered samples and a score histogram."""
        trained = pd.DataFrame({"text": [e.prompt for e in [*real, *contrast]],
                                "group": ["real"] * len(real) + ["contrast"] * len(contrast),
                                "value": [float(v) for v in p_train], "kept": False})
        if scores is None:
            return trained
        pool = scores.assign(group="synthetic")[["text", "group", "value", "kept"]]
        return pd.concat([trained, pool], ignore_index=True)

    def __iter__(self):
        return iter((self.adapter, self.report))


def _count(key: str, value, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise WorkbenchError(f"transfer: {key}={value!r} must be a whole number of at least {low}")
    return value


def _check(source_lab, source_adapter, target_lab, task, name, disc, n_synthetic, n_seeds, synthesizer):
    if not isinstance(task, Task):
        raise WorkbenchError(f"transfer takes a workbench Task, got {type(task).__name__}; "
                             "load one with workbench.tasks.load([...])")
    if source_lab is target_lab:
        raise WorkbenchError("source and target are the same lab; transfer moves an adapter to another "
                             "base model: give the target model's own Workbench")
    for lab, side in ((source_lab, "source"), (target_lab, "target")):
        if lab.tokenizer is None:
            raise WorkbenchError(f"the {side} lab has no tokenizer; transfer works on text: build it "
                                 "with Workbench(model, tokenizer)")
    if source_adapter not in source_lab.adapters:
        raise WorkbenchError(f"no adapter {source_adapter!r} in the source lab; it has: "
                             f"{list(source_lab.adapters) or '(none)'}")
    if name in target_lab.adapters or not name.isidentifier():
        raise WorkbenchError(f"the target adapter name {name!r} is taken in the target lab or not an "
                             "identifier; pass name=... (letters, digits, _)")
    if disc in source_lab.adapters:
        raise WorkbenchError(f"the source lab already has an adapter {disc!r}; pass discriminator_name=...")
    _count("n_synthetic", n_synthetic)
    _count("n_seeds", n_seeds)
    if synthesizer not in SYNTHESIZERS:
        raise WorkbenchError(f"synthesizer={synthesizer!r}; use one of {SYNTHESIZERS}")
    if not task.train:
        raise WorkbenchError(f"task {task.name!r} has no training examples to take seeds from")


def transfer(source_lab, source_adapter: str, target_lab, task: Task, *, n_synthetic: int = 64,
             filter: bool = True, seed: int = 0, name: str | None = None, n_seeds: int = 5,
             n_real: int | None = None, synthesizer: str = "source", threshold: float | None = 0.5,
             top: float | None = None, discriminator: dict | None = None, training: dict | None = None,
             synthesis: dict | None = None, discriminator_name: str | None = None,
             keep_discriminator: bool = False, choices: tuple[str, str] = CHOICES,
             progress: bool = True) -> TransferResult:
    """Move ``source_adapter`` of ``source_lab`` to ``target_lab`` without the task's data (Trans-LoRA).

    Args:
        source_lab, target_lab: ``Workbench``es with tokenizers (any two model families).
        source_adapter: the source LoRA's name in ``source_lab`` (the teacher).
        task: the task (its format and metric; its ``train`` gives the seeds and the discriminator's
            real inputs, never the target's training data).
        n_synthetic: synthetic inputs generated per pool (fewer when the synthesizer repeats itself).
        filter: train the discriminator and filter (``False``: label every synthetic input).
        seed: seeds synthesis, the discriminator and the target LoRA.
        name: the target adapter's name (default ``<source_adapter>_transfer``).
        n_seeds: real seeds shown to the synthesizer; n_real: real inputs for the discriminator
            (default ``max(n_seeds, n_synthetic)``, at most ``len(task.train)``).
        synthesizer: "source" (the source base model) or "target" (the target base model).
        threshold, top: the filter's rule (``filtering.keep_mask``).
        discriminator, training: ``train_lora`` options of the discriminator / the target LoRA
            (defaults: discriminator r=4, steps=40; target r=8, steps=60, targets="attention").
        synthesis: ``synthesize`` options (``shots``, ``temperature``, ``top_p``, ``max_new_tokens``).
        discriminator_name: its adapter name in the source lab (default ``<source_adapter>_discriminator``).
        keep_discriminator: leave the discriminator in the source lab (default: removed at the end).
        choices: the discriminator's (real, synthetic) answers.

    Returns:
        ``TransferResult``: the target adapter (its lineage ``trans_lora`` names the source adapter and
        models, n kept / n generated, the seed), the report frame ``stage, measure, value``, the filter's
        score frame, the labelled examples and (when kept) the discriminator.

    Raises:
        WorkbenchError: bad arguments, or a stage that fails (named, with the fix); both labs are then
            left as they were.
    """
    name = name or f"{source_adapter}_transfer"
    disc = discriminator_name or f"{source_adapter}_discriminator"
    _check(source_lab, source_adapter, target_lab, task, name, disc, n_synthetic, n_seeds, synthesizer)
    n_real = min(len(task.train), n_real if n_real is not None else max(n_seeds, n_synthetic))
    _count("n_real", n_real)
    seeds, real = task.train[:n_seeds], task.train[:n_real]
    synth_lab = source_lab if synthesizer == "source" else target_lab
    disc_opts = {"r": 4, "steps": 40, "progress": progress} | (discriminator or {})
    train_opts = {"r": 8, "steps": 60, "seed": seed, "progress": progress} | (training or {})
    before = {id(lab): (lab, set(lab.adapters), lab.active) for lab in (source_lab, target_lab)}
    rows: list[tuple[str, str, float]] = []
    bar = tqdm(total=len(STAGES), desc="trans-lora", unit="stage", disable=not progress)
    stage, scores, disc_adapter, samples = STAGES[0], None, None, None
    try:
        start = time.perf_counter()
        pool = synthesize(synth_lab, task, seeds, n_synthetic, seed=seed, **(synthesis or {}))
        rows += [(stage, "generated", len(pool))]
        if filter:
            contrast = synthesize(synth_lab, task, seeds, n_synthetic, seed=seed + 10_000,
                                  **(synthesis or {}))
            in_pool = {normalized(e.prompt) for e in pool}
            contrast = [e for e in contrast if normalized(e.prompt) not in in_pool]  # disjoint pools
            rows += [(stage, "generated_for_discriminator", len(contrast))]
        rows += [(stage, "seconds", time.perf_counter() - start)]
        if not pool:
            raise WorkbenchError("the synthesizer wrote no new input (only repeats of the seeds or empty "
                                 "answers); raise synthesis={'temperature': ...}, give more seeds (n_seeds) "
                                 "or use the other synthesizer")
        bar.update()
        kept = pool
        if filter:
            stage, start = STAGES[1], time.perf_counter()
            bar.set_postfix_str(stage)
            if not contrast:
                raise WorkbenchError("no synthetic input to train the discriminator on; raise n_synthetic")
            result = train_discriminator(source_lab, disc, task, real, contrast, choices=choices,
                                         **({"seed": seed} | disc_opts))
            disc_adapter = result.adapter
            p_real = real_probability(source_lab, disc, task, [*real, *contrast], choices=choices)
            correct = (p_real[:len(real)] >= 0.5).sum() + (p_real[len(real):] < 0.5).sum()
            rows += [(stage, "final_loss", disc_adapter.lineage.get("final_loss") or float("nan")),
                     (stage, "train_accuracy", float(correct) / len(p_real)),
                     (stage, "seconds", time.perf_counter() - start)]
            bar.update()
            stage, start = STAGES[2], time.perf_counter()
            bar.set_postfix_str(stage)
            kept, scores = filter_inputs(source_lab, disc, task, pool, threshold=threshold, top=top,
                                         choices=choices)
            samples = TransferResult.sample_frame(real, contrast, p_real, scores)
            rows += [(stage, "kept", len(kept)), (stage, "mean_p_real", float(scores.value.mean())),
                     (stage, "seconds", time.perf_counter() - start)]
            if not kept:
                raise WorkbenchError(
                    f"the discriminator kept none of the {len(pool)} synthetic inputs (highest p(real) "
                    f"{scores.value.max():.3f} < threshold {threshold}); lower threshold, keep the best "
                    "fraction with top=0.5, raise n_synthetic, or run with filter=False")
        else:
            bar.update(2)
        stage, start = STAGES[3], time.perf_counter()
        bar.set_postfix_str(stage)
        labelled = label(source_lab, source_adapter, task, kept)
        rows += [(stage, "labelled", len(labelled)), (stage, "seconds", time.perf_counter() - start)]
        bar.update()
        stage, start = STAGES[4], time.perf_counter()
        bar.set_postfix_str(stage)
        adapter = distill(target_lab, name, task, labelled, **train_opts).adapter
        rows += [(stage, "final_loss", adapter.lineage.get("final_loss") or float("nan")),
                 (stage, "seconds", time.perf_counter() - start)]
        bar.update()
        if not keep_discriminator and disc in source_lab.adapters:
            source_lab.remove_adapter(disc)
            disc_adapter = None
    except BaseException as e:
        _restore(before.values())
        if isinstance(e, WorkbenchError) and not str(e).startswith("trans-lora"):
            raise WorkbenchError(f"trans-lora stage {stage!r} failed: {e}") from e
        raise
    finally:
        bar.close()
    adapter.lineage = {**adapter.lineage, "method": "trans-lora", "trans_lora": {
        "source_adapter": source_adapter, "source_model": source_lab.name,
        "source_fingerprint": source_lab.fingerprint, "target_model": target_lab.name,
        "target_fingerprint": target_lab.fingerprint, "task": task.name, "synthesizer": synthesizer,
        "n_seeds": len(seeds), "n_generated": len(pool), "n_kept": len(kept), "n_labelled": len(labelled),
        "filter": bool(filter), "threshold": threshold if filter and top is None else None,
        "top": top if filter else None, "seed": seed}}
    report = pd.DataFrame(rows, columns=["stage", "measure", "value"])
    return TransferResult(adapter, report, scores, labelled, disc_adapter, samples)


def _restore(snapshots) -> None:
    """Remove the adapters a failed call added to each lab and put back what each used."""
    for lab, names, active in snapshots:
        for added in [n for n in lab.adapters if n not in names]:
            try:
                lab.remove_adapter(added)
            except Exception:  # noqa: BLE001 -- undo as much as possible; the original error is raised
                pass
        try:
            lab.use(active)
        except Exception:  # noqa: BLE001
            pass
