"""SGLoRA: a LoRA for a task described in words, generated from the experts whose descriptions are near.

    gen = SGLoRA(lab, encoder=MiniLMEncoder(), k=3, tau=0.05)
    gen.fit(expert_checkpoints, EXPERT_DESCRIPTIONS)      # {expert: checkpoints}, {expert: "classify ..."}
    w = gen.proximity("classify a quote as being about computers or sports")   # expert -> weight
    new = gen.generate("classify a quote as being about computers or sports", n=4, seed=0)

Mechanism: every expert task i has a description embedded by the text encoder, ``e_i`` (unit rows).
The CVAE (``CVAE1D``, as in ICM-LoRA) is trained on each expert's late checkpoints conditioned on
``e_i``. A new description embeds to ``e*``; its proximity weights are ``w_i = softmax(cos(e*, e_i)/τ)``
over the top-k experts by cosine (0 for the others); the semantic condition is ``c* = Σ_i w_i e_i``;
a generated LoRA is ``dec(z, c*)``, ``z ~ N(0, I)`` (stochastic: each sample differs, unlike a merge).
No data of the new task and no tuning are used.

Reference: Li et al., "SG-LoRA: Semantic-Guided LoRA Parameter Generation", arXiv 2509.10535 (no
public code could be read; merging.md §5: the abstract [P], the top-k softmax(cos/τ) weights [R]).
Reconstruction (labelled as such): every detail below that is not in that sentence. Deviations:
the text encoder is pluggable (default the zoo's MiniLM, not CLIP); the CVAE is ICM-LoRA's 1-D
convolutional one (the paper's generator architecture is not public), with the conditions centred
on the experts' mean embedding and scaled by their RMS (as ``ICMLoRA`` does); a generated adapter is
de-normalized with the proximity-weighted mean of the top-k experts' per-tensor (mean, std) (the
paper does not say; ICM-LoRA uses one task's stats).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence

import pandas as pd
import torch

from workbench.adapters import Adapter
from workbench.errors import WorkbenchError
from workbench.generation.flatten import unflatten
from workbench.generation.icm_lora import SCALED_CHANNELS, ICMLoRA
from workbench.generation.text_encoder import MiniLMEncoder, TextEncoder, encoder_named


def proximity_weights(query: torch.Tensor, experts: torch.Tensor, *, k: int, tau: float) -> torch.Tensor:
    """``softmax(cos(e*, e_i)/τ)`` over the ``k`` experts nearest by cosine, 0 for the others.

    Args:
        query: e* (D,); experts: (N, D) one embedding per expert.
        k: how many experts share the weight (clipped to N); tau: the softmax temperature (> 0).

    Returns:
        (N,) float32 weights summing to 1, non-zero on the top-k only.
    """
    if query.dim() != 1 or experts.dim() != 2 or experts.shape[1] != query.shape[0]:
        raise WorkbenchError(f"proximity needs e* (D,) and experts (N, D) of one D; got {tuple(query.shape)} "
                             f"and {tuple(experts.shape)}")
    if k < 1:
        raise WorkbenchError(f"k counts the experts that share the weight; give k ≥ 1, got {k}")
    if not tau > 0:
        raise WorkbenchError(f"tau is a softmax temperature; give tau > 0, got {tau}")
    cos = torch.nn.functional.cosine_similarity(experts.float(), query.float()[None], dim=1)  # (N,)
    top = torch.topk(cos, min(k, len(cos))).indices
    w = torch.zeros_like(cos)
    w[top] = torch.softmax(cos[top] / tau, dim=0)
    return w  # (N,)


def semantic_condition(weights: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """``c* = Σ_i w_i e_i``: weights (N,), experts (N, D) -> (D,)."""
    return weights.float() @ experts.float()


class SGLoRA(ICMLoRA):
    """SG-LoRA over a lab's experts: fit on their checkpoints and descriptions, generate from words.

    Args:
        lab: the Workbench whose base the experts and the generated adapters belong to.
        encoder: a ``TextEncoder`` (default: ``MiniLMEncoder()``, loaded on first use).
        k: experts that share the proximity weight; tau: the softmax temperature.
        channels, latent, kernel, kl_weight, slice_length, layer: as in ``ICMLoRA``.
    """

    name = "sg_lora"

    def __init__(self, lab, *, encoder: TextEncoder | None = None, k: int = 3, tau: float = 0.05,
                 channels: Sequence[int] = SCALED_CHANNELS, latent: int = 32, kernel: int = 7,
                 kl_weight: float = 0.005, slice_length: int | None = None, layer: str | None = None):
        super().__init__(lab, channels=channels, latent=latent, kernel=kernel, kl_weight=kl_weight,
                         slice_length=slice_length, layer=layer)
        if encoder is not None and not isinstance(encoder, TextEncoder):
            raise WorkbenchError(f"encoder must have name, dim and embed(texts); got "
                                 f"{type(encoder).__name__}")
        self.encoder = encoder if encoder is not None else MiniLMEncoder()
        if k < 1 or not tau > 0:
            raise WorkbenchError(f"SGLoRA needs k ≥ 1 and tau > 0; got k={k}, tau={tau}")
        self.k, self.tau = int(k), float(tau)
        self.descriptions: dict[str, str] = {}

    def __repr__(self) -> str:
        state = f"experts={len(self.tasks)}, L={self.layout.length}" if self.vae is not None else "not fitted"
        return (f"SGLoRA({self.lab.name!r}, encoder={self.encoder.name!r}, k={self.k}, tau={self.tau}, "
                f"{state})")

    # -- conditions ------------------------------------------------------------------------------
    def condition(self, description) -> torch.Tensor:
        """e (D,) of a description (str), or an embedding (D,) given as a tensor."""
        if isinstance(description, str):
            return self.encoder.embed([description])[0].float()
        if isinstance(description, torch.Tensor):
            return super().condition(description)
        raise WorkbenchError(f"SG-LoRA is conditioned on a description (a string); got "
                             f"{type(description).__name__}")

    def fit(self, checkpoints: Mapping[str, Sequence], descriptions: Mapping[str, str],
            **kwargs) -> pd.DataFrame:
        """Fit the CVAE on each expert's late checkpoints, conditioned on its description's embedding.

        Args:
            checkpoints: expert name -> its checkpoints (see ``ICMLoRA.fit``).
            descriptions: expert name -> a sentence saying what the expert does.
            kwargs: ``late, steps, lr, batch_size, seed, progress`` as in ``ICMLoRA.fit``.
        """
        bad = [t for t, d in descriptions.items() if not isinstance(d, str) or not d.strip()]
        if bad:
            raise WorkbenchError(f"experts {bad[:3]} have no description; give each a sentence (str)")
        history = super().fit(checkpoints, descriptions, **kwargs)
        self.descriptions = {t: descriptions[t] for t in self.tasks}
        return history

    def proximity(self, description, *, k: int | None = None, tau: float | None = None) -> pd.Series:
        """Expert -> proximity weight of a description (str) or embedding (D,), experts in fitted order."""
        self._fitted()
        w = proximity_weights(self.condition(description), self.conditions, k=k or self.k,
                              tau=self.tau if tau is None else tau)
        return pd.Series(w.numpy(), index=self.tasks, name="weight")

    def cosines(self, description) -> pd.Series:
        """Expert -> cos(e*, e_i) of a description (str) or embedding (D,)."""
        self._fitted()
        cos = torch.nn.functional.cosine_similarity(self.conditions, self.condition(description)[None], dim=1)
        return pd.Series(cos.numpy(), index=self.tasks, name="cosine")

    # -- making adapters -------------------------------------------------------------------------
    def generate(self, description, *, n: int = 1, seed: int = 0, name: str | None = None,
                 k: int | None = None, tau: float | None = None) -> Adapter | list[Adapter]:
        """Adapters for the task ``description`` names: ``n`` samples ``dec(z, Σ_i w_i e_i)``.

        Args:
            description: a sentence (str) saying what the task is, or an embedding (D,).
            n: samples; seed: seeds z (same seed, same adapters).
            name: the adapter's name (``name_<i>`` when n > 1); default ``sg_<nearest expert>_s<seed>``.
            k, tau: override the generator's top-k and temperature for this call.

        Returns:
            One Adapter (n = 1) or a list; none is added to the lab.
        """
        vae = self._fitted()
        if n < 1:
            raise WorkbenchError(f"n counts samples: give 1 or more; got {n}")
        k, tau = k or self.k, self.tau if tau is None else tau
        e = self.condition(description)
        w = proximity_weights(e, self.conditions, k=k, tau=tau)  # (N,)
        c = semantic_condition(w, self.conditions)  # (D,)
        every = torch.stack([self.stats[t] for t in self.tasks]).double()  # (N, K, 2)
        stats = torch.einsum("n,nkc->kc", w.double(), every)  # (K, 2)
        g = torch.Generator().manual_seed(seed)
        xs = vae.sample(self.standardize(c), n, generator=g)  # (n, L)
        near = self.tasks[int(w.argmax())]
        base = name or re.sub(r"\W", "_", f"sg_{near}_s{seed}")
        condition = {"kind": "description", "encoder": self.encoder.name, "k": k, "tau": tau,
                     "weights": {t: round(float(v), 6)
                                 for t, v in zip(self.tasks, w.tolist(), strict=True) if v > 0},
                     "nearest_expert": near,
                     "digest": hashlib.sha256(e.numpy().tobytes()).hexdigest()[:16]}
        if isinstance(description, str):
            condition["text"] = description
        out = []
        for i in range(n):
            lineage = {"method": "generate", "generator": self._lineage(), "condition": condition,
                       "seed": seed, "sample": i, "denormalized_with": "proximity-weighted expert stats",
                       "base": self.lab.name}
            out.append(unflatten(xs[i], stats, self.layout, name=base if n == 1 else f"{base}_{i}",
                                 lineage=lineage))
        return out[0] if n == 1 else out

    def _lineage(self) -> dict:
        return super()._lineage() | {
            "encoder": self.encoder.name, "k": self.k, "tau": self.tau,
            "reference": "Li et al., SG-LoRA, arXiv 2509.10535 (reconstruction; CVAE of ICM-LoRA)"}

    # -- files -----------------------------------------------------------------------------------
    def extra_config(self) -> dict:
        return {"encoder": self.encoder.name, "encoder_dim": int(self.conditions.shape[1]), "k": self.k,
                "tau": self.tau, "descriptions": dict(self.descriptions)}

    def restore_extra(self, config: dict, tensors: dict[str, torch.Tensor]) -> None:
        try:
            descriptions, dim = dict(config["descriptions"]), int(config["encoder_dim"])
            self.k, self.tau = int(config["k"]), float(config["tau"])
            name = str(config["encoder"])
        except (KeyError, TypeError, ValueError) as e:
            raise WorkbenchError(f"this SG-LoRA generator's settings are incomplete "
                                 f"({type(e).__name__}: {e}); "
                                 "save it again from a fitted SGLoRA") from None
        if sorted(descriptions) != sorted(self.tasks) or dim != self.conditions.shape[1]:
            raise WorkbenchError("the saved descriptions or embedding size disagree with the saved experts; "
                                 "save it again from a fitted SGLoRA")
        if self.encoder.name != name:
            self.encoder = encoder_named(name, dim)
        if getattr(self.encoder, "dim", dim) != dim:
            raise WorkbenchError(f"the encoder {self.encoder.name!r} gives {self.encoder.dim} dimensions "
                                 f"but the generator was fitted on {dim}; load it with the encoder it "
                                 "was fitted with")
        self.descriptions = {t: descriptions[t] for t in self.tasks}
