"""Helpers for training tests: token-id tasks for the tiny zoo models (they have no tokenizer)."""

from __future__ import annotations

import torch


def id_task(answer: int, n: int = 12, seed: int = 0, length: int = 6) -> list[dict]:
    """n examples: a random prompt of ids (< 200), then the answer id twice (labels only there)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        prompt = torch.randint(10, 200, (length,), generator=g).tolist()
        out.append({"input_ids": prompt + [answer, answer], "labels": [-100] * length + [answer, answer]})
    return out


def two_tasks(n: int = 12) -> dict[str, list[dict]]:
    """Two tasks that pull the same prompts towards different answers (their gradients conflict)."""
    return {"left": id_task(3, n, seed=0), "right": id_task(7, n, seed=0)}
