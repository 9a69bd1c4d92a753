"""Transfer of a LoRA to another base model without the task's data: Trans-LoRA end to end.

    result = transfer(source_lab, "arith", target_lab, task, n_synthetic=64, seed=0)
    result.adapter          # the LoRA on the target model (its lineage names the source)
    result.report           # stage, measure, value
    result.scores           # the discriminator's p(real) of each synthetic input, and what was kept

Each stage is its own module and usable alone: ``synthesize`` (a model writes task inputs from seeds),
``train_discriminator`` / ``real_probability`` (a LoRA telling real from synthetic), ``filter_inputs`` /
``select`` (rejection by p(real)), ``label`` (the source LoRA answers), ``distill`` (the target LoRA).
Labs meet here only through their public methods (``train_lora``, ``using``, ``remove_adapter``).

Reference: Wang et al., "Trans-LoRA: towards data-free Transferable Parameter Efficient Finetuning",
NeurIPS 2024 (arXiv 2405.17258). Deviations are written in each module.
"""

from workbench.transfer.discriminator import (
    CHOICES,
    discriminator_task,
    question,
    real_probability,
    train_discriminator,
)
from workbench.transfer.distillation import distill, synthetic_task
from workbench.transfer.filtering import Filtered, filter_inputs, keep_mask, select
from workbench.transfer.labelling import greedy_answers, label, shared_choices
from workbench.transfer.pipeline import STAGES, SYNTHESIZERS, TransferResult, transfer
from workbench.transfer.synthesis import few_shot_prompt, synthesize

__all__ = ["CHOICES", "STAGES", "SYNTHESIZERS", "Filtered", "TransferResult", "discriminator_task", "distill",
           "few_shot_prompt", "filter_inputs", "greedy_answers", "keep_mask", "label", "question",
           "real_probability", "select", "shared_choices", "synthesize", "synthetic_task",
           "train_discriminator", "transfer"]
