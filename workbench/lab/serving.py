"""``lab.serve_run``: serve requests that each name an adapter, a router or the base, in mixed batches,
and return the serving view's frame (``workbench.analysis.serving``). A mixin of ``Workbench``.

    frame = lab.serve_run([("a0", "2+2="), (None, "Hello"), ("smora", "Name a fruit")], batch_size=8)
    widgets.serving_figure(frame)        # tokens/s against adapters per batch, rank mix per batch

Requests are taken in order, ``batch_size`` at a time; each batch is one mixed batch
(``lab.use(rows=...)``): prompts left-padded, greedy generation of ``max_new_tokens`` with a KV cache
(without one when a router in the batch needs the whole sequence), every row with its own adapter.

Reference: S-LoRA (Sheng et al., MLSys 2024), §5 heterogeneous batching; Punica (Chen et al., MLSys 2024).
Routers that read per-row facts from the routing context (task ids, token types, context vectors) are
served only inside ``routing_context`` with values for every batch, so ``serve_run`` is for adapters,
the base and routers that route from the activations alone (SMoRA, LoRAMoE, MixLoRA, Arrow ...).
Deviations: batches are static (formed in arrival order and run to the end); S-LoRA schedules per
iteration (continuous batching) and pages the KV cache. The first batch also builds the factor pools.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import pandas as pd
import torch

from workbench.analysis.serving import BatchRecord, serving_frame
from workbench.errors import WorkbenchError


class Serving:
    """``serve_run`` of ``Workbench``."""

    @torch.no_grad()
    def serve_run(self, requests: Sequence, *, batch_size: int = 8, max_new_tokens: int = 16,
                  progress: bool = True) -> pd.DataFrame:
        """Serve ``requests`` in mixed batches and time each batch.

        Args:
            requests: (name, prompt) pairs or {"adapter": name, "prompt": prompt} dicts; name is an
                adapter, a router or None (the base); prompt is text or a list of token ids.
            batch_size: requests per batch (the last batch may be smaller).
            max_new_tokens: greedy tokens generated per row (a batch stops early only if every row ended).
            progress: show a tqdm bar over the batches.

        Returns:
            The tidy frame of ``workbench.analysis.serving.serving_frame``: per batch the adapters
            present, their ranks and rows, tokens and tokens per second.
        """
        from tqdm.auto import tqdm

        if int(batch_size) < 1 or int(max_new_tokens) < 1:
            raise WorkbenchError(f"serve_run: batch_size ({batch_size}) and max_new_tokens "
                                 f"({max_new_tokens}) must be at least 1")
        reqs = [self._request(i, r) for i, r in enumerate(requests)]
        if not reqs:
            raise WorkbenchError("serve_run: no requests; give (adapter or None, prompt) pairs")
        kinds = {n: self._kind(n) for n in {n for n, _ in reqs if n is not None}}
        records = []
        starts = range(0, len(reqs), int(batch_size))
        for s in tqdm(starts, desc="serving batches", disable=not progress, leave=False):
            part = reqs[s:s + int(batch_size)]
            rows = tuple(n for n, _ in part)
            ids, mask = self._left_padded([p for _, p in part])
            full = any(r.full_sequence for n in kinds if n in rows and kinds[n][0] == "router"
                       for r in self._routers[n].modules.values())
            with self.session(rows=list(rows), train=False):
                t0 = time.perf_counter()
                out = self.model.generate(input_ids=ids, attention_mask=mask,
                                          max_new_tokens=int(max_new_tokens), do_sample=False,
                                          pad_token_id=self._pad_id(), use_cache=not full)
                seconds = time.perf_counter() - t0
            records.append(BatchRecord(rows, int(mask.sum()), len(rows) * (out.shape[1] - ids.shape[1]),
                                       seconds))
        return serving_frame(records, kinds)

    def _request(self, i: int, req) -> tuple[str | None, list[int]]:
        """(name, token ids) of one request, checked."""
        if isinstance(req, dict):
            req = (req.get("adapter"), req.get("prompt"))
        if not isinstance(req, tuple | list) or len(req) != 2:
            raise WorkbenchError(f"serve_run: request {i} is {req!r:.80}; give (adapter or None, prompt) "
                                 "or {'adapter': ..., 'prompt': ...}")
        name, prompt = req
        if name is not None and name not in self._adapters and name not in self._routers:
            raise WorkbenchError(f"serve_run: request {i} names {name!r}, which this lab does not have; "
                                 f"it has {sorted([*self._adapters, *self._routers]) or '(none)'}")
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise WorkbenchError("serve_run: this lab has no tokenizer; give prompts as token id lists")
            prompt = self.tokenizer(prompt)["input_ids"]
        ids = [int(t) for t in prompt] if isinstance(prompt, Sequence | torch.Tensor) else []
        if not ids:
            raise WorkbenchError(f"serve_run: request {i}'s prompt is empty or not text or token ids: "
                                 f"{prompt!r:.80}")
        return name, ids

    def _kind(self, name: str) -> tuple[str, int | None]:
        """("adapter", its largest rank) or ("router", None)."""
        if name in self._adapters:
            return "adapter", max(f.A.shape[0] for f in self._adapters[name].modules.values())
        return "router", None

    def _pad_id(self) -> int:
        tok = self.tokenizer
        pad = None if tok is None else tok.pad_token_id
        pad = tok.eos_token_id if pad is None and tok is not None else pad
        return 0 if pad is None else int(pad)

    def _left_padded(self, prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask) (B, T), left-padded, on the lab's device."""
        T = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), T), self._pad_id(), dtype=torch.long)
        mask = torch.zeros(len(prompts), T, dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, T - len(p):] = torch.tensor(p)
            mask[i, T - len(p):] = 1
        return ids.to(self.device), mask.to(self.device)
