"""Router: the base of every routed mechanism at one module, and the registry that names them.

A router lives inside the ``LoraLayer`` that wraps a linear module (``level = "linear"``: it returns
the update Δ(x) added to the base output), or inside a ``RoutedBlock`` that wraps a whole block such
as an FFN (``level = "block"``: it returns the block's output). ``Workbench.add_router`` builds one
router per target module and names the set; ``lab.use(name)`` turns it on like an adapter.

Writing a mechanism (one file in ``mechanisms/``, found by ``ROUTERS``' package scan)::

    @ROUTERS.register("my-router", bounds={"r": (1, None), "k": (1, None)}, flags=("needs_task_labels",))
    class MyRouter(Router):
        '''One line: what it routes and how (the registry's summary).

        Args:
            r: ...             (every keyword of __init__ but generator: documented, bounded)
            k: ...
        '''
        reference = "Author et al., Title (arXiv ...)"
        def __init__(self, in_features, out_features, *, generator, r=8, k=2): ...
        def forward(self, x, base):            # x (B, T, in)  ->  Δ (B, T, out)
            ...
            self.emit(scores, weights, selected)   # the RoutingRecord of this forward
            self.add_aux("load_balance", 0.01, logits=scores, k=k)   # training only
            return delta
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from workbench.hooks import HookPoint
from workbench.hooks.routing_record import RoutingRecord
from workbench.registry import Registry
from workbench.routing.rows import router_rows


@dataclass
class AuxTerm:
    """One queued auxiliary loss term: the ``AUX_LOSSES`` name, its coefficient, what it reads."""

    loss: str
    coef: float
    payload: dict = field(default_factory=dict)


class Router(nn.Module):
    """Base class. Subclasses have their own docstring (summary, ``Args:``), set ``reference`` and
    implement ``__init__`` and ``forward``; capabilities are ``ROUTERS`` flags (``FLAGS``).

    Class attributes:
        level: ``"linear"`` (forward(x, base) returns Δ) or ``"block"`` (forward(x, block) returns
            the block's output).
        default_targets: what ``add_router`` wraps when no targets are given.
        reference: the paper (and code) the mechanism follows; deviations are noted in its file.
        per_row: empty when the router can serve some rows of a mixed batch (its decision for a row
            depends on that row alone in inference; ``workbench.routing.rows``), else the reason why
            not, which the refusal names.
        full_sequence: the forward needs the whole sequence at once (no incremental decoding with
            a KV cache); ``lab.chat`` then generates with ``use_cache=False``.
    """

    level: ClassVar[str] = "linear"
    default_targets: ClassVar[str | list[str]] = "attention"
    reference: ClassVar[str] = ""
    full_sequence: ClassVar[bool] = False
    per_row: ClassVar[str] = ""  # why it cannot serve only some rows of a mixed batch ("": it can)

    def __init__(self) -> None:
        super().__init__()
        self.hook_route = HookPoint()
        self.owner = ""  # the name of the routed adapter this router belongs to
        self.pending_aux: list[AuxTerm] = []
        self.register_forward_pre_hook(_clear_aux)  # terms of a forward nobody collected do not pile up

    @classmethod
    def targets_for(cls, lab, **params) -> str | list[str]:
        """What ``add_router`` wraps when no targets are given (default: ``default_targets``)."""
        return cls.default_targets

    @classmethod
    def build(cls, *, path: str, module: nn.Module, lab, generator: torch.Generator, **params) -> Router:
        """Make the router of one module: ``module`` is the ``LoraLayer`` (linear level) or the block.

        Override to read more, e.g. a bank of the lab's adapters at ``path``.
        """
        return cls(module.in_features, module.out_features, generator=generator, **params)

    def emit(self, scores: torch.Tensor, weights: torch.Tensor, selected: torch.Tensor | None = None,
             bias: torch.Tensor | None = None) -> None:
        """Hand this forward's decision to ``hook_route`` (recorded only when someone listens)."""
        if self.hook_route._forward_hooks:
            self.hook_route(RoutingRecord(scores, weights, selected,
                                          None if bias is None else bias.detach().clone()))

    def serve_rows(self, name: str, x: torch.Tensor, idx: torch.Tensor, base: nn.Module) -> torch.Tensor:
        """Δ of this router on rows ``idx`` of a mixed batch x (B, T, in), as if run alone: (n, T, out)."""
        return router_rows(self, name, x, idx, base)

    def add_aux(self, loss: str, coef: float, **payload) -> None:
        """Queue an auxiliary loss term (training forwards only; ``workbench.routing.aux_loss`` sums)."""
        if self.training and coef:
            self.pending_aux.append(AuxTerm(loss, float(coef), payload))

    def trainable(self) -> list[nn.Parameter]:
        """The parameters an optimizer should update (frozen banks and random projections excluded)."""
        return [p for p in self.parameters() if p.requires_grad]


def _clear_aux(router: Router, args) -> None:
    """Each forward starts with no pending auxiliary terms (the trainer collects them after it)."""
    router.pending_aux.clear()


INIT_NAMES = ("lora", "gaussian", "random")  # the factor initializations a router takes (adapters.INITS)

# Capability flags (``ROUTERS.has(mechanism, flag)``, ``Routed.has(flag)``); call sites read these,
# never a mechanism's name. ``needs_*``: what the routing context must carry (``routing_context``).
FLAGS = {
    "bank": "routes over a bank of the lab's existing adapters (``bank=[names]``)",
    "freezable": "``routing.freeze`` turns it into one static adapter (its bank at the average gate weights)",
    "exportable": "``lab.export_router`` writes it as one static LoRA adapter (``routing.export``): "
                  "exactly where its configuration makes the update input-independent, else at its "
                  "decisions averaged over prompts, with the measured distance",
    "needs_task_labels": "reads each example's task id (``task``) from the routing context in training",
    "needs_token_types": "routes each token by its type id (``token_types``), e.g. vision vs language",
    "needs_prompt_scale": "reads its per-channel scale σ from the routing context (``prompt_scale``)",
    "needs_context_vector": "reads a per-example context vector (``context``)",
    "needs_token_masks": "reads per-adapter token masks (``token_masks``)",
}

ROUTERS: Registry[type[Router]] = Registry("router", base=Router, package="workbench.routing.mechanisms",
                                           flags=FLAGS, skip={"generator", "factors"})
"""name -> Router subclass; params are its ``__init__`` keywords but ``generator`` and ``factors``,
which ``build`` passes (a bank router's factors come from the lab's adapters)."""
