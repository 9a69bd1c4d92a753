"""DMoERM: a double-layer mixture-of-experts reward model whose inner experts are adapters of the lab.

    outer, sparse (top-1):  c = argmax_c route(conversation)     an external routing function, or a
                            classifier head over the base model's last-token hidden state
    inner, dense, per category c with capability adapters e_1..e_C:
        h_i = last-token, last-layer hidden state of base + e_i       (B, H)   no grad, all frozen
        r = w2 · PReLU(W1 [h_1; …; h_C] + b1) + b2                      W1: C·H → H, w2: H → 1
    training the aggregator (phase 3): pairwise loss −log σ(r_chosen − r_rejected)

It is a model-level reward model, not a layer router: each expert is a full forward pass of the
lab's model with one adapter on (``lab.using(name)``), C passes per category, as the code's
``set_adapter`` loop. The last token is the last real one (``attention_mask.cumsum(1).argmax(1)``,
as the code); the last-layer state is ``hidden_states[-1]`` (after the final norm, as HF's LlamaModel).

Workbench deviations: the code's outer router is a separately fine-tuned LLM (Qwen-1.8B) with a
Linear(H → 5) head trained with CE; here it is any function ``batch -> category per sample`` or a
linear head over the *base* model's last-token state (``router_loss`` gives its CE). Phases 1–2
(the base RM and one LoRA + value head per capability) are ordinary training of the lab's adapters;
the value heads are not needed by phase 3 and are not modelled. Linear layers use nn.Linear's
default init, seeded; PReLU has one slope, init 0.25 (nn.PReLU()).

Reference: Quan, "DMoERM: Recipes of Mixture-of-Experts for Effective Reward Modeling" (arXiv
2403.01197); code github quanshr/DMoERM-v1 @ecdbdc7, innermoe/modeling.py (InnerMoERM),
router/modeling.py (Router).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import skip_init

from workbench.errors import WorkbenchError
from workbench.routing.factors import linear_weight


def pairwise_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Bradley–Terry preference loss: mean of −log σ(r_chosen − r_rejected)."""
    return -F.logsigmoid(r_chosen - r_rejected).mean()


@torch.no_grad()
def last_token_states(lab, batch, adapter: str | None) -> torch.Tensor:
    """(B, H) last-layer hidden state at each sample's last real token, with ``adapter`` on (None: base)."""
    batch = as_batch(lab, batch)
    with lab.using(adapter):
        out = lab.model(**batch, output_hidden_states=True)
    h = out.hidden_states[-1]  # (B, T, H)
    mask = batch.get("attention_mask")
    last = (mask.cumsum(1).argmax(1) if mask is not None
            else torch.full((h.shape[0],), h.shape[1] - 1, device=h.device))
    return h[torch.arange(h.shape[0], device=h.device), last]


def as_batch(lab, batch) -> dict[str, torch.Tensor]:
    """Text (one or a list) through the lab's tokenizer, or a dict of tensors as given."""
    return lab.encode(batch) if isinstance(batch, str | list) else dict(batch)


class InnerRM(nn.Module):
    """One category's dense mixture: its capability adapters and the MLP that aggregates their states."""

    def __init__(self, experts: Sequence[str], hidden: int, *, generator: torch.Generator):
        super().__init__()
        if not experts:
            raise WorkbenchError("a DMoERM category needs at least one capability adapter")
        self.experts = list(experts)
        self.W1 = _linear(len(self.experts) * hidden, hidden, generator)
        self.prelu = nn.PReLU()
        self.w2 = _linear(hidden, 1, generator)

    def features(self, lab, batch) -> torch.Tensor:
        """[h_1; …; h_C] (B, C·H): each expert's last-token state, frozen (no grad)."""
        return torch.cat([last_token_states(lab, batch, e) for e in self.experts], dim=-1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """r (B,) from the concatenated expert states."""
        return self.w2(self.prelu(self.W1(features))).squeeze(-1)


class DMoERM(nn.Module):
    """The reward model: ``categories`` maps each category to its capability adapters (lab names).

    Example:
        >>> rm = DMoERM(lab, {"chat": ["empathy", "fluency"], "qa": ["facts", "clarity"]},
        ...             router=lambda batch: my_classifier(batch))
        >>> rewards = rm(lab.encode(["...", "..."]))          # (B,), one category per sample
        >>> loss = pairwise_loss(rm(chosen), rm(rejected))

    Args:
        router: ``batch -> category per sample`` (names or indices), the external outer router; None
            gives a trainable linear head over the base model's last-token state (``router_loss``).
        seed: seeds the initialisation of the MLPs and the head.
    """

    def __init__(self, lab, categories: dict[str, Sequence[str]], *,
                 router: Callable | None = None, seed: int = 0):
        super().__init__()
        if not categories:
            raise WorkbenchError("DMoERM needs categories={name: [capability adapters]}, at least one")
        known = {*lab.adapters, *lab.routers}
        missing = sorted({e for experts in categories.values() for e in experts} - known)
        if missing:
            raise WorkbenchError(f"DMoERM experts {missing} are not in this lab; it has "
                                 f"{sorted(known) or '(none)'}: add or load them first")
        self.lab = lab
        self.categories = list(categories)
        hidden = lab.model.config.hidden_size
        g = torch.Generator().manual_seed(seed)
        self.inner = nn.ModuleDict({c: InnerRM(e, hidden, generator=g) for c, e in categories.items()})
        self.router = router
        self.head = _linear(hidden, len(self.categories), g) if router is None else None
        self.to(lab.device)

    def route_logits(self, batch) -> torch.Tensor:
        """(B, n_categories) logits of the built-in head over the base model's last-token state."""
        if self.head is None:
            raise WorkbenchError("this DMoERM routes with an external function; it has no head to train")
        return self.head(last_token_states(self.lab, batch, None))

    def router_loss(self, batch, categories: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the head against each sample's category index (the code's router loss)."""
        return F.cross_entropy(self.route_logits(batch), categories.to(self.lab.device))

    @torch.no_grad()
    def route(self, batch) -> torch.Tensor:
        """(B,) category index per sample: top-1 of the head, or the external router's answer."""
        batch = as_batch(self.lab, batch)
        if len(self.categories) == 1 and self.router is None:
            return torch.zeros(batch["input_ids"].shape[0], dtype=torch.long, device=self.lab.device)
        if self.router is None:
            return self.route_logits(batch).argmax(-1)
        chosen = [self._index(c) for c in self.router(batch)]
        return torch.tensor(chosen, dtype=torch.long, device=self.lab.device)

    def forward(self, batch) -> torch.Tensor:
        """(B,) reward: each sample scored by the inner reward model of its routed category."""
        batch = as_batch(self.lab, batch)
        route = self.route(batch)
        rewards = torch.zeros(route.shape[0], device=self.lab.device)
        for i, name in enumerate(self.categories):
            rows = (route == i).nonzero().squeeze(-1)
            if len(rows):
                part = {k: v[rows] for k, v in batch.items()}
                inner = self.inner[name]
                rewards = rewards.index_put((rows,), inner(inner.features(self.lab, part)))
        return rewards

    def _index(self, category) -> int:
        if isinstance(category, str):
            if category not in self.categories:
                raise WorkbenchError(f"the router chose category {category!r}; DMoERM has {self.categories}")
            return self.categories.index(category)
        i = int(category)
        if not 0 <= i < len(self.categories):
            raise WorkbenchError(f"the router chose category {i}; DMoERM has {len(self.categories)} "
                                 f"({self.categories})")
        return i


def _linear(in_f: int, out_f: int, generator: torch.Generator) -> nn.Linear:
    """nn.Linear with its default init (weight and bias U(±1/√in)), from ``generator``."""
    layer = skip_init(nn.Linear, in_f, out_f)
    layer.weight = linear_weight(out_f, in_f, generator)
    bound = 1.0 / math.sqrt(in_f)
    layer.bias = nn.Parameter((torch.rand(out_f, generator=generator) * 2 - 1) * bound)
    return layer
