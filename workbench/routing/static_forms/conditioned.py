"""Static forms of the routers conditioned on the batch: prompt-scale, mask-routed, TARA and RecLoRA.

Their decisions come from the routing context (σ per prompt, a type per token, a mask per adapter,
a context vector per sample), so the prompts of an export need that context too. The static form
averages the decision over the prompts' real tokens:

- prompt-scale: Δ = σ ⊙ (B A x), static form diag(σ̄) B A;
- mask-routed: Δ = Σ_k 1[t = k] s_k B_k A_k x, static form Σ_k f_k s_k B_k A_k, f_k the share of type k;
- TARA: Δ = Σ_c m_c s_c B_c A_c x, static form Σ_c m̄_c s_c B_c A_c (unmasked modules: the plain sum);
- RecLoRA mixes factors, B_u A_u = Σ_mn w_m w_n B_m A_n, quadratic in w: the statistic is w wᵀ and the
  static form Σ_mn E[w_m w_n] B_m A_n, stored as A = [A_1; …; A_M], B_n = s Σ_m E[w_m w_n] B_m (rank M·r).

Reference: the mechanisms' own (workbench.routing.mechanisms.prompt_scale, mask_routed, tara, reclora).
"""

from __future__ import annotations

import torch

from workbench.routing.static_form import StaticForm, concat, register


def _prompt_scale(router, path: str, sigma: torch.Tensor):
    B = router.B.detach().float().cpu()  # (out, r)
    return {path: (router.A.detach().float().cpu().clone(), sigma.float().cpu()[:, None] * B)}


register("prompt-scale", "diag(σ̄) B A with σ̄ the mean per-channel scale of the prompts",
    StaticForm(_prompt_scale,
               exact_when="σ the same for every prompt (e.g. constant_scale: the stage-1 LoRA)"))


def _mask_routed(router, path: str, f: torch.Tensor):
    return {path: concat((router.A[n], router.B[n], f[k] * router.scaling[n])
                         for k, n in enumerate(router.branches))}


register("mask-routed", "Σ_k f_k s_k B_k A_k with f_k the share of tokens of type k",
    StaticForm(_mask_routed, constant=lambda r: torch.ones(1) if len(r.branches) == 1 else None,
               exact_when="a single branch"))


def _tara(router, path: str, m: torch.Tensor):
    layer = router.layer
    parts = [(layer.lora_A[c], layer.lora_B[c], m[j] * layer.scaling[c])
             for j, c in enumerate(router.bank) if c in layer.lora_A]
    return {path: concat(parts)} if parts else {}


def _tara_constant(router):
    """Unmasked modules (q, o with kv_only) apply every bank adapter they hold: weight 1 each."""
    if router.masked:
        return None
    return torch.tensor([1.0 if c in router.layer.lora_A else 0.0 for c in router.bank])


register("tara", "Σ_c m̄_c s_c B_c A_c with m̄_c the share of tokens in adapter c's mask",
    StaticForm(_tara, constant=_tara_constant,
               exact_when="modules it does not mask (q, o with kv_only=True); masked ones when the masks "
                          "are constant"))


def _reclora_statistic(record) -> torch.Tensor:
    w = record.weights  # (B, T, M)
    return w[..., :, None] * w[..., None, :]  # (B, T, M, M)


def _reclora(router, path: str, S: torch.Tensor):
    M, r, n_in = router.A.shape
    A = router.A.detach().float().cpu().reshape(M * r, n_in)  # block n = A_n
    B = torch.einsum("mn,mor->nor", S.float().cpu(), router.B.detach().float().cpu())  # B_n = Σ_m S_mn B_m
    return {path: (A.clone(), router.scaling * B.permute(1, 0, 2).reshape(B.shape[1], M * r))}


register("reclora", "Σ_mn E[w_m w_n] s B_m A_n: the mean of the per-sample mixed updates",
    StaticForm(_reclora, constant=lambda r: torch.ones(1, 1) if r.M == 1 else None,
               statistic=_reclora_statistic, exact_when="M = 1, or one context vector for every prompt"))
