"""ALoRA's head maps: each head's causal attention over the earlier tokens' LoRA codes -> tidy frames.

ALoRA (reconstructed, see ``workbench.routing.mechanisms.alora``) lets token t's rank-r code z_t = A x_t
attend over z_1..z_t with h heads. Its ``hook_attn`` point carries the per-head maps (B, h, T, T):

    _, cache = lab.run(batch, record="*.routes.alora.hook_attn")
    maps = head_attention(cache, row=0, tokens=tokens_of_row_0)
    # layer, module, router, head, query, key, weight (+ query_token, key_token)
    span_attention(maps, spans=["general"] * 6 + ["domain"] * 9)  # layer, module, router, head, span, weight

Only real tokens count (rows whose ``mask`` is 0 are dropped); ``weight`` sums to 1 over the keys of a
query. Reference: Liu et al., ALoRA (arXiv 2405.17830, EMNLP'24; no public code); routing.md §11 (g):
"ALoRA head attention maps over previous tokens, split by domain vs general spans".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from workbench.errors import WorkbenchError
from workbench.hooks.cache import split_hook_key
from workbench.naming import split_module_name


def head_attention(cache: Mapping, *, row: int = 0, tokens: Sequence[str] | None = None,
                   mask: torch.Tensor | None = None) -> pd.DataFrame:
    """One batch row's attention maps, every recorded ``hook_attn`` and head.

    Args:
        cache: a run's records of ALoRA's ``hook_attn`` ((B, h, T, T) attention probabilities).
        row: the batch row shown.
        tokens: the row's T token strings (labels for ``query_token`` and ``key_token``).
        mask: (B, T) real tokens; padded positions are dropped.

    Returns:
        ``layer, module, router, head, query, key, weight`` (positions), plus ``query_token,
        key_token`` when ``tokens`` are given.
    """
    frames = []
    for key, value in cache.items():
        path, hook, router = split_hook_key(key)
        if hook != "hook_attn":
            continue
        probs = value.detach().float().cpu()
        if probs.dim() != 4 or not 0 <= row < probs.shape[0]:
            raise WorkbenchError(f"{key} holds {tuple(probs.shape)}; expected (batch, heads, T, T) with row "
                                 f"{row} in it")
        p = probs[row]  # (h, T, T)
        t = p.shape[-1]
        if tokens is not None and len(tokens) != t:
            raise WorkbenchError(f"{len(tokens)} tokens for a sequence of {t}; pass the row's tokens")
        keep = np.ones(t, bool) if mask is None else mask[row].bool().cpu().numpy()
        h, q, k = np.indices(p.shape)
        sel = keep[q] & keep[k]
        layer, module = split_module_name(path)
        frame = pd.DataFrame({"layer": layer, "module": module, "router": router, "head": h[sel],
                              "query": q[sel], "key": k[sel], "weight": p.numpy()[sel]})
        if tokens is not None:
            frame["query_token"] = [tokens[i] for i in frame["query"]]
            frame["key_token"] = [tokens[i] for i in frame["key"]]
        frames.append(frame)
    if not frames:
        raise WorkbenchError("the cache holds no hook_attn records; run an alora router with "
                             "record='*.hook_attn'")
    return pd.concat(frames, ignore_index=True)



def span_attention(maps: pd.DataFrame, spans: Sequence[str]) -> pd.DataFrame:
    """``layer, module, router, head, span, weight``: the mean over a row's queries of the attention mass
    each head puts on each span's keys (``spans`` labels every position, e.g. "general" / "domain": the
    split ALoRA is about). A head's weights sum to 1 over the spans."""
    n = int(max(maps["query"].max(), maps["key"].max())) + 1
    if len(spans) < n:
        raise WorkbenchError(f"spans labels {len(spans)} positions but the maps have {n}; label every token")
    names = list(dict.fromkeys(spans))
    rows = []
    for keys, part in maps.groupby(["layer", "module", "router", "head"], dropna=False, sort=False):
        per_query = part.assign(span=[spans[k] for k in part["key"]]).pivot_table(
            index="query", columns="span", values="weight", aggfunc="sum", fill_value=0.0)  # (queries, spans)
        rows += [(*keys, s, float(per_query[s].mean()) if s in per_query else 0.0) for s in names]
    return pd.DataFrame(rows, columns=["layer", "module", "router", "head", "span", "weight"])
