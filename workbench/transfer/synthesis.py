"""Synthesis: a model writes new task inputs from a few seed examples (Trans-LoRA's data generator).

Each sample is one few-shot request in the task's own prompt format (``chat_prompt``: the tokenizer's
chat template, or a completion template for a base model such as Gemma 3): the user message lists
``shots`` seed inputs drawn by the seed and asks for one more; the model's sampled answer is the new
input. Answers are cleaned (special tokens dropped, whitespace stripped, cut at the first line break
when every seed is one line), and empty ones, seeds and repeats (compared after casefolding and
collapsing whitespace) are dropped. Rounds of samples run until ``n`` inputs are found or ``rounds``
are spent, so a model that repeats itself gives fewer than ``n`` (the caller sees how many).

Determinism: the few-shot draws use ``random.Random(seed)`` and the sampling a torch generator state
forked from ``seed`` (the caller's global random state is left untouched): one seed, one set of inputs
on one machine.

Reference: Wang et al., "Trans-LoRA: towards data-free Transferable Parameter Efficient Finetuning",
NeurIPS 2024 (arXiv 2405.17258), the synthetic data generator prompted with a few seed examples.
Deviations: the paper prompts an instruction-tuned LLM with task-specific instructions and a
larger batch of demonstrations; here one generic few-shot instruction serves every task, sampling is
plain temperature/top-p, and deduplication is exact (after normalisation), not by similarity.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

import torch

from workbench.errors import WorkbenchError
from workbench.tasks import Example, Task
from workbench.tasks.encoding import end_of_turn_id, left_pad, pad_id, prompt_ids

INSTRUCTION = ("Here are examples of inputs for a task{about}.\n\n{shots}\n\n"
               "Write one new input of the same kind.")
"""The few-shot request: ``about`` is ``: <task description>`` (or empty), ``shots`` the numbered seeds."""


def normalized(text: str) -> str:
    """The form used to detect duplicates: casefolded, whitespace collapsed."""
    return " ".join(text.split()).casefold()


def few_shot_prompt(task: Task, shots: Sequence[str]) -> str:
    """The user message asking for one new input after the numbered seed inputs ``shots``."""
    listed = "\n".join(f"Example {i + 1}: {s}" for i, s in enumerate(shots))
    about = f": {task.description}" if task.description else ""
    return INSTRUCTION.format(about=about, shots=listed)


def clean(text: str, *, one_line: bool) -> str:
    """A sampled answer as an input: stripped, cut at the first line break when ``one_line``, and
    without a leading ``Example N:`` the model may copy from the prompt."""
    text = text.strip()
    if one_line:
        text = text.split("\n", 1)[0].strip()
    if text.lower().startswith("example"):
        head, sep, rest = text.partition(":")
        if sep and head[len("example"):].strip().isdigit():
            text = rest.strip()
    return text


def synthesize(lab, task: Task, seeds: Sequence[Example], n: int, *, seed: int = 0, shots: int = 3,
               temperature: float = 1.0, top_p: float = 0.95, max_new_tokens: int | None = None,
               rounds: int = 4, batch_size: int = 16) -> list[Example]:
    """``n`` new task inputs (at most) sampled by ``lab``'s base model from few-shot prompts of ``seeds``.

    The base model only: whatever ``lab`` uses is switched off inside and put back after.

    Args:
        lab: the synthesizer (a ``Workbench`` with a tokenizer).
        task: gives the prompt format (system prompt, chat/completion template) and the description.
        seeds: real examples whose prompts are shown (their targets are not used).
        n: how many distinct new inputs to return.
        seed: seeds the few-shot draws and the sampling.
        shots: seed inputs per prompt (fewer when there are fewer seeds).
        temperature, top_p: sampling.
        max_new_tokens: per sample; default 1.5 × the longest seed input in tokens, plus 4.
        rounds: batches of ``n`` samples tried at most before returning fewer than ``n``.

    Returns:
        Examples with the new input as ``prompt`` and an empty ``target`` (labelling fills it).

    Raises:
        WorkbenchError: no tokenizer, no seed with a non-empty prompt, or bad counts.
    """
    if lab.tokenizer is None:
        raise WorkbenchError("synthesis needs a tokenizer; build the lab with Workbench(model, tokenizer)")
    for key, value in {"n": n, "shots": shots, "rounds": rounds, "batch_size": batch_size}.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise WorkbenchError(f"synthesize: {key}={value!r} must be a whole number of at least 1")
    if not temperature > 0 or not 0 < top_p <= 1:
        raise WorkbenchError(f"synthesize: temperature={temperature} must be > 0 and top_p={top_p} in (0, 1]")
    pool = [e.prompt for e in seeds if e.prompt.strip()]
    if not pool:
        raise WorkbenchError(f"task {task.name!r}: synthesis needs seed examples with non-empty prompts; "
                             "pass a few real examples (e.g. task.train[:5])")
    tok = lab.tokenizer
    one_line = all("\n" not in p.strip() for p in pool)
    if max_new_tokens is None:
        longest = max(len(tok(p, add_special_tokens=False)["input_ids"]) for p in pool)
        max_new_tokens = int(1.5 * longest) + 4
    asking = dataclasses.replace(task, metric="loss", train=[], eval=[])  # the prompt format only
    draws = random.Random(f"synthesis:{seed}")
    seen = {normalized(p) for p in pool}
    found: list[str] = []
    pid, eot = pad_id(tok), end_of_turn_id(tok)
    model, was = lab.model, lab.model.training
    with torch.random.fork_rng(devices=[]), lab.using(None), torch.no_grad():
        torch.manual_seed(seed)
        model.eval()
        try:
            for _ in range(rounds):
                for s in range(0, n, batch_size):
                    k = min(batch_size, n - s)
                    requests = [few_shot_prompt(task, draws.sample(pool, min(shots, len(pool))))
                                for _ in range(k)]
                    ids = [prompt_ids(tok, asking, Example(r, ""), max_length=10**6) for r in requests]
                    batch = left_pad(ids, pid)
                    out = model.generate(input_ids=batch["input_ids"].to(lab.device),
                                         attention_mask=batch["attention_mask"].to(lab.device),
                                         max_new_tokens=max_new_tokens, do_sample=True,
                                         temperature=temperature, top_p=top_p, top_k=0,
                                         pad_token_id=pid, eos_token_id=eot)
                    for row in out[:, batch["input_ids"].shape[1]:]:  # (new,)
                        text = clean(tok.decode(row, skip_special_tokens=True), one_line=one_line)
                        if text and normalized(text) not in seen:
                            seen.add(normalized(text))
                            found.append(text)
                if len(found) >= n:
                    break
        finally:
            model.train(was)
    return [Example(text, "") for text in found[:n]]
