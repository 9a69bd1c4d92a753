"""StaticForm: how one routed mechanism becomes a plain LoRA adapter, and the registry of them.

Every router at a linear module adds an update Δ(x) = M(g(x)) x whose map M is linear in what the
router decides per token, g (gate weights, rank masks, per-channel scales ...). The static form of a
router is M(ḡ) with ḡ the token average of g over a prompt set: since M is linear in g, M(ḡ) is the
token average of the router's own per-token update matrices (the data-averaged static merge, as
``routing.freeze`` does for bank routers). Where the configuration makes g the same for every token
(``constant``), M(g) is the router's update exactly and no prompts are needed.

A ``StaticForm`` says, for one mechanism:

- ``statistic``: what to average per token, read from a hook of the router (``hook``, default the
  RoutingRecord of ``hook_route``): a tensor (B, T, …);
- ``constant``: that statistic when the configuration makes it input-independent, else None;
- ``factors``: (router, path, mean statistic) -> {module path: (A (r, in), B (out, r))} with every
  scale folded into B, so that ΔW = B·A (the export stores alpha = r, scale 1).

A mechanism opts in with the ``exportable`` flag of ``ROUTERS`` and one registration here
(``EXPORTS.register(mechanism, summary=...)(StaticForm(...))``, a file in ``static_forms/``);
a test checks that the flag and the registrations agree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from workbench.registry import Registry

Factors = dict[str, tuple[torch.Tensor, torch.Tensor]]  # module path -> (A (r, in), B (out, r))


def record_weights(record: Any) -> torch.Tensor:
    """The default statistic: the RoutingRecord's weights (B, T, E) as used by the forward."""
    return record.weights


def no_constant(router: Any) -> None:
    """The default: the statistic depends on the input in every configuration."""
    return None


@dataclass(frozen=True)
class StaticForm:
    """How routers of one mechanism become static LoRA factors (see the module docstring).

    Attributes:
        factors: (router, path, mean statistic) -> {module path: (A (r, in), B (out, r))}, scale folded.
        constant: router -> the statistic every token has, where its configuration fixes it; else None.
        statistic: what the hook carries -> the per-token statistic (B, T, …) to average.
        hook: the router's HookPoint attribute to listen to.
        exact_when: the configurations that export exactly, in words (the docs' table).
    """

    factors: Callable[[Any, str, torch.Tensor], Factors]
    constant: Callable[[Any], torch.Tensor | None] = no_constant
    statistic: Callable[[Any], torch.Tensor] = record_weights
    hook: str = "hook_route"
    exact_when: str = "never: its gates always depend on the input"


EXPORTS: Registry[StaticForm] = Registry("router export", base=StaticForm,
                                         package="workbench.routing.static_forms")
"""mechanism name (``ROUTERS``) -> its ``StaticForm``."""


def reference_of(mechanism: str) -> str:
    """The reference of a static form: its mechanism's paper (the static form itself is this workbench's)."""
    from workbench.routing.base import ROUTERS  # at registration time: the mechanisms are scanned then

    return f"{ROUTERS.info(mechanism).reference}; static form: workbench.routing.static_forms"


def register(mechanism: str, summary: str, form: StaticForm) -> StaticForm:
    """``EXPORTS.register`` for a mechanism's static form, its reference the mechanism's."""
    return EXPORTS.register(mechanism, summary=summary, reference=reference_of(mechanism))(form)


def concat(parts: Iterable[tuple[torch.Tensor, torch.Tensor, float | torch.Tensor]]) -> tuple[torch.Tensor,
                                                                                               torch.Tensor]:
    """Σ_j w_j B_j A_j as one pair of factors: A = [A_1; …] (Σr_j, in), B = [w_1 B_1, …] (out, Σr_j).

    Parts with w_j = 0 are left out (exact); when every weight is zero, one zero rank is kept so the
    module still exists (its update is zero).
    """
    parts = [(A.detach().float().cpu(), B.detach().float().cpu(), float(w)) for A, B, w in parts]
    kept = [(A, w * B) for A, B, w in parts if w != 0] or [(parts[0][0][:1], 0 * parts[0][1][:, :1])]
    return torch.cat([a for a, _ in kept]).clone(), torch.cat([b for _, b in kept], dim=1).clone()


def ranks_weighted(A: torch.Tensor, B: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """B diag(w) A as factors (rank experts): the ranks with w_i = 0 are left out (one kept if all are)."""
    A, B, w = A.detach().float().cpu(), B.detach().float().cpu(), w.detach().float().cpu()
    keep = w != 0
    if not keep.any():
        keep[0] = True
    return A[keep].clone(), (B * w)[:, keep].clone()
