"""Static forms of the mixtures of whole LoRA experts: LoRAMoE, LoRA-Mixer, MeteoRA and MixLoRA.

Δ = Σ_e w_e(x) s_e B_e A_e x, so the static form at the mean weights w̄ is Σ_e w̄_e s_e B_e A_e, stored
exactly as a concatenation (no SVD). MixLoRA's experts are whole FFNs sharing the frozen weights,
out = Σ_e w_e FFN_e(h): its static form is ONE FFN whose gate/up/down projections carry
Σ_e w̄_e s B^e A^e, the same to first order in the experts' updates (exact with one expert).

Reference: the mechanisms' own (workbench.routing.mechanisms.loramoe, lora_mixer, meteora, mixlora).
"""

from __future__ import annotations

import torch

from workbench.routing.mechanisms.mixlora import PROJECTIONS
from workbench.routing.static_form import StaticForm, concat, register


def _one_expert(n: int) -> torch.Tensor | None:
    return torch.ones(1) if n == 1 else None


def _loramoe(router, path: str, w: torch.Tensor):
    return {path: concat((router.A[e], router.B[e], w[e] * router.scaling) for e in range(router.experts))}


register("loramoe", "Σ_e ω̄_e s B_e A_e with ω̄ the mean softmax weights", StaticForm(
    _loramoe, constant=lambda r: _one_expert(r.experts), exact_when="experts = 1"))


def _lora_mixer(router, path: str, w: torch.Tensor):
    return {path: concat((router.A[e], router.B[e], w[e] * router.scaling[e]) for e in range(router.experts))}


register("lora-mixer", "Σ_e ḡ_e s_e B_e A_e with ḡ the mean hard top-k gate", StaticForm(
    _lora_mixer, constant=lambda r: _one_expert(r.experts), exact_when="experts = 1 (or a bank of one)"))


def _meteora(router, path: str, w: torch.Tensor):
    return {path: concat((A, B, w[j] * s) for j, (A, B, s) in enumerate(router.bank_factors()))}


register("meteora", "Σ_j w̄_j s_j B_j A_j over the bank (what routing.freeze makes)",
    StaticForm(_meteora, constant=lambda r: _one_expert(len(r.bank)), exact_when="a bank of one adapter"))


def _mixlora(router, path: str, w: torch.Tensor):
    return {f"{path}.{proj}": concat((router.lora_A[proj][e], router.lora_B[proj][e], w[e] * router.scaling)
                                     for e in range(router.experts)) for proj in PROJECTIONS}


register("mixlora", "one FFN whose projections carry Σ_e w̄_e s B^e A^e (first order)",
    StaticForm(_mixlora, constant=lambda r: _one_expert(r.experts), exact_when="experts = 1"))
