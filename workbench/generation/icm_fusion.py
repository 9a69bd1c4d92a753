"""ICMFusion: task vectors projected into a learned latent, fused by learned weights, decoded into one
multi-task LoRA by a Fusion-VAE.

    fusion = ICMFusion(lab, proj_dim=16)
    fusion.fit(checkpoints, tasks)                 # F-VAE: P (H -> d) + CVAE1D, on every task's checkpoints
    fusion.meta_fit(support, steps=10)             # w and P meta-learned (first-order) on few-shot support
    multi = fusion.fuse()                          # one Adapter for all the tasks
    fusion.fuse(weights=[1, 0, 0])                 # any fusion weights by hand

Mechanism (the parts from ICM-LoRA follow the authors' code, see ``icm_lora``): each task t has a
task vector ``v_t`` (the ICM-LoRA condition, standardized) and late checkpoints. The F-VAE is a
learned linear projection ``P: R^H -> R^d`` in front of a ``CVAE1D`` conditioned on ``P(v_t)``, trained
on every task's checkpoints with the CVAE loss (``fit``). The fused condition is
``p_f = Σ_t w_t P(v_t)`` with ``w = softmax(logits)``; the fused LoRA is ``dec(z, p_f)`` with z = 0 (the
prior's mean; ``seed=`` draws ``z ~ N(0, I)`` instead), de-normalized with ``Σ_t w_t (mean, std)_t``.
``meta_fit`` learns ``logits`` and ``P`` by first-order MAML: for each task t, one inner step
``φ'_t = φ − α ∇ L_t(φ; support batch)``, then the outer gradient is ``∇ L_t(φ'_t; query batch)``
(evaluated at the adapted parameters, no second derivatives), averaged over tasks, applied to φ with
Adam. ``L_t`` is the base model's token loss on task t's examples with the decoded LoRA applied; its
gradient reaches φ through the LoRA factors, the de-normalization and the frozen decoder.

Reference: Shao et al., "ICM-Fusion: In-Context Meta-Optimized LoRA Fusion for Multi-Task Adaptation",
AAAI 2026, arXiv 2508.04153 (no public code: only the abstract and summaries, merging.md §3 [P]).
RECONSTRUCTION, all of it beyond the abstract: the projection (linear), the fused condition (a
softmax-weighted sum), the F-VAE (ICM-LoRA's CVAE1D behind P, trained with ICM-LoRA's loss), the
meta-objective (token loss of the decoded LoRA on each task's few-shot support set), first-order MAML
with one inner SGD step and an Adam outer step, z = 0 for the fused LoRA, and de-normalization by
the weighted mean of the tasks' stats. Do not read it as the paper's F-VAE architecture or loss.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from workbench.errors import WorkbenchError
from workbench.generation.cvae import CVAE1D
from workbench.generation.flatten import unflatten
from workbench.generation.icm_lora import SCALED_CHANNELS, ICMLoRA

PROBE = "_icm_fusion_probe"  # the decoded LoRA's name while its loss is measured


class FusionVAE(nn.Module):
    """The F-VAE: a linear projection P of task vectors (H -> d) in front of a ``CVAE1D`` (cond d).

    Args:
        length: L, the flat vector's length; cond_dim: H, the task vectors' size; proj_dim: d.
        cvae_options: ``CVAE1D``'s keyword arguments (channels, latent, kernel, ...).
    """

    def __init__(self, length: int, cond_dim: int, proj_dim: int = 16, **cvae_options):
        super().__init__()
        if proj_dim < 1:
            raise WorkbenchError(f"proj_dim is the fused latent's size; give 1 or more, got {proj_dim}")
        self.proj = nn.Linear(cond_dim, proj_dim)
        self.cvae = CVAE1D(length, proj_dim, **cvae_options)
        self.length, self.cond_dim, self.proj_dim, self.latent = length, cond_dim, proj_dim, self.cvae.latent

    def config(self) -> dict:
        return {"length": self.length, "cond_dim": self.cond_dim, "proj_dim": self.proj_dim,
                "cvae": {k: v for k, v in self.cvae.config().items() if k not in ("length", "cond_dim")}}

    @classmethod
    def from_config(cls, config: dict) -> FusionVAE:
        return cls(config["length"], config["cond_dim"], config["proj_dim"], **config["cvae"])

    def loss(self, x: torch.Tensor, c: torch.Tensor):
        """The CVAE loss of x (B, L) given task vectors c (B, H), through P."""
        return self.cvae.loss(x, self.proj(c))

    @torch.no_grad()
    def sample(self, c: torch.Tensor, n: int = 1, *,
               generator: torch.Generator | None = None) -> torch.Tensor:
        return self.cvae.sample(self.proj(c), n, generator=generator)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.cvae.reconstruct(x, self.proj(c))


class ICMFusion(ICMLoRA):
    """ICM-Fusion over a lab's task LoRAs: fit the F-VAE, meta-learn the fusion, decode one LoRA.

    Args:
        lab: the Workbench whose base the checkpoints and the fused adapter belong to.
        proj_dim: d, the size of the learned latent the task vectors are projected into.
        channels, latent, kernel, kl_weight, slice_length, layer: as in ``ICMLoRA``.
    """

    name = "icm_fusion"

    def __init__(self, lab, *, proj_dim: int = 16, channels: Sequence[int] = SCALED_CHANNELS,
                 latent: int = 32, kernel: int = 7, kl_weight: float = 0.005, slice_length: int | None = None,
                 layer: str | None = None):
        super().__init__(lab, channels=channels, latent=latent, kernel=kernel, kl_weight=kl_weight,
                         slice_length=slice_length, layer=layer)
        self.proj_dim = int(proj_dim)
        self.logits: torch.Tensor | None = None  # (T,) fusion logits; softmax -> w
        self.meta_history: pd.DataFrame | None = None
        self.meta_options: dict = {}

    def _build_vae(self, length: int, cond_dim: int) -> FusionVAE:
        return FusionVAE(length, cond_dim, self.proj_dim, **self.options)

    @classmethod
    def vae_from_config(cls, config: dict) -> FusionVAE:
        return FusionVAE.from_config(config)

    def fit(self, checkpoints: Mapping[str, Sequence], examples: Mapping[str, object],
            **kwargs) -> pd.DataFrame:
        """Fit the F-VAE (P and the CVAE together) as ``ICMLoRA.fit`` does; the weights start uniform."""
        history = super().fit(checkpoints, examples, **kwargs)
        self.vae.requires_grad_(False)  # meta_fit turns P on for its steps; the decoder stays frozen
        self.logits = torch.zeros(len(self.tasks))
        return history

    # -- the fusion ------------------------------------------------------------------------------
    @property
    def weights(self) -> pd.Series:
        """Task -> its fusion weight ``softmax(logits)``."""
        self._fitted()
        return pd.Series(torch.softmax(self.logits, 0).numpy(), index=self.tasks, name="weight")

    def _weights(self, weights) -> torch.Tensor:
        if weights is None:
            return torch.softmax(self.logits, 0)
        if isinstance(weights, Mapping):
            unknown = sorted(set(weights) - set(self.tasks))
            if unknown:
                raise WorkbenchError(f"fusion weights name tasks {unknown} that were not fitted "
                                     f"({self.tasks})")
            weights = [float(weights.get(t, 0.0)) for t in self.tasks]
        w = torch.as_tensor(weights, dtype=torch.float32).reshape(-1)
        if w.numel() != len(self.tasks) or not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise WorkbenchError(f"give {len(self.tasks)} fusion weights ≥ 0, not all 0 (tasks "
                                 f"{self.tasks}); "
                                 f"got {weights}")
        return w / w.sum()

    def projected(self) -> torch.Tensor:
        """P(v_t) of every fitted task, (T, d) (no grad): the task vectors in the learned latent."""
        with torch.no_grad():
            return self._fitted().proj(self.standardize(self.conditions))

    def fused_condition(self, weights=None) -> torch.Tensor:
        """``p_f = Σ_t w_t P(v_t)`` (d,) for ``weights`` (default: the learned ones)."""
        return self._weights(weights) @ self.projected()

    def _decode(self, w: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized x̂ (n, L) of ``dec(z, Σ w_t P(v_t))`` and the weighted stats (K, 2), with grad."""
        vae = self._fitted()
        p = w @ vae.proj(self.standardize(self.conditions))  # (d,)
        x = vae.cvae.decode(z, p[None].expand(z.shape[0], -1))[:, :vae.length]  # (n, L)
        stats = torch.einsum("t,tkc->kc", w, torch.stack([self.stats[t] for t in self.tasks]).float())
        return x, stats

    def fuse(self, weights=None, *, n: int = 1, seed: int | None = None, name: str | None = None):
        """The fused multi-task LoRA: ``dec(z, Σ_t w_t P(v_t))``, z = 0 (or ``z ~ N(0, I)`` by ``seed``).

        Args:
            weights: per-task fusion weights (a list in fitted order or {task: weight}); default the
                learned ones (uniform before ``meta_fit``).
            n: samples (only with a seed); seed: draw z from N(0, I) with it (None: z = 0).
            name: the adapter's name (``name_<i>`` when n > 1); default ``icm_fusion``.

        Returns:
            One Adapter (n = 1) or a list; none is added to the lab.
        """
        vae = self._fitted()
        if n < 1 or (n > 1 and seed is None):
            raise WorkbenchError(f"n = {n}: give n ≥ 1, and a seed for more than one sample (z = 0 is "
                                 "one LoRA)")
        w = self._weights(weights)
        if seed is None:
            z = torch.zeros(1, vae.latent)
        else:
            z = torch.randn(n, vae.latent, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            xs, stats = self._decode(w, z)
        base = name or "icm_fusion"
        condition = {"kind": "fused_task_vectors", "tasks": list(self.tasks),
                     "weights": [round(float(v), 6) for v in w], "learned": weights is None,
                     "meta": dict(self.meta_options), "z": "zero" if seed is None else "normal"}
        out = [unflatten(xs[i], stats.double(), self.layout, name=base if n == 1 else f"{base}_{i}",
                         lineage={"method": "fuse", "generator": self._lineage(), "condition": condition,
                                  "seed": seed, "sample": i,
                                  "denormalized_with": "fusion-weighted task stats",
                                  "base": self.lab.name})
               for i in range(n)]
        return out[0] if n == 1 else out

    # -- meta-learning ---------------------------------------------------------------------------
    def task_loss(self, w: torch.Tensor, features: Sequence[dict]) -> torch.Tensor:
        """Token loss on ``features`` with ``dec(0, Σ w_t P(v_t))`` applied; differentiable in w and P.

        The LoRA is built from detached factors, added to the lab, its loss back-propagated to the
        factors, and the factors' gradients pushed back through the decoder (``torch.autograd.backward``
        with them as output gradients). Returns the loss (a detached scalar); gradients land in
        ``.grad`` of ``w`` (when it requires grad) and of P's parameters.
        """
        from workbench.training import TokenLoss

        x, stats = self._decode(w, torch.zeros(1, self._fitted().latent))
        pieces = torch.split(x[0], list(self.layout.lengths))
        tensors = [p * stats[k, 1] + stats[k, 0] for k, p in enumerate(pieces)]  # de-normalized, with grad
        probe = unflatten(x[0].detach(), stats.detach().double(), self.layout, name=PROBE)
        if PROBE in self.lab.adapters:
            self.lab.remove_adapter(PROBE)
        self.lab.add_adapter(probe)
        try:
            factors = [t for m in self.layout.modules for t in (probe.modules[m].A, probe.modules[m].B)]
            with self.lab.session(PROBE, train=False, trainable=factors):
                loss = TokenLoss(self.lab)([(0, f) for f in features]).total
                grads = torch.autograd.grad(loss, factors)
            shaped = [t.reshape(g.shape) for t, g in zip(tensors, grads, strict=True)]
            outer = [g.detach().to(t.dtype) for t, g in zip(shaped, grads, strict=True)]
            torch.autograd.backward(shaped, outer)
        finally:
            self.lab.remove_adapter(PROBE)
        return loss.detach()

    def meta_fit(self, support: Mapping[str, Sequence[dict]], *, steps: int = 10, shots: int = 4,
                 inner_lr: float = 1.0, outer_lr: float = 0.05, seed: int = 0,
                 progress: bool = True) -> pd.DataFrame:
        """Meta-learn the fusion logits and P by first-order MAML on each task's few-shot support set.

        Args:
            support: task -> its encoded examples (``encode_for_training`` dicts: input_ids, labels);
                every fitted task needs at least ``2 · shots`` (a support and a query batch per step).
            steps: outer steps; shots: examples per support (and per query) batch.
            inner_lr: the inner SGD step on φ; outer_lr: Adam's learning rate on φ.
            seed: which examples each step draws.

        Returns:
            One row per (step, task): ``step, task, support_loss, query_loss`` (the query loss at φ'_t).
        """
        vae = self._fitted()
        missing = [t for t in self.tasks if len(support.get(t, ())) < 2 * shots]
        if missing:
            raise WorkbenchError(f"tasks {missing} need at least {2 * shots} support examples (2 · shots); "
                                 "give more, or lower shots")
        if steps < 1 or shots < 1:
            raise WorkbenchError(f"steps and shots must be ≥ 1; got steps={steps}, shots={shots}")
        rng = random.Random(seed)
        logits = self.logits.clone().requires_grad_(True)
        proj = list(vae.proj.parameters())
        phi = [logits, *proj]
        wanted = [p.requires_grad for p in proj]
        optimizer = torch.optim.Adam(phi, lr=outer_lr)
        rows = []
        bar = _progress(steps * len(self.tasks), progress)
        try:
            for p in proj:
                p.requires_grad_(True)
            for step in range(steps):
                outer = [torch.zeros_like(p) for p in phi]
                for task in self.tasks:
                    drawn = rng.sample(list(support[task]), 2 * shots)
                    start = [p.detach().clone() for p in phi]
                    for p in phi:
                        p.grad = None
                    s_loss = self.task_loss(torch.softmax(logits, 0), drawn[:shots])
                    with torch.no_grad():  # φ'_t = φ − α ∇ L_support
                        for p in phi:
                            p -= inner_lr * (p.grad if p.grad is not None else 0)
                            p.grad = None
                    q_loss = self.task_loss(torch.softmax(logits, 0), drawn[shots:])
                    with torch.no_grad():  # first order: the query gradient at φ'_t, then φ back
                        for o, p, s in zip(outer, phi, start, strict=True):
                            o += p.grad if p.grad is not None else 0
                            p.copy_(s)
                            p.grad = None
                    rows.append({"step": step, "task": task, "support_loss": float(s_loss),
                                 "query_loss": float(q_loss)})
                    bar(1)
                for o, p in zip(outer, phi, strict=True):
                    p.grad = o / len(self.tasks)
                optimizer.step()
                optimizer.zero_grad()
        finally:
            for p, w in zip(proj, wanted, strict=True):
                p.requires_grad_(w)
                p.grad = None
            bar(None)
        self.logits = logits.detach()
        self.meta_history = pd.DataFrame(rows)
        self.meta_options = {"steps": steps, "shots": shots, "inner_lr": inner_lr, "outer_lr": outer_lr,
                             "seed": seed, "method": "first-order MAML (reconstruction)"}
        return self.meta_history

    def _lineage(self) -> dict:
        return super()._lineage() | {
            "proj_dim": self.proj_dim,
            "reference": "Shao et al., ICM-Fusion, AAAI 2026, arXiv 2508.04153 "
                         "(reconstruction: no public code)"}

    # -- files -----------------------------------------------------------------------------------
    def extra_config(self) -> dict:
        return {"proj_dim": self.proj_dim, "meta": dict(self.meta_options)}

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        return {"fusion_logits": self.logits}

    def restore_extra(self, config: dict, tensors: dict[str, torch.Tensor]) -> None:
        logits = tensors.get("fusion_logits")
        if logits is None or logits.shape != (len(self.tasks),):
            raise WorkbenchError(f"this ICM-Fusion generator has no fusion logits for its "
                                 f"{len(self.tasks)} tasks; "
                                 "save it again from a fitted ICMFusion")
        self.logits = logits.float()
        self._fitted().requires_grad_(False)
        self.proj_dim = int(self._fitted().proj_dim)
        self.meta_options = dict(config.get("meta") or {})


def _progress(total: int, show: bool):
    """bar(k) advances a tqdm bar by k (bar(None) closes it); a no-op when ``show`` is False."""
    if not show:
        return lambda k: None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="meta-learning the fusion", leave=False)
    return lambda k: bar.close() if k is None else bar.update(k)
