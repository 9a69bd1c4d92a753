"""The base model's scores, kept per task so that ``evaluate`` runs the base only once.

The base model (no adapter in use) answers the same on the same examples as long as its weights do not
change, so its score is kept under a key made of everything the answer depends on:

- the base weights as they are now: ``zoo.fingerprint`` (names, shapes, dtypes, sampled values) plus a
  float64 sum and sum of squares of every base tensor (a change between the fingerprint's samples, a
  ``merge_into_base``, an edit in place all change it), the adapters merged into the base, the
  model's config, its device and dtype;
- the tokenizer (class, vocabulary size, chat template, special ids);
- the task: name, metric, system prompt, generation budget, token budget and every example used
  (prompt, target, choices), hence also the ``limit``; and the batch size.

Any difference is another key, so nothing stale is ever read: a changed base simply misses. The cache
holds at most ``SIZE`` scores (least recently used go first); ``clear()`` empties it.

Reference: memoization keyed by content (a cache key is a hash of every input), as in the
lm-evaluation-harness request cache (Gao et al., 2021). Deviation: scores, not per-request outputs.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict

import torch

from workbench.adapters import LoraLayer
from workbench.zoo import fingerprint
from workbench.zoo.fingerprint import base_state

SIZE = 4096
_SCORES: OrderedDict[str, float] = OrderedDict()


def clear() -> None:
    """Forget every cached base score."""
    _SCORES.clear()


def get(key: str) -> float | None:
    """The cached score under ``key``, or None."""
    if key in _SCORES:
        _SCORES.move_to_end(key)
        return _SCORES[key]
    return None


def put(key: str, value: float) -> None:
    """Keep ``value`` under ``key`` (dropping the least recently used beyond ``SIZE``)."""
    _SCORES[key] = float(value)
    _SCORES.move_to_end(key)
    while len(_SCORES) > SIZE:
        _SCORES.popitem(last=False)


def model_key(model, tokenizer) -> str:
    """A hash of the base weights as they are now, the model's config and the tokenizer."""
    digest = hashlib.sha256(fingerprint(model).encode())
    with torch.no_grad():
        for name, tensor in base_state(model):
            t = tensor.detach()
            if t.is_floating_point():
                t64 = t.double()
                digest.update(f"{name}:{float(t64.sum())!r}:{float((t64 * t64).sum())!r};".encode())
            else:
                digest.update(f"{name}:{int(t.long().sum())};".encode())
    merged = sorted((n, layer.path, w) for layer in model.modules() if isinstance(layer, LoraLayer)
                    for n, w in layer.merged.items())
    config = getattr(model, "config", None)
    param = next(model.parameters(), None)
    digest.update(repr(merged).encode())
    digest.update((config.to_json_string() if hasattr(config, "to_json_string") else repr(config)).encode())
    digest.update(f"{None if param is None else (param.device, param.dtype)}".encode())
    digest.update(_tokenizer_key(tokenizer).encode())
    return digest.hexdigest()


def task_key(model_part: str, task, examples, batch_size: int) -> str:
    """The key of the base's score on ``examples`` of ``task`` (``model_part`` from ``model_key``)."""
    about = [task.name, task.metric, task.system_prompt, task.max_new_tokens, task.max_length, batch_size,
             [[e.prompt, e.target, e.choices] for e in examples]]
    return hashlib.sha256((model_part + json.dumps(about)).encode()).hexdigest()


def _tokenizer_key(tokenizer) -> str:
    vocab = len(tokenizer) if hasattr(tokenizer, "__len__") else None
    return repr((type(tokenizer).__name__, getattr(tokenizer, "name_or_path", None), vocab,
                 getattr(tokenizer, "chat_template", None), getattr(tokenizer, "eos_token_id", None),
                 getattr(tokenizer, "pad_token_id", None)))
