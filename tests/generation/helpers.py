"""Planted adapter families for the generation tests: each task's checkpoints are one random adapter
plus small seeded noise, with the lineage the training lab writes (``checkpoint_of, step, tasks``);
and one step of first-order MAML written out for the ICM-Fusion tests."""

from __future__ import annotations

import random

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


def first_order_maml_gradient(fusion, support, shots, inner_lr, seed):
    """The first-order MAML outer gradient of one step, written out from its definition: per task t,
    g_s = ∇L_t(φ; support), φ'_t = φ − α·g_s, g_q = ∇L_t(φ'_t; query); the mean of the g_q over tasks."""
    rng = seed if isinstance(seed, random.Random) else random.Random(seed)  # a Random goes on drawing
    P = list(fusion.vae.proj.parameters())
    phi0 = [fusion.logits.clone(), *(p.detach().clone() for p in P)]
    total = [torch.zeros_like(p) for p in phi0]

    def grad_at(phi, batch):
        logits = phi[0].clone().requires_grad_(True)
        with torch.no_grad():
            for p, v in zip(P, phi[1:], strict=True):
                p.copy_(v)
        for p in P:
            p.requires_grad_(True)
            p.grad = None
        fusion.task_loss(torch.softmax(logits, 0), batch)
        out = [logits.grad.clone(), *(p.grad.clone() for p in P)]
        for p in P:
            p.requires_grad_(False)
            p.grad = None
        return out

    for task in fusion.tasks:
        drawn = rng.sample(list(support[task]), 2 * shots)
        g_s = grad_at(phi0, drawn[:shots])
        adapted = [p - inner_lr * g for p, g in zip(phi0, g_s, strict=True)]
        g_q = grad_at(adapted, drawn[shots:])
        total = [t + g for t, g in zip(total, g_q, strict=True)]
    with torch.no_grad():
        for p, v in zip(P, phi0[1:], strict=True):
            p.copy_(v)
    return phi0, [t / len(fusion.tasks) for t in total]
