"""Task vector: the ICM-LoRA condition, the last decoder layer's hidden state at the last position,
averaged over a few examples of the task.

    c = task_vector(lab, task)                     # (H,): a Task's first 8 training examples
    c = task_vector(lab, [Example(...), ...])      # examples, chat-encoded as for training
    c = task_vector(lab, [{"input_ids": [...]}])   # token ids (models without a tokenizer)

Each example runs alone (no padding), prompt and target together as in training, through the model
with what ``use`` names applied (default: the base, so a new task needs no adapter). A forward hook
on the last decoder layer (the last entry of the model's longest ``ModuleList`` of blocks, or
``layer=`` a module path) keeps ``output[0, -1]``: the last position's hidden state, before the final
norm. The mean over examples is the task vector.

Reference: Shao et al., "In-Context Meta LoRA Generation" (ICM-LoRA), IJCAI 2025, arXiv 2501.17635;
authors' code ``ICL/last_time_step_icl.py`` (forward hook on the last decoder layer, the last
position's hidden state at every decoding step, averaged over steps, beams and examples).
Deviations: one teacher-forced forward of prompt + target per example instead of beam-search
generation, so each example gives one position (its last token), not one per decoding step and
beam; the base model (``use=None``) by default instead of the task's LoRA-tuned model, so that the
condition of a new task, which has no LoRA yet, is computed the same way as the training ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from workbench.errors import WorkbenchError
from workbench.hooks import hooks

N_EXAMPLES = 8  # examples a Task gives by default (the authors use 30)


def last_decoder_layer(model: nn.Module) -> str:
    """Path of the last block of the longest ``nn.ModuleList`` (``model.layers.29``, ``transformer.h.1``).

    Raises:
        WorkbenchError: the model has no ``ModuleList`` of blocks (give ``layer=`` a module path).
    """
    lists = [(len(m), path) for path, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m)]
    if not lists:
        raise WorkbenchError(f"{type(model).__name__} has no list of decoder layers (nn.ModuleList); pass "
                             "layer='<path of the last decoder layer>'")
    n, path = max(lists, key=lambda t: t[0])  # the first longest list: the decoder stack
    return f"{path}.{n - 1}"


def encode_examples(lab, examples) -> list[list[int]]:
    """Token ids of each example: a Task (its first ``N_EXAMPLES`` training examples), Examples
    (chat-encoded as training encodes them), or dicts with ``input_ids``."""
    from workbench.tasks import Example, Task, encode_for_training

    if isinstance(examples, Task):
        task, examples = examples, list(examples.train[:N_EXAMPLES])
        if not examples:
            raise WorkbenchError(f"task {task.name!r} has no training examples to make a task vector from")
    else:
        task = None
        examples = list(examples) if isinstance(examples, Sequence) else None
    if not examples:
        raise WorkbenchError("a task vector needs examples: a Task, a list of Examples, or a list of dicts "
                             "with input_ids; got none")
    if all(isinstance(e, dict) and "input_ids" in e for e in examples):
        ids = [list(map(int, e["input_ids"])) for e in examples]
    elif all(isinstance(e, Example) for e in examples):
        if lab.tokenizer is None:
            raise WorkbenchError("Examples need the lab's tokenizer; give dicts with input_ids instead")
        task = task or Task("examples", "examples given for a task vector", "loss", train=[], eval=[])
        ids = [f["input_ids"] for f in encode_for_training(lab.tokenizer, task, examples)]
    else:
        raise WorkbenchError("give examples as a Task, a list of workbench.tasks.Example, or a list of dicts "
                             f"with input_ids; got {type(examples[0]).__name__}")
    if any(len(i) == 0 for i in ids):
        raise WorkbenchError("an example has no tokens; every example needs at least one")
    return ids


@torch.no_grad()
def task_vector(lab, examples, *, layer: str | None = None, use=None) -> torch.Tensor:
    """The mean over examples of the last decoder layer's hidden state at the last position, (H,) float32.

    Args:
        lab: the Workbench whose model runs.
        examples: a Task, a list of ``Example``, or a list of dicts with ``input_ids`` (see above).
        layer: module path of the layer to hook (default ``last_decoder_layer(lab.model)``).
        use: what the lab applies during the forward (default None: the base model).
    """
    path = layer or last_decoder_layer(lab.model)
    seen: list[torch.Tensor] = []

    def keep(_path, _module, _args, out):
        h = out[0] if isinstance(out, tuple | list) else out  # (1, T, H)
        seen.append(h[0, -1].detach().float().cpu())  # (H,): the last position

    ids = encode_examples(lab, examples)
    with lab.session(use, train=False), hooks(lab.model, {path: keep}):
        for one in ids:
            lab.model(input_ids=torch.tensor([one], device=lab.device))
    if len(seen) != len(ids):
        raise WorkbenchError(f"the hook on {path!r} ran {len(seen)} times for {len(ids)} examples; hook a "
                             "module that runs once per forward (a decoder layer)")
    return torch.stack(seen).mean(0)  # (H,)
