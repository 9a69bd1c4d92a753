"""TARA: token-aware LoRA, a bank of the lab's adapters each acting only on its own tokens.

    Δ_total = Σ_c m_c ⊙ Δ_c,   Δ_c = s_c B_c A_c x (adapter c of ``bank``),  m_c (B, T) from the context

The masks come from the routing context key ``token_masks`` {adapter: (B, T)} (1 where adapter c may
act: in TARA, the sub-token positions of its rare word). With ``kv_only`` (TARA's setting) only key
and value projections are masked (module names ending in k_proj, v_proj, key, value, to_k, to_v);
every other targeted module (q, o, ...) applies the plain sum Σ_c Δ_c and ignores the masks. A mask
of any other shape than the sequence's (B, T) is an error, and so is a bank adapter without a mask.
Several TARA adapters are summed at inference, each under its own mask, with no merging.

The bank is the lab's own adapters (``bank=["dog", "cat"]``): their factors stay where they are (the
``LoraLayer``), so the bank is frozen unless listed in ``train``, which makes ``trainable()`` return
those adapters' factors (training one concept adapter under its mask, as TARA does).

Token alignment loss (TAL, code version), optional: with ``align`` > 0, every training forward of a
key projection adds ``align`` · L1((W_k + ΔW_k^c) e_rare − W_k e_class) for each bank adapter c with
a class mask in the context key ``class_masks`` {adapter: (B, T)}; the rare positions are c's token
mask, paired in order with the class positions (equal counts per row, as the code assumes), and the
loss is the mean over layers. ``alignment_loss`` is the same as a plain function. ⚠ The paper states TAL
as attention-map/region alignment; only the code's key-space L1 is implemented here. The "focus loss"
the code logs but does not add is left out.

Deviation: TARA is a diffusion method (cross-attention keys/values over text encoder states e); the
workbench applies its masking to a causal LM's self-attention projections, whose inputs x play e's
role. The masks are per adapter through the context, not the reference's class-level static mask
(which breaks training several adapters at once).

Reference: Peng et al., "TARA: Token-Aware LoRA for Composable Personalization in Diffusion Models"
(arXiv 2508.08812); code github YuqiPeng77/TARA @cbd5dd5, tara.py (TARALinearLayer),
train_dreambooth_tara_sd.py (masks, losses). Code defaults r=8, α=32 (the bank adapters' own), λ_align=1.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from workbench.errors import WorkbenchError
from workbench.routing.base import ROUTERS, Router
from workbench.routing.context import context_value
from workbench.routing.losses import AUX_LOSSES

KV_SUFFIXES = ("k_proj", "v_proj", "key", "value", "to_k", "to_v")
K_SUFFIXES = ("k_proj", "key", "to_k")


def check_mask(mask, shape: torch.Size, who: str) -> torch.Tensor:
    if not torch.is_tensor(mask) or tuple(mask.shape) != tuple(shape):
        got = tuple(mask.shape) if torch.is_tensor(mask) else type(mask).__name__
        raise WorkbenchError(f"{who} has shape {got} but the sequence is {tuple(shape)} (B, T); "
                             "give one value per token (1 where the adapter acts)")
    return mask


def alignment_loss(base: nn.Module, update: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                   rare: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
    """TAL (code version): mean L1((W_k + ΔW_k) e_rare − W_k e_class).

    Args:
        base: the frozen key projection W_k; update: x -> ΔW_k x (the adapter's update).
        x: (B, T, in) the projection's inputs e; rare, cls: (B, T) bool, the rare word's and the class
            word's positions, with as many of each in every row (paired in order).
    """
    rare, cls = rare.bool(), cls.bool()
    if not torch.equal(rare.sum(1), cls.sum(1)):
        raise WorkbenchError("TARA alignment pairs rare and class tokens in order; their counts per row "
                             f"differ ({rare.sum(1).tolist()} vs {cls.sum(1).tolist()})")
    e_rare, e_class = x[rare], x[cls]  # (N, in)
    return F.l1_loss(base(e_rare) + update(e_rare), base(e_class))


@AUX_LOSSES.register("tara_alignment")
def _tara_alignment(payloads: list[dict]) -> torch.Tensor:
    """Mean over layers (and bank adapters) of each payload's ``value`` (from ``alignment_loss``)."""
    return torch.stack([p["value"] for p in payloads]).mean()


@ROUTERS.register("tara", flags=("bank", "exportable", "needs_token_masks"), bounds={"align": (0.0, None)})
class TARA(Router):
    """TARA: token-aware LoRA, a bank of the lab's adapters, each acting only on its own tokens (masks).

    Args:
        bank: names of the lab's adapters to apply, each under its own token mask.
        kv_only: mask only key and value projections (TARA's setting); the others apply the plain sum.
        train: bank adapters whose factors train (under their masks); the others stay frozen.
        align: coefficient of the token alignment loss (0: off).
    """

    default_targets = "attention"
    reference = "TARA, arXiv 2508.08812; github YuqiPeng77/TARA @cbd5dd5 tara.py"

    def __init__(self, layer: nn.Module, *, bank: Sequence[str], kv_only: bool = True,
                 train: Sequence[str] = (), align: float = 0.0):
        super().__init__()
        object.__setattr__(self, "layer", layer)  # the LoraLayer holding the bank (not a child module)
        self.bank, self.train_names, self.align = list(bank), list(train), float(align)
        leaf = layer.path.rsplit(".", 1)[-1]
        self.masked = leaf in KV_SUFFIXES or not kv_only
        self.is_key = leaf in K_SUFFIXES

    @classmethod
    def build(cls, *, path: str, module: nn.Module, lab, generator: torch.Generator, **params) -> Router:
        bank = list(params.get("bank") or [])
        unknown = [c for c in [*bank, *params.get("train", ())] if c not in lab.adapters]
        if not bank or unknown:
            raise WorkbenchError(f"TARA needs bank=[names of the lab's adapters]; got bank={bank}, unknown "
                                 f"{unknown}; the lab has {list(lab.adapters) or '(none)'}")
        if set(params.get("train", ())) - set(bank):
            raise WorkbenchError(f"train={list(params['train'])} must be adapters of bank={bank}")
        return cls(module, **params)

    def _here(self) -> list[str]:
        """The bank adapters with factors at this module (none merged: that would apply them twice)."""
        merged = [c for c in self.bank if c in self.layer.merged]
        if merged:
            raise WorkbenchError(f"TARA bank adapters {merged} are merged into {self.layer.path!r}; "
                                 "call lab.unmerge() first")
        return [c for c in self.bank if c in self.layer.lora_A]

    def trainable(self) -> list[nn.Parameter]:
        return [p for c in self.train_names if c in self.layer.lora_A
                for p in (self.layer.lora_A[c], self.layer.lora_B[c])]

    def forward(self, x: torch.Tensor, base: nn.Module) -> torch.Tensor:
        here = self._here()
        masks = context_value("token_masks", needed_by="TARA") if self.masked else {}
        if not isinstance(masks, Mapping):
            raise WorkbenchError(f"TARA: token_masks must be a dict {{adapter: (B, T) mask}}, got "
                                 f"{type(masks).__name__}")
        missing = [c for c in here if c not in masks] if self.masked else []
        if missing:
            raise WorkbenchError(f"TARA at {self.layer.path!r}: token_masks has no mask for {missing} "
                                 f"(it has {list(masks)}); give one (B, T) mask per bank adapter")
        weights = torch.zeros(*x.shape[:-1], len(self.bank), dtype=x.dtype, device=x.device)
        delta = torch.zeros(*x.shape[:-1], self.layer.out_features, dtype=x.dtype, device=x.device)
        for e, c in enumerate(self.bank):
            if c not in here:
                continue
            update = self.layer.update(c, x)  # s_c B_c A_c x, as the plain adapter (hook_rank fires too)
            if self.masked:
                m = check_mask(masks[c], x.shape[:-1], f"TARA token_masks[{c!r}]").to(x.dtype)
                update = update * m[..., None]
                self._align(c, x, base, m)
            weights[..., e] = m if self.masked else 1.0
            delta = delta + update
        self.emit(weights, weights)
        return delta

    def _align(self, c: str, x: torch.Tensor, base: nn.Module, rare: torch.Tensor) -> None:
        if not (self.training and self.align and self.is_key):
            return
        cls = context_value("class_masks", needed_by="TARA's alignment loss (align > 0)").get(c)
        if cls is not None:
            loss = alignment_loss(base, lambda e: self.layer.update(c, e), x, rare,
                                  check_mask(cls, x.shape[:-1], f"TARA class_masks[{c!r}]"))
            self.add_aux("tara_alignment", self.align, value=loss)
