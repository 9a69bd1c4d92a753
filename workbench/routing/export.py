"""export: any exportable router as one static LoRA adapter, exact where the math allows, and its cost.

For each routed module, a ``StaticForm`` (``static_form.EXPORTS``, one per mechanism) turns the router
into LoRA factors ΔW = B·A at a per-token statistic of its decisions (gate weights, rank masks,
scales ...):

- exact: where the router's configuration makes that statistic the same for every token (FlyLoRA with
  k = r, one expert, TARA's unmasked modules ...), the static form IS the router's update;
- averaged: otherwise the statistic is averaged over the real tokens of ``prompts`` (run in eval mode,
  with ``context`` in the routing context), which gives the token average of the router's own per-token
  update matrices (as ``routing.freeze`` does for bank routers), and the report says how far the
  adapter's logits are from the router's on those prompts.

The factors are stored as they come (no SVD: exact), with alpha = rank so the scale is 1; the adapter is
a plain one: it saves in PEFT format and loads in ``peft`` with the logits the lab gives it. A router's
buffers that move on eval forwards (FlyLoRA's bias with ``update="every_forward"``) are put back after
every forward, so exporting leaves the router as it was and every prompt sees the same router.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pandas as pd
import torch

from workbench.adapters import Adapter
from workbench.adapters.adapter import LoraFactors
from workbench.errors import WorkbenchError
from workbench.hooks import hooks, module_paths
from workbench.routing.base import ROUTERS
from workbench.routing.context import routing_context
from workbench.routing.freeze import _batches, compare
from workbench.routing.static_form import EXPORTS

Context = Mapping | Callable[[dict], Mapping] | None


def export(lab, routed_name: str, prompts=None, *, name: str | None = None, context: Context = None,
           batch_size: int = 8) -> tuple[Adapter, dict]:
    """Export router ``routed_name`` as a static adapter ``name`` (added to the lab).

    Args:
        prompts: texts or a dict of tensors (``input_ids``, ``attention_mask``): the tokens to average
            the routing over (needed unless the export is exact) and to measure the distance on.
        name: the adapter's name (default ``<routed_name>_export``).
        context: what the router reads from the routing context (token types, masks, scales, context
            vectors): a dict, or a function batch -> dict when ``prompts`` run in several batches.
            The batch's ``attention_mask`` is added unless given.

    Returns:
        (the adapter, report): ``exact`` (static by configuration at every module), ``tokens``, and,
        when prompts are given, ``rel_logit_error`` ‖ℓ_export − ℓ_router‖ / ‖ℓ_router‖ over real
        tokens, ``kl`` mean KL(p_router ‖ p_export), ``top1_agreement``; ``statistics``: a frame
        ``module, expert, value`` of what the factors were built at.
    """
    routed = _exportable(lab, routed_name)
    form = EXPORTS.get(routed.mechanism)
    name = name or f"{routed_name}_export"
    constants = {p: form.constant(r) for p, r in routed.modules.items()}
    exact = all(c is not None for c in constants.values())
    if prompts is None and not exact:
        raise WorkbenchError(
            f"router {routed_name!r} ({routed.mechanism}) decides per token, so its export is the static "
            f"merge at its average decisions over a prompt set: pass prompts=[texts] (or a dict of token "
            f"ids). It exports exactly, without prompts, when {form.exact_when}")
    batches = [] if prompts is None else _batches(lab, prompts, batch_size)
    kept = _Kept(routed)  # buffers that move on eval forwards go back after each one
    try:
        with lab.session(train=False):
            stats = dict(constants)
            if not exact:
                stats.update(mean_statistics(lab, routed_name, batches, context, after=kept.restore,
                                             only=[p for p, c in constants.items() if c is None]))
            adapter = lab.add_adapter(_adapter(lab, routed, stats, name, exact))
            report = {"exact": exact, "tokens": 0, "rel_logit_error": None, "kl": None,
                      "top1_agreement": None}
            if batches:
                report |= distance(lab, routed_name, name, batches, context, after=kept.restore)
    finally:
        kept.restore()
    adapter.lineage["distance"] = {k: v for k, v in report.items() if k != "exact"}
    rows = [{"module": p, "expert": i, "value": float(v)} for p, s in stats.items()
            for i, v in enumerate(s.flatten().tolist())]
    return adapter, report | {"statistics": pd.DataFrame(rows, columns=["module", "expert", "value"])}


def _exportable(lab, routed_name: str):
    if routed_name not in lab.routers:
        raise WorkbenchError(f"no router {routed_name!r} in this lab; it has {list(lab.routers) or '(none)'}")
    routed = lab.routers[routed_name]
    if not routed.has("exportable") or routed.mechanism not in EXPORTS:
        raise WorkbenchError(
            f"router {routed_name!r} ({routed.mechanism}) has no static form, so it cannot be exported as a "
            f"LoRA adapter: its mechanism does not declare the 'exportable' flag with a StaticForm in "
            f"workbench.routing.static_forms. Use it as a router (lab.use), or add its static form; "
            f"exportable: {', '.join(ROUTERS.names(flag='exportable'))}")
    return routed


class _Kept:
    """A copy of a router's state (parameters and buffers); ``restore`` puts it back where it moved."""

    def __init__(self, routed):
        self.routed = routed
        self.state = {k: v.detach().clone() for k, v in routed.state_dict().items()}

    @torch.no_grad()
    def restore(self) -> None:
        for k, v in self.routed.state_dict().items():
            if not torch.equal(v, self.state[k]):
                v.copy_(self.state[k])


def _forward(lab, batch: dict, context: Context, after: Callable[[], None] | None = None):
    """lab.model(**batch) inside the batch's routing context, then ``after()``."""
    given = dict(context(batch) if callable(context) else (context or {}))
    given.setdefault("attention_mask", batch["attention_mask"])
    with routing_context(**given):
        out = lab.model(**batch)
    if after is not None:
        after()
    return out


@torch.no_grad()
def mean_statistics(lab, routed_name: str, batches: list[dict], context: Context = None, *,
                    only: list[str] | None = None, after: Callable[[], None] | None = None
                    ) -> dict[str, torch.Tensor]:
    """Module path -> the mean of its router's per-token statistic over the real tokens of ``batches``."""
    routed = lab.routers[routed_name]
    form = EXPORTS.get(routed.mechanism)
    paths = list(routed.modules) if only is None else only
    hooked = module_paths(lab.model, [getattr(routed.modules[p], form.hook) for p in paths])
    router_of = dict(zip(hooked, paths, strict=True))
    sums: dict[str, torch.Tensor] = {}
    mask: torch.Tensor | None = None

    def take(hook_path: str, _module, _inputs, carried) -> None:
        stat = form.statistic(carried).float()  # (B, T, …)
        keep = mask.to(stat.device).reshape(*stat.shape[:2], *([1] * (stat.dim() - 2)))
        path = router_of[hook_path]
        sums[path] = sums.get(path, 0) + (stat * keep).sum((0, 1)).cpu()

    n_tokens = 0
    with lab.using(routed_name), hooks(lab.model, {h: take for h in hooked}):
        for batch in batches:
            mask = batch["attention_mask"].float()
            n_tokens += int(mask.sum())
            _forward(lab, batch, context, after)
    if not n_tokens:
        raise WorkbenchError("export needs at least one real token in prompts")
    missing = [p for p in paths if p not in sums]
    if missing:
        raise WorkbenchError(f"router {routed_name!r} never ran at {missing[:3]} on these prompts; "
                             "give prompts that reach every routed module")
    return {p: sums[p] / n_tokens for p in paths}


def distance(lab, routed_name: str, adapter_name: str, batches: list[dict], context: Context = None, *,
             after: Callable[[], None] | None = None) -> dict:
    """How far ``adapter_name``'s logits are from ``routed_name``'s on ``batches`` (real tokens only):
    ``freeze.compare`` with each forward inside the batch's routing context."""
    def forward(batch: dict):
        return _forward(lab, batch, context, after)

    return compare(lab, routed_name, adapter_name, batches, forward=forward)


def _adapter(lab, routed, stats: dict[str, torch.Tensor], name: str, exact: bool) -> Adapter:
    form = EXPORTS.get(routed.mechanism)
    modules = {}
    for path, router in routed.modules.items():
        for module, (A, B) in form.factors(router, path, stats[path]).items():
            modules[module] = LoraFactors(A, B, float(A.shape[0]))  # alpha = rank: scale 1
    if not modules:
        raise WorkbenchError(f"router {routed.name!r} has no update at any module to export")
    return Adapter(name, modules, scaling="standard", base_fingerprint=lab.fingerprint,
                   lineage={"method": "export", "router": routed.name, "mechanism": routed.mechanism,
                            "params": {k: v for k, v in routed.params.items() if k != "training"},
                            "exact": exact})
