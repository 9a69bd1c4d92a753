"""Batched forward passes for the metrics: a shared prompt prefix computed once, rows grouped by length
with little padding, left padding after the prefix, and greedy decoding with a KV cache.

Every prompt of a task starts with the same chat header (system prompt, ``<|im_start|>user``, the
task's question): that prefix is run once (batch 1) and its keys and values are repeated over each
batch, so only each row's own tokens are computed. Rows are sorted by length and a batch closes before
its padding would exceed ``PAD_SHARE`` of its tokens (at most ``batch_size`` rows), so little compute
goes to padding. A batch is laid out as ``[prefix | left padding | row]`` with an attention mask that
hides the padding and position ids that continue the prefix, so each row sees exactly the positions
it has alone: a padded row gives the logits of the same row unpadded (to float rounding, tested to
1e-5 on tiny Llama and GPT-2 in float32), and greedy answers are the same.

    plan = plan_batches(seqs, batch_size=16, keep=1)      # [(prefix ids, [row indices, ...]), ...]
    for prefix, rows in plan:
        cache = prefix_cache(model, prefix)
        out = forward_rows(model, prefix, cache, [seqs[i][len(prefix):] for i in rows], pad)

A model whose ``forward`` takes no KV cache (``cache``/``past_key_values``) runs without the shared
prefix (each row whole); ``configured(prefix=False)`` turns it off too (``evaluate`` does so for
routers, which may condition on the whole prompt).

Reference: Kwon et al., "Efficient Memory Management for Large Language Model Serving with
PagedAttention", SOSP 2023 (prefix sharing of the KV cache); Zheng et al., "SGLang: Efficient Execution
of Structured Language Model Programs", 2024 (RadixAttention: reuse of a common prompt prefix).
Deviations: one prefix per group of rows sharing a first token (no radix tree); the prefix cache lives
for one metric call only.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch

from workbench.tasks.encoding import left_pad

PAD_SHARE = 0.2
"""A batch closes before its padding would exceed this share of its tokens."""
MIN_SAVED = 64
"""A shared prefix gets its own forward pass when it saves at least this many tokens ((rows - 1) × length)."""


@dataclass(frozen=True)
class Settings:
    """What the metrics may do: share a prompt prefix, show their own per-batch bars."""

    prefix: bool = True
    progress: bool = True


DEFAULT = Settings()
_SETTINGS: ContextVar[Settings | None] = ContextVar("batching_settings", default=None)


def settings() -> Settings:
    """The settings in force (``configured`` changes them for a block)."""
    return _SETTINGS.get() or DEFAULT


@contextmanager
def configured(**changes) -> Iterator[Settings]:
    """``with configured(prefix=False, progress=False): ...`` for the metrics called inside."""
    token = _SETTINGS.set(Settings(**{**settings().__dict__, **changes}))
    try:
        yield settings()
    finally:
        _SETTINGS.reset(token)


def accepts(model, name: str) -> bool:
    """Whether ``model.forward`` names the keyword ``name`` (``**kwargs`` alone does not count)."""
    return name in _forward_params(type(model))


@functools.lru_cache(maxsize=64)
def _forward_params(cls: type) -> frozenset[str]:
    try:
        return frozenset(inspect.signature(cls.forward).parameters)
    except (TypeError, ValueError, AttributeError):
        return frozenset()


def common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest prefix all ``seqs`` share."""
    first, n = seqs[0], min(len(s) for s in seqs)
    for k in range(n):
        t = first[k]
        if any(s[k] != t for s in seqs):
            return k
    return n


def plan_batches(seqs: Sequence[Sequence[int]], batch_size: int, *, keep: Sequence[int] | int = 1,
                 share: bool = True) -> list[tuple[list[int], list[int]]]:
    """Rows grouped by a shared prefix, then cut into batches of similar length.

    Args:
        seqs: token ids per row.
        batch_size: most rows per batch.
        keep: per row (or for all), how many of its last tokens must be computed in the batch (not in
            the prefix): 1 for next-token scoring, ``len(target) + 1`` for a target's loss.
        share: look for a shared prefix at all.

    Returns:
        ``(prefix ids, row indices)`` per batch; batches of one group share the same prefix list.
    """
    keep = [keep] * len(seqs) if isinstance(keep, int) else list(keep)
    groups: dict[object, list[int]] = {}
    for i, s in enumerate(seqs):  # a left-truncated prompt does not start like the others
        groups.setdefault(s[0] if share and s else None, []).append(i)
    out = []
    for rows in groups.values():
        prefix: list[int] = []
        if share and len(rows) > 1:
            p = min(common_prefix([seqs[i] for i in rows]), *(len(seqs[i]) - keep[i] for i in rows))
            prefix = list(seqs[rows[0]][:p]) if p > 0 and (len(rows) - 1) * p >= MIN_SAVED else []
        order = sorted(rows, key=lambda i: len(seqs[i]))
        batch: list[int] = []
        for i in order:
            width = len(seqs[i]) - len(prefix)
            tokens = sum(len(seqs[j]) - len(prefix) for j in batch) + width
            if batch and (len(batch) == batch_size or (len(batch) + 1) * width - tokens > PAD_SHARE * tokens):
                out.append((prefix, batch))
                batch = []
            batch.append(i)
        out.append((prefix, batch))
    return out


def prefix_cache(model, prefix: Sequence[int], device: torch.device):
    """The KV cache of ``prefix`` (batch 1), or None for an empty prefix."""
    if not prefix:
        return None
    ids = torch.tensor([list(prefix)], dtype=torch.long, device=device)  # (1, P)
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True,
                **_logits_kwargs(model, 1))
    return cache_of(out)


def layout(prefix_len: int, rows: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """``[prefix | left padding | row]``: ids and positions of the rows' part, the mask over all of it.

    Returns:
        ``input_ids`` (B, W), ``position_ids`` (B, W) counting on from ``prefix_len`` at each row's first
        token, ``attention_mask`` (B, P + W) with zeros over the padding only.
    """
    padded = left_pad(rows, pad_id)  # (B, W) each: the rows alone
    mask = padded["attention_mask"]
    full = torch.cat([torch.ones((len(rows), prefix_len), dtype=torch.long), mask], dim=1)  # (B, P+W)
    return {"input_ids": padded["input_ids"], "attention_mask": full,
            "position_ids": prefix_len + padded["position_ids"]}


def expand(cache, n: int):
    """A copy of a batch-1 prefix cache repeated over ``n`` rows (the original stays as it is)."""
    if cache is None:
        return None
    out = copy.deepcopy(cache)
    out.batch_repeat_interleave(n)
    return out


def forward_rows(model, prefix: Sequence[int], cache, rows: Sequence[Sequence[int]], pad_id: int,
                 device: torch.device, *, keep: int | None = None, use_cache: bool = False):
    """One forward of ``rows`` (each without the prefix) after the prefix's cache.

    Args:
        keep: logits of the last ``keep`` positions only (None: all).
        use_cache: return the cache (for decoding on).

    Returns:
        ``(outputs, inputs)``: the model's output and the ``layout`` tensors on ``device``.
    """
    inputs = {k: v.to(device) for k, v in layout(len(prefix), rows, pad_id).items()}
    kwargs = dict(inputs)
    if not accepts(model, "position_ids"):
        kwargs.pop("position_ids")
    if cache is not None:
        kwargs[cache_keyword(model)] = expand(cache, len(rows))
    if use_cache or cache is not None:
        kwargs["use_cache"] = True
    return model(**kwargs, **_logits_kwargs(model, keep)), inputs


def greedy(model, prefix: Sequence[int], cache, rows: Sequence[Sequence[int]], *, pad_id: int, eos_id: int,
           max_new_tokens: int, device: torch.device) -> torch.Tensor:
    """Greedy continuation of each row with a KV cache, as ``generate(do_sample=False)`` does it.

    Rows that produced ``eos_id`` continue with ``pad_id``; decoding stops when every row has ended or
    after ``max_new_tokens``.

    Returns:
        New token ids (B, N) with N <= ``max_new_tokens``.
    """
    out, inputs = forward_rows(model, prefix, cache, rows, pad_id, device, keep=1, use_cache=True)
    mask, positions = inputs["attention_mask"], inputs["position_ids"][:, -1:]  # (B, P+W), (B, 1)
    past, done, new = cache_of(out), torch.zeros(len(rows), dtype=torch.bool, device=device), []
    with_positions = accepts(model, "position_ids")
    for step in range(max_new_tokens):
        token = out.logits[:, -1, :].float().argmax(-1)  # (B,)
        token = torch.where(done, torch.full_like(token, pad_id), token)
        new.append(token)
        done = done | (token == eos_id)
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)  # (B, P+W+step+1)
        positions = positions + 1
        extra = {"position_ids": positions} if with_positions else {}
        out = model(input_ids=token[:, None], attention_mask=mask, use_cache=True,
                    **{cache_keyword(model): past}, **extra, **_logits_kwargs(model, 1))
        past = cache_of(out)
    return torch.stack(new, dim=1) if new else torch.zeros((len(rows), 0), dtype=torch.long)  # (B, N)


def supports_cache(model) -> bool:
    """Whether the model takes a KV cache and ``use_cache`` (shared prefix, own decoding)."""
    return cache_keyword(model) is not None and accepts(model, "use_cache")


def cache_keyword(model) -> str | None:
    """The forward's name for the KV cache: ``cache`` (transformers >= 5.24) or ``past_key_values``."""
    return next((k for k in ("cache", "past_key_values") if accepts(model, k)), None)


def cache_of(outputs):
    """The KV cache a forward returned (``outputs.cache``, or ``past_key_values`` before 5.24)."""
    found = getattr(outputs, "cache", None)
    return found if found is not None else getattr(outputs, "past_key_values", None)


def _logits_kwargs(model, keep: int | None) -> dict:
    """``logits_to_keep=keep`` where the model's forward supports it."""
    return {"logits_to_keep": int(keep)} if keep and accepts(model, "logits_to_keep") else {}
