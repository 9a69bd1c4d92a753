"""The base model's scores, kept per task so that ``evaluate`` runs the base only once.

The base model (no adapter in use) answers the same on the same examples as long as its weights do not
change, so its score is kept under a key made of everything the answer depends on:

- the base weights as they are now: ``zoo.fingerprint`` (names, shapes, dtypes, sampled values) plus
  each base tensor's storage address and version counter (every in-place change through torch bumps
  it: an optimizer step, ``copy_``, ``load_state_dict``, ``merge_into_base``; a replaced tensor has
  another address), the adapters merged into the base, the model's config, its device and dtype;
- the tokenizer (class, vocabulary size, chat template, special ids);
- the task: name, metric, system prompt, generation budget, token budget and every example used
  (prompt, target, choices), hence also the ``limit``; and the batch size.

Any difference is another key, so nothing stale is read: a changed base simply misses. The one change
it cannot see is an edit through ``tensor.data`` (which bypasses the version counter) confined to values
between the fingerprint's samples: call ``clear()`` (or ``evaluate(..., cache=False)``) after such
surgery. The key costs a few milliseconds (no pass over the weights). The cache holds at most ``SIZE``
scores (least recently used go first).

Reference: memoization keyed by content (a cache key is a hash of every input), as in the
lm-evaluation-harness request cache (Gao et al., 2021). Deviation: scores, not per-request outputs.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict

from workbench.adapters import LoraLayer
from workbench.zoo import fingerprint
from workbench.zoo.fingerprint import base_state

SIZE = 4096
_SCORES: OrderedDict[str, float] = OrderedDict()
_STATS = {"hits": 0, "misses": 0}


def clear() -> None:
    """Forget every cached base score."""
    _SCORES.clear()


def stats() -> dict[str, int]:
    """``{"hits", "misses", "size"}`` since the process started (hits and misses are never reset)."""
    return {**_STATS, "size": len(_SCORES)}


def get(key: str) -> float | None:
    """The cached score under ``key``, or None."""
    if key in _SCORES:
        _STATS["hits"] += 1
        _SCORES.move_to_end(key)
        return _SCORES[key]
    _STATS["misses"] += 1
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
    for name, tensor in base_state(model):  # state_dict tensors share their parameter's version counter
        digest.update(f"{name}:{tensor.data_ptr()}:{tensor._version};".encode())
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
