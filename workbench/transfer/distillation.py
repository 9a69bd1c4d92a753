"""Distillation: a LoRA on the target model trained on the teacher-labelled synthetic examples.

The labelled examples are text, so they cross tokenizers and prompt formats: the target lab encodes
them with its own tokenizer and template (a chat template, or Gemma 3's completion template), and
trains through the project's one loop (``lab.train_lora``, the answer tokens' loss). The synthetic
task keeps the real task's metric, system prompt, budgets and eval split (held out, never trained on),
so ``target_lab.evaluate`` scores the transferred adapter on real data.

Reference: Wang et al., "Trans-LoRA: towards data-free Transferable Parameter Efficient Finetuning",
NeurIPS 2024 (arXiv 2405.17258): the target LoRA is trained on the synthetic data the source LoRA
labelled (knowledge distillation on the teacher's outputs). Deviations: hard labels (the teacher's
greedy answer or chosen label), not soft logits, which would need a shared vocabulary.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from workbench.errors import WorkbenchError
from workbench.tasks import Example, Task


def synthetic_task(task: Task, labelled: Sequence[Example]) -> Task:
    """``task`` with ``labelled`` as its training split (name ``<task>_synthetic``)."""
    labelled = list(labelled)
    if not labelled:
        raise WorkbenchError(f"task {task.name!r}: no labelled synthetic examples to distil from; raise "
                             "n_synthetic, or loosen the filter (a lower threshold, or top=...)")
    return dataclasses.replace(task, name=f"{task.name}_synthetic",
                               description=f"synthetic inputs of {task.name}, labelled by the source LoRA",
                               train=labelled)


def distill(lab, name: str, task: Task, labelled: Sequence[Example], **train_kwargs):
    """Train the LoRA ``name`` on ``lab`` (the target) on ``labelled`` through ``lab.train_lora``.

    ``train_kwargs`` go to ``train_lora`` (``r``, ``steps``, ``lr``, ``targets``, ``seed``, ``progress``).
    Returns its ``TrainResult``; a failure leaves the lab without the adapter (``train_lora``'s rollback).
    """
    return lab.train_lora(name, synthetic_task(task, labelled), **train_kwargs)
