"""The metrics and the evaluation loop as they were before batching.py (commit fdba2de), kept verbatim
for ``bench/evaluate.py``'s before/after comparison in one process.

Fixed batches of ``batch_size`` prompts sorted by length, left padding over the whole prompt, full
logits for the loss, ``model.generate`` for exact match, no base cache, a bar per metric call.
"""
# ruff: noqa

import inspect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import GenerationConfig

from workbench.errors import WorkbenchError
from workbench.tasks.base import Example, Task
from workbench.tasks.encoding import (
    IGNORE_INDEX,
    collate,
    encode_for_training,
    end_of_turn_id,
    left_pad,
    pad_id,
    prompt_ids,
)




@contextmanager
def _inference(model):
    """``torch.no_grad`` and eval mode (no dropout), restoring the training flag afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _batches(order: Sequence[int], batch_size: int, desc: str) -> Iterator[list[int]]:
    if batch_size < 1:
        raise WorkbenchError(f"batch_size must be at least 1; got {batch_size}")
    starts = range(0, len(order), batch_size)
    for start in tqdm(starts, desc=desc, leave=False, unit="batch"):
        yield list(order[start : start + batch_size])


def _check_examples(task: Task, examples: Sequence[Example], metric: str) -> list[Example]:
    examples = list(examples)
    if not examples:
        raise WorkbenchError(f"metric {metric!r} on task {task.name!r} got no examples")
    return examples


def first_token_ids(tokenizer, choices: Sequence[str]) -> list[int]:
    """The first token id of each choice (tokenized alone, as the answer is in training).

    Raises:
        WorkbenchError: a choice is empty, or two choices start with the same token.
    """
    ids = []
    for choice in choices:
        toks = tokenizer(choice, add_special_tokens=False)["input_ids"]
        if not toks:
            raise WorkbenchError(f"choice {choice!r} encodes to no tokens; use non-empty choices")
        ids.append(int(toks[0]))
    seen: dict[int, str] = {}
    for choice, tid in zip(choices, ids, strict=True):
        if tid in seen:
            raise WorkbenchError(
                f"choices {seen[tid]!r} and {choice!r} start with the same token "
                f"{tokenizer.convert_ids_to_tokens(tid)!r} for this tokenizer, so first-token "
                "accuracy cannot tell them apart; reword the choices (e.g. letter them A, B, ...)"
            )
        seen[tid] = choice
    return ids


def _forward_kwargs(model) -> dict:
    """Ask for last-position logits only where the model's forward says it supports it."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return {}
    return {"logits_to_keep": 1} if "logits_to_keep" in params else {}


def accuracy(model, tokenizer, task: Task, examples: Sequence[Example], *, batch_size=16) -> float:
    """Share of examples whose target has the highest next-token log-probability among choices.

    Each choice is scored by the log-probability of its first token right after ``chat_prompt``
    (one forward pass per example, left-padded batches, logits at the last position).

    Raises:
        WorkbenchError: an example has no choices, or two choices share a first token.
    """
    examples = _check_examples(task, examples, "accuracy")
    choice_ids: dict[tuple[str, ...], list[int]] = {}
    for example in examples:
        if example.choices is None:
            raise WorkbenchError(
                f"task {task.name!r}: the accuracy metric needs choices, but an example has none "
                f"(prompt {example.prompt[:60]!r}); use exact_match or loss for it"
            )
        if example.choices not in choice_ids:
            choice_ids[example.choices] = first_token_ids(tokenizer, example.choices)
    prompts = [prompt_ids(tokenizer, task, e) for e in examples]
    order = sorted(range(len(examples)), key=lambda i: len(prompts[i]))
    pid, device, extra = pad_id(tokenizer), _device(model), _forward_kwargs(model)
    correct = 0
    with _inference(model):
        for batch in _batches(order, batch_size, f"{task.name}: accuracy"):
            inputs = left_pad([prompts[i] for i in batch], pid)
            inputs = {k: v.to(device) for k, v in inputs.items()}
            logits = model(**inputs, **extra).logits[:, -1, :].float()  # (B, V)
            for row, i in enumerate(batch):
                ids = choice_ids[examples[i].choices]
                pred = examples[i].choices[int(logits[row, ids].argmax())]
                correct += pred == examples[i].target
    return correct / len(examples)


def normalize_answer(text: str) -> str:
    """Strip and collapse whitespace (numbers are otherwise compared as written)."""
    return " ".join(text.split())


def exact_match(model, tokenizer, task: Task, examples: Sequence[Example], *, batch_size=16) -> float:
    """Share of examples whose greedy answer equals the target after whitespace normalization.

    Generates up to ``task.max_new_tokens`` tokens (``do_sample=False``, left padding) and decodes
    only the new tokens, skipping special tokens.
    """
    examples = _check_examples(task, examples, "exact_match")
    prompts = [prompt_ids(tokenizer, task, e) for e in examples]
    order = sorted(range(len(examples)), key=lambda i: len(prompts[i]))
    pid, eot, device = pad_id(tokenizer), end_of_turn_id(tokenizer), _device(model)
    config = GenerationConfig(
        max_new_tokens=task.max_new_tokens, do_sample=False, pad_token_id=pid, eos_token_id=eot
    )
    correct = 0
    with _inference(model):
        for batch in _batches(order, batch_size, f"{task.name}: exact_match"):
            inputs = left_pad([prompts[i] for i in batch], pid)
            width = inputs["input_ids"].shape[1]
            out = model.generate(
                input_ids=inputs["input_ids"].to(device),
                attention_mask=inputs["attention_mask"].to(device),
                generation_config=config,
            )  # (B, T + new)
            for row, i in enumerate(batch):
                text = tokenizer.decode(out[row, width:], skip_special_tokens=True)
                correct += normalize_answer(text) == normalize_answer(examples[i].target)
    return correct / len(examples)


def loss(model, tokenizer, task: Task, examples: Sequence[Example], *, batch_size=16) -> float:
    """Mean negative log-likelihood per target token (target + end-of-turn, as in training).

    The mean is over all target tokens of all examples (token-weighted), encoded with
    ``encode_for_training`` at ``task.max_length``.
    """
    examples = _check_examples(task, examples, "loss")
    features = encode_for_training(tokenizer, task, examples)
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    pid, device = pad_id(tokenizer), _device(model)
    total, count = 0.0, 0
    with _inference(model):
        for batch in _batches(order, batch_size, f"{task.name}: loss"):
            inputs = collate([features[i] for i in batch], pid)
            labels = inputs.pop("labels").to(device)[:, 1:]  # (B, T-1)
            inputs = {k: v.to(device) for k, v in inputs.items()}
            logits = model(**inputs).logits[:, :-1, :]  # (B, T-1, V)
            keep = labels != IGNORE_INDEX  # (B, T-1)
            nll = F.cross_entropy(logits[keep].float(), labels[keep], reduction="sum")
            total += float(nll)
            count += int(keep.sum())
    return total / count


FUNCTIONS = {"accuracy": accuracy, "exact_match": exact_match, "loss": loss}


@contextmanager
def swapped():
    """Inside the block, ``METRICS`` scores with these old functions (the base cache off is the caller's
    part: ``evaluate(..., cache=False)``)."""
    from workbench.tasks import METRICS

    saved = {name: METRICS.get(name).fn for name in FUNCTIONS}
    try:
        for name, fn in FUNCTIONS.items():
            object.__setattr__(METRICS.get(name), "fn", fn)  # Metric is a frozen dataclass
        yield
    finally:
        for name, fn in saved.items():
            object.__setattr__(METRICS.get(name), "fn", fn)
