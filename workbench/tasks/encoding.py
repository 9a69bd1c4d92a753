"""Chat prompts, training encodings and padding, shared by training and every metric.

The prompt is the tokenizer's chat template with a generation prompt, so it ends exactly where the
assistant's answer starts; the answer is the target followed by the end-of-turn token. Training
labels are -100 over the prompt, so only the answer is learned.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

from workbench.errors import WorkbenchError
from workbench.tasks.base import Example, Task

IGNORE_INDEX = -100
"""Label value that cross-entropy ignores (prompt and padding positions)."""


def chat_prompt(tokenizer, task: Task, example: Example) -> str:
    """The chat-formatted prompt of one example, ending where the answer starts.

    Uses the tokenizer's chat template with ``task.system_prompt`` as the system message and
    ``add_generation_prompt=True``. A tokenizer without a chat template gets a ChatML layout
    (``<|im_start|>role\\n...<|im_end|>``).

    Args:
        tokenizer: A Hugging Face tokenizer.
        task: The task (gives the system prompt).
        example: The example (gives the user message).

    Returns:
        The prompt text, special tokens written out as text.
    """
    messages = [
        {"role": "system", "content": task.system_prompt},
        {"role": "user", "content": example.prompt},
    ]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + "<|im_start|>assistant\n"


def end_of_turn_id(tokenizer) -> int:
    """The id that ends the assistant's turn: ``tokenizer.eos_token_id`` (SmolLM2: <|im_end|>)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise WorkbenchError(
            f"tokenizer {type(tokenizer).__name__} has no eos_token, which ends the assistant's "
            "turn; set tokenizer.eos_token (for ChatML models '<|im_end|>')"
        )
    return int(eos)


def pad_id(tokenizer) -> int:
    """The padding id: ``pad_token_id``, else the end-of-turn id."""
    pid = tokenizer.pad_token_id
    return int(pid) if pid is not None else end_of_turn_id(tokenizer)


def prompt_ids(tokenizer, task: Task, example: Example, max_length: int | None = None) -> list[int]:
    """Token ids of ``chat_prompt``, cut from the left to at most ``max_length`` tokens."""
    ids = tokenizer(chat_prompt(tokenizer, task, example), add_special_tokens=False)["input_ids"]
    limit = task.max_length if max_length is None else max_length
    return list(ids[-limit:])


def encode_for_training(
    tokenizer, task: Task, examples: Sequence[Example], max_length: int | None = None
) -> list[dict]:
    """Encode examples as prompt + target + end-of-turn, with the prompt masked out of the labels.

    Too long an example loses the start of its prompt (left truncation), never its target. Only a
    target that alone overflows ``max_length`` is cut at the right end, with a warning.

    Args:
        tokenizer: A Hugging Face tokenizer with a chat template (or see ``chat_prompt``).
        task: The task (system prompt and default ``max_length``).
        examples: Examples to encode.
        max_length: Token budget per example; None means ``task.max_length``.

    Returns:
        One dict per example: ``{"input_ids": list[int], "labels": list[int]}`` where labels are
        -100 over the prompt and equal to the input ids over the target and end-of-turn token.
    """
    limit = task.max_length if max_length is None else int(max_length)
    if limit < 2:
        raise WorkbenchError(f"max_length must be at least 2 tokens; got {limit}")
    eot = end_of_turn_id(tokenizer)
    features = []
    for example in examples:
        prompt = tokenizer(chat_prompt(tokenizer, task, example), add_special_tokens=False)
        prompt = list(prompt["input_ids"])
        answer = list(tokenizer(example.target, add_special_tokens=False)["input_ids"]) + [eot]
        if len(answer) > limit - 1:
            warnings.warn(
                f"task {task.name!r}: a target of {len(answer)} tokens does not fit "
                f"max_length={limit}; its end is cut. Raise max_length to keep it whole.",
                stacklevel=2,
            )
            answer = answer[: limit - 1]
        prompt = prompt[-(limit - len(answer)) :]
        features.append({"input_ids": prompt + answer, "labels": [IGNORE_INDEX] * len(prompt) + answer})
    return features


def collate(features: Sequence[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad encoded examples into a batch.

    Args:
        features: Dicts with ``input_ids`` and ``labels`` (as from ``encode_for_training``).
        pad_id: Id written into padded ``input_ids`` positions.

    Returns:
        ``input_ids`` (B, T), ``attention_mask`` (B, T) and ``labels`` (B, T, -100 at padding),
        all int64.
    """
    if not features:
        raise WorkbenchError("collate got no features; pass at least one encoded example")
    width = max(len(f["input_ids"]) for f in features)
    input_ids = torch.full((len(features), width), int(pad_id), dtype=torch.long)  # (B, T)
    attention = torch.zeros((len(features), width), dtype=torch.long)  # (B, T)
    labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)  # (B, T)
    for row, f in enumerate(features):
        n = len(f["input_ids"])
        if len(f["labels"]) != n:
            raise WorkbenchError(
                f"feature {row} has {n} input_ids but {len(f['labels'])} labels; they must match"
            )
        input_ids[row, :n] = torch.tensor(f["input_ids"], dtype=torch.long)
        attention[row, :n] = 1
        labels[row, :n] = torch.tensor(f["labels"], dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-pad prompts for next-token scoring or generation.

    Returns:
        ``input_ids`` (B, T), ``attention_mask`` (B, T) and ``position_ids`` (B, T) that count
        from 0 at each row's first real token, so padding does not shift positions.
    """
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), int(pad_id), dtype=torch.long)  # (B, T)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)  # (B, T)
    for row, s in enumerate(sequences):
        if s:
            input_ids[row, width - len(s) :] = torch.tensor(list(s), dtype=torch.long)
            attention[row, width - len(s) :] = 1
    positions = (attention.cumsum(-1) - 1).clamp(min=0)  # (B, T)
    return {"input_ids": input_ids, "attention_mask": attention, "position_ids": positions}
