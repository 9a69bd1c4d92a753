"""Planted adapter families for the generation tests: each task's checkpoints are one random adapter
plus small seeded noise, with the lineage the training lab writes (``checkpoint_of, step, tasks``)."""

from __future__ import annotations

import torch

from workbench.adapters import Adapter

# two tasks with token-id examples (the tiny zoo models have no tokenizer)
EXAMPLES = {"left": [{"input_ids": [5, 6, 7, 8, 3]}, {"input_ids": [9, 10, 11, 3]}],
            "right": [{"input_ids": [50, 60, 70, 7]}, {"input_ids": [90, 91, 7]}]}


def planted_family(lab, name: str, seed: int, n: int = 8, noise: float = 0.05) -> list[Adapter]:
    """n checkpoints of task ``name`` at steps 10, 20, ...: one random adapter + noise·std per tensor."""
    centre = lab.new_adapter(f"{name}_centre", r=2, init="random", seed=seed)
    lab.remove_adapter(centre.name)
    out = []
    for k in range(n):
        ckpt = centre.copy(f"{name}_step{(k + 1) * 10}")
        g = torch.Generator().manual_seed(1000 * seed + k)
        for f in ckpt.modules.values():
            f.A += noise * f.A.std() * torch.randn(f.A.shape, generator=g)
            f.B += noise * f.B.std() * torch.randn(f.B.shape, generator=g)
        ckpt.lineage = {"checkpoint_of": name, "step": (k + 1) * 10, "tasks": [name], "seed": seed}
        out.append(ckpt)
    return out
