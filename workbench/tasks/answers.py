"""greedy_answers: what a model answers to a task's prompts, decoded, with ``model.generate``."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from workbench.tasks.base import Example, Task
from workbench.tasks.encoding import end_of_turn_id, left_pad, pad_id, prompt_ids


@torch.no_grad()
def greedy_answers(model, tokenizer, task: Task, examples: Sequence[Example], *,
                   batch_size: int = 16) -> list[str]:
    """The greedy answers of ``model`` as it is applied now, one string per example, as decoded.

    Prompts in the task's format, left-padded in batches of ``batch_size``; at most
    ``task.max_new_tokens`` new tokens, stopping at the end of turn; special tokens skipped. The model is
    put in eval mode for the call and back as it was after. Callers normalise the text their own way.
    """
    pid, eot = pad_id(tokenizer), end_of_turn_id(tokenizer)
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    out: list[str] = []
    was = model.training
    model.eval()
    try:
        for s in range(0, len(examples), batch_size):
            batch = left_pad([prompt_ids(tokenizer, task, e) for e in examples[s:s + batch_size]], pid)
            width = batch["input_ids"].shape[1]
            new = model.generate(input_ids=batch["input_ids"].to(device),
                                 attention_mask=batch["attention_mask"].to(device),
                                 max_new_tokens=task.max_new_tokens, do_sample=False, pad_token_id=pid,
                                 eos_token_id=eot)[:, width:]  # (B, new)
            out += [tokenizer.decode(row, skip_special_tokens=True) for row in new]
    finally:
        model.train(was)
    return out
