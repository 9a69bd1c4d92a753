"""Metrics that score a causal LM on task examples: choice accuracy, exact match and target loss.

Every metric has the signature ``fn(model, tokenizer, task, examples, *, batch_size=16) -> float``.
The model is any Hugging Face causal LM, already set up by the caller (adapters applied). Metrics
run under ``torch.no_grad()`` in eval mode (the model's training flag is restored afterwards) and batch
the examples with ``workbench.tasks.batching``: the prompts' shared prefix (chat header, question) is
computed once, rows of similar length go together, left padding after the prefix with positions that
ignore it; a ``tqdm`` bar per metric call unless ``batching.configured(progress=False)``. Batched scores
equal the per-example ones (predictions identical, losses to float rounding; tests/tasks/test_batching.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import GenerationConfig

from workbench.errors import WorkbenchError
from workbench.tasks import batching
from workbench.tasks.base import Example, Task
from workbench.tasks.encoding import (
    IGNORE_INDEX,
    encode_for_training,
    end_of_turn_id,
    left_pad,
    pad_id,
    prompt_ids,
)
from workbench.tasks.metric import BATCH_SIZE, METRICS, Metric


def _register(name: str, higher_is_better: bool, *, reference: str, flags: tuple[str, ...] = ()):
    def add(fn):
        METRICS.register(name, source=fn, reference=reference, params=[BATCH_SIZE], flags=flags)(
            Metric(name, higher_is_better, fn))
        return fn

    return add


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


def _batches(plan: Sequence[tuple[list[int], list[int]]], desc: str) -> Iterator[tuple[list[int], list[int]]]:
    """The planned ``(prefix, rows)`` batches, with a bar unless ``batching.configured`` hides it."""
    return iter(tqdm(plan, desc=desc, leave=False, unit="batch", disable=not batching.settings().progress))


def _check_batch_size(batch_size) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise WorkbenchError(f"batch_size must be at least 1; got {batch_size}")


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


def _share(model) -> bool:
    """Share a prompt prefix's KV cache when allowed (``batching.configured``) and the model takes a cache."""
    return batching.settings().prefix and batching.supports_cache(model)


def _prefix(model, prefix: list[int], device, caches: dict):
    """The prefix's KV cache, computed once per metric call (None for no prefix)."""
    key = tuple(prefix)
    if key not in caches:
        caches[key] = batching.prefix_cache(model, prefix, device)
    return caches[key]


def choice_predictions(model, tokenizer, task: Task, examples: Sequence[Example], *,
                       batch_size=16, metric: str = "accuracy") -> list[str]:
    """The predicted choice of each example: the choice whose first token is the most probable.

    Each choice is scored by the log-probability of its first token right after ``chat_prompt``
    (one forward pass per example: shared prefix cached, left-padded batches, last-position logits).

    Raises:
        WorkbenchError: an example has no choices, or two choices share a first token.
    """
    examples = _check_examples(task, examples, metric)
    choice_ids: dict[tuple[str, ...], list[int]] = {}
    for example in examples:
        if example.choices is None:
            raise WorkbenchError(
                f"task {task.name!r}: the {metric} metric needs choices, but an example has none "
                f"(prompt {example.prompt[:60]!r}); use exact_match or loss for it"
            )
        if example.choices not in choice_ids:
            choice_ids[example.choices] = first_token_ids(tokenizer, example.choices)
    _check_batch_size(batch_size)
    prompts = [prompt_ids(tokenizer, task, e) for e in examples]
    pid, device = pad_id(tokenizer), _device(model)
    plan = batching.plan_batches(prompts, batch_size, keep=1, share=_share(model))
    preds: list[str | None] = [None] * len(examples)
    caches: dict = {}
    with _inference(model):
        for prefix, batch in _batches(plan, f"{task.name}: choices"):
            cache = _prefix(model, prefix, device, caches)
            out, _ = batching.forward_rows(model, prefix, cache, [prompts[i][len(prefix):] for i in batch],
                                           pid, device, keep=1)
            logits = out.logits[:, -1, :].float()  # (B, V)
            for row, i in enumerate(batch):
                ids = choice_ids[examples[i].choices]
                preds[i] = examples[i].choices[int(logits[row, ids].argmax())]
    return preds


@_register("accuracy", higher_is_better=True, flags=("needs_choices",),
           reference="Gao et al., A framework for few-shot language model evaluation "
                     "(lm-evaluation-harness), 2021: multiple choice scored by the choices' log-likelihood "
                     "(here: of the first token)")
def accuracy(model, tokenizer, task: Task, examples: Sequence[Example], *, batch_size=16) -> float:
    """Share of examples whose target has the highest next-token log-probability among choices.

    Predictions as ``choice_predictions`` (the first token of each choice, one forward per example).

    Raises:
        WorkbenchError: an example has no choices, or two choices share a first token.
    """
    examples = _check_examples(task, examples, "accuracy")
    preds = choice_predictions(model, tokenizer, task, examples, batch_size=batch_size)
    return sum(p == e.target for p, e in zip(preds, examples, strict=True)) / len(examples)


def balanced_accuracy_of(targets: Sequence[str], predictions: Sequence[str]) -> float:
    """The mean over classes of each class's recall: ``(1/C) Σ_c #(pred = c ∧ target = c) / #(target = c)``.

    Classes are the targets present (a class never asked for does not count); on a class-balanced
    set it equals accuracy, on a skewed set it is what a majority-class guess cannot inflate.
    """
    if len(targets) != len(predictions) or not targets:
        raise WorkbenchError(f"balanced accuracy needs as many predictions as targets (≥ 1); got "
                             f"{len(predictions)} predictions for {len(targets)} targets")
    hits: dict[str, list[int]] = {}
    for t, p in zip(targets, predictions, strict=True):
        hits.setdefault(t, []).append(int(p == t))
    return sum(sum(h) / len(h) for h in hits.values()) / len(hits)


@_register("balanced_accuracy", higher_is_better=True, flags=("needs_choices",),
           reference="Brodersen et al., The balanced accuracy and its posterior distribution, ICPR 2010 "
                     "(the mean per-class recall); Menta (Zhang et al., arXiv 2512.02716) reports it")
def balanced_accuracy(model, tokenizer, task: Task, examples: Sequence[Example], *, batch_size=16) -> float:
    """Mean per-class recall of the first-token choice predictions (``balanced_accuracy_of``).

    Raises:
        WorkbenchError: an example has no choices, or two choices share a first token.
    """
    examples = _check_examples(task, examples, "balanced_accuracy")
    preds = choice_predictions(model, tokenizer, task, examples, batch_size=batch_size,
                               metric="balanced_accuracy")
    return balanced_accuracy_of([e.target for e in examples], preds)


def normalize_answer(text: str) -> str:
    """Strip and collapse whitespace (numbers are otherwise compared as written)."""
    return " ".join(text.split())


@_register("exact_match", higher_is_better=True, flags=("generates",),
           reference="Rajpurkar et al., SQuAD: 100,000+ Questions for Machine Comprehension of Text, EMNLP "
                     "2016 (exact match after answer normalization)")
def exact_match(model, tokenizer, task: Task, examples: Sequence[Example], *, batch_size=16) -> float:
    """Share of examples whose greedy answer equals the target after whitespace normalization.

    Generates up to ``task.max_new_tokens`` tokens greedily with a KV cache (``batching.greedy``, as
    ``generate(do_sample=False)``; ``model.generate`` for a model that takes no cache) and decodes only
    the new tokens, skipping special tokens.
    """
    examples = _check_examples(task, examples, "exact_match")
    _check_batch_size(batch_size)
    prompts = [prompt_ids(tokenizer, task, e) for e in examples]
    pid, eot, device = pad_id(tokenizer), end_of_turn_id(tokenizer), _device(model)
    if not batching.supports_cache(model):
        return _exact_match_generate(model, tokenizer, task, examples, prompts, batch_size)
    plan = batching.plan_batches(prompts, batch_size, keep=1, share=_share(model))
    correct, caches = 0, {}
    with _inference(model):
        for prefix, batch in _batches(plan, f"{task.name}: exact_match"):
            new = batching.greedy(model, prefix, _prefix(model, prefix, device, caches),
                                  [prompts[i][len(prefix):] for i in batch], pad_id=pid, eos_id=eot,
                                  max_new_tokens=task.max_new_tokens, device=device)  # (B, N)
            for row, i in enumerate(batch):
                text = tokenizer.decode(new[row], skip_special_tokens=True)
                correct += normalize_answer(text) == normalize_answer(examples[i].target)
    return correct / len(examples)


def _exact_match_generate(model, tokenizer, task: Task, examples: list[Example], prompts: list[list[int]],
                          batch_size: int) -> float:
    """``exact_match`` through ``model.generate`` for a model whose forward takes no KV cache."""
    order = sorted(range(len(examples)), key=lambda i: len(prompts[i]))
    pid, eot, device = pad_id(tokenizer), end_of_turn_id(tokenizer), _device(model)
    config = GenerationConfig(
        max_new_tokens=task.max_new_tokens, do_sample=False, pad_token_id=pid, eos_token_id=eot
    )
    plan = [([], order[s : s + batch_size]) for s in range(0, len(order), batch_size)]
    correct = 0
    with _inference(model):
        for _, batch in _batches(plan, f"{task.name}: exact_match"):
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


@_register("loss", higher_is_better=False,
           reference="Bengio et al., A Neural Probabilistic Language Model, JMLR 2003 (the negative "
                     "log-likelihood of the target tokens, the training objective)")
def loss(model, tokenizer, task: Task, examples: Sequence[Example], *, batch_size=16) -> float:
    """Mean negative log-likelihood per target token (target + end-of-turn, as in training).

    The mean is over all target tokens of all examples (token-weighted), encoded with
    ``encode_for_training`` at ``task.max_length``. Logits are computed at the target positions only.
    """
    examples = _check_examples(task, examples, "loss")
    _check_batch_size(batch_size)
    features = encode_for_training(tokenizer, task, examples)
    seqs = [f["input_ids"] for f in features]
    targets = [sum(label != IGNORE_INDEX for label in f["labels"]) for f in features]  # at each row's end
    pid, device = pad_id(tokenizer), _device(model)
    plan = batching.plan_batches(seqs, batch_size, keep=[n + 1 for n in targets], share=_share(model))
    total, count, caches = 0.0, 0, {}
    with _inference(model):
        for prefix, batch in _batches(plan, f"{task.name}: loss"):
            keep = max(targets[i] for i in batch) + 1
            out, _ = batching.forward_rows(model, prefix, _prefix(model, prefix, device, caches),
                                           [seqs[i][len(prefix):] for i in batch], pid, device, keep=keep)
            logits = out.logits[:, -keep:, :]  # (B, keep, V): position j predicts token j + 1
            picked = torch.cat([logits[row, keep - 1 - targets[i] : keep - 1] for row, i in enumerate(batch)])
            labels = torch.tensor([t for i in batch for t in seqs[i][len(seqs[i]) - targets[i]:]],
                                  dtype=torch.long, device=device)  # (N,)
            total += float(F.cross_entropy(picked.float(), labels, reduction="sum"))
            count += len(labels)
    return total / count
