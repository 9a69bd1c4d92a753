"""AdaMerging's loss: the entropy of the merged model's predictions on unlabeled inputs, differentiable in
the merge coefficients.

    loss = EntropyLoss(lab, ["arithmetic", "topic"], prompts, layerwise=True)
    lam = loss.initial(0.3)                       # (L, K) layer-wise or (K,) task-wise coefficients
    value, grad = loss.value_and_grad(lam)        # Σ_tasks mean_prompts H(p(next token | prompt))

The merged model is the base plus Σₖ λₖ·ΔWₖ (task arithmetic, the one merge that is linear in its
coefficients), with one λ per adapter (task-wise) or per adapter and layer (layer-wise). It is applied by
forward hooks on the lab's adapter layers: each adds Σₖ λ[layer, k]·sₖBₖAₖx, computed by the layer's own
``update`` (the adapters are not combined in the lab, and nothing is used: ``lab.use(None)`` inside).
The hooks are removed in ``finally``. Gradients flow to λ only (``torch.autograd.grad``); the model's
parameters collect none.

The prediction whose entropy is taken is the next token at the end of each chat prompt, the first
answer token: an LM's analogue of AdaMerging's class prediction on an unlabeled test image.

Reference: Yang et al., "AdaMerging: Adaptive Model Merging for Multi-Task Learning", ICLR 2024
(FusionBench's ``adamerging`` re-implementation). Deviations: the paper's models are vision classifiers
and its entropy is over the classes; here it is over the vocabulary at the first answer token. The
paper runs Adam (lr 1e-3) for 500 steps from λ = 0.3 and clips λ to [0, 1]; the searcher steps fewer
times at a larger rate (CPU scale) and clips to the space's weight box.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import contextmanager

import torch

from workbench.errors import WorkbenchError
from workbench.naming import split_module_name
from workbench.tasks import batching
from workbench.tasks.encoding import left_pad, pad_id


class EntropyLoss:
    """Σ over tasks of the mean next-token entropy at the end of each prompt, under the λ-weighted sum.

    Args:
        lab: the ``Workbench`` holding the adapters.
        names: the adapters merged (K of them), in order.
        prompts: task -> token-id lists of its unlabeled prompts.
        layerwise: one coefficient per (layer, adapter) (L, K); False: one per adapter (K,).
        batch_size: prompts per forward pass.
    """

    def __init__(self, lab, names: Sequence[str], prompts: Mapping[str, Sequence[Sequence[int]]], *,
                 layerwise: bool = False, batch_size: int = 8) -> None:
        for n in names:
            lab._get(n)
        if not prompts or any(not p for p in prompts.values()):
            raise WorkbenchError("EntropyLoss needs at least one prompt per task")
        self.lab, self.names, self.layerwise, self.batch_size = lab, list(names), layerwise, batch_size
        self.prompts = {t: [list(p) for p in ps] for t, ps in prompts.items()}
        self.paths = [p for p, layer in lab.layers.items() if all(n in layer.held for n in self.names)]
        if not self.paths:
            raise WorkbenchError(f"no module of the lab holds all of {self.names}; they share no target")
        self.layers = sorted({split_module_name(p)[0] for p in self.paths}, key=lambda x: (x is None, x or 0))
        self._row = {p: self.layers.index(split_module_name(p)[0]) for p in self.paths}

    @property
    def shape(self) -> tuple[int, ...]:
        """(L, K) layer-wise, (K,) task-wise."""
        return (len(self.layers), len(self.names)) if self.layerwise else (len(self.names),)

    def initial(self, value: float = 0.3) -> torch.Tensor:
        """Every coefficient at ``value`` (AdaMerging starts at 0.3)."""
        return torch.full(self.shape, float(value), dtype=torch.float32)

    @contextmanager
    def _applied(self, lam: torch.Tensor):
        handles = []

        def hook_for(path):
            row = self._row[path]

            def hook(module, args, out):
                x = args[0]
                coef = lam[row] if self.layerwise else lam  # (K,)
                delta = sum(coef[k] * module.update(n, x).to(out.dtype) for k, n in enumerate(self.names))
                return out + delta
            return hook

        try:
            for p in self.paths:
                handles.append(self.lab.layers[p].register_forward_hook(hook_for(p)))
            yield
        finally:
            for h in handles:
                h.remove()

    def loss(self, lam: torch.Tensor) -> torch.Tensor:
        """The scalar loss at ``lam`` (differentiable in ``lam``)."""
        if tuple(lam.shape) != self.shape:
            raise WorkbenchError(f"coefficients of shape {tuple(lam.shape)}; this loss takes {self.shape}")
        lab = self.lab
        pid = pad_id(lab.tokenizer)
        positions = batching.accepts(lab.model, "position_ids")
        total = torch.zeros((), dtype=torch.float32)
        with lab.session(None, train=False), self._applied(lam):
            for prompts in self.prompts.values():
                task_sum = torch.zeros((), dtype=torch.float32)
                for i in range(0, len(prompts), self.batch_size):
                    batch = left_pad(prompts[i:i + self.batch_size], pid)
                    if not positions:
                        batch.pop("position_ids")
                    batch = {k: v.to(lab.device) for k, v in batch.items()}
                    logits = lab.model(**batch).logits[:, -1, :].float()  # (B, V): the first answer token
                    logp = torch.log_softmax(logits, -1)
                    task_sum = task_sum + (-(logp.exp() * logp).sum(-1)).sum().cpu()  # Σ_B H
                total = total + task_sum / len(prompts)
        return total

    def value_and_grad(self, lam: torch.Tensor) -> tuple[float, torch.Tensor]:
        """(loss, ∂loss/∂λ) at ``lam``; the model's parameters get no gradient."""
        lam = lam.detach().clone().requires_grad_(True)
        value = self.loss(lam)
        (grad,) = torch.autograd.grad(value, [lam])
        return float(value.detach()), grad.detach()

    def value(self, lam: torch.Tensor) -> float:
        with torch.no_grad():
            return float(self.loss(lam.detach()))

    def weights(self, lam: torch.Tensor) -> tuple[dict[str, float], dict[int, dict[str, float]] | None]:
        """(adapter -> weight, layer -> {adapter: weight} or None) of coefficients ``lam``."""
        lam = lam.detach()
        if not self.layerwise:
            return {n: float(lam[k]) for k, n in enumerate(self.names)}, None
        means = {n: float(lam[:, k].mean()) for k, n in enumerate(self.names)}
        layers = {int(layer): {n: float(lam[i, k]) for k, n in enumerate(self.names)}
                  for i, layer in enumerate(self.layers) if layer is not None}
        return means, layers
