"""freeze: turn a router over a bank of whole adapters into one static adapter, and say what it costs.

For each routed module, the gate weights are averaged over the real tokens of a prompt set,
w̄_j = mean_t w_j(t), and the bank is merged with them:

    ΔW = Σ_j w̄_j · s_j · B_j A_j

stored exactly as a concatenation (no SVD, no loss): A = [A_1; …; A_L] (Σr_j, in),
B = [w̄_1 s_1 B_1, …, w̄_L s_L B_L] (out, Σr_j), alpha = Σr_j so the standard scale α/r is 1.
Adapters with w̄_j = 0 are left out (exact). The result is a plain adapter added to the lab (it can be
merged into W0, saved as PEFT, compared), and a report of how far its outputs are from the routed
model's on the same prompts: the routed model's per-token choice becomes one average choice.

A freezable mechanism declares the ``freezable`` flag (``ROUTERS.has(m, "freezable")``); its routers
route over whole adapters: ``bank`` (the adapters' names), ``bank_factors()`` -> [(A_j, B_j, s_j)],
and RoutingRecord weights (B, T, L) in bank order (MeteoRA).
The factors are the router's own copies (trained ones too, with MeteoRA's ``train_loras=True``).
The routed model runs in eval mode (no dropout) for both the averaging and the report.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import torch
import torch.nn.functional as F

from workbench.adapters import Adapter
from workbench.adapters.adapter import LoraFactors
from workbench.errors import WorkbenchError
from workbench.hooks import hooks, module_paths
from workbench.routing.base import ROUTERS


def freeze(lab, routed_name: str, prompts, *, name: str | None = None,
           batch_size: int = 8) -> tuple[Adapter, dict]:
    """Freeze router ``routed_name`` into a static adapter ``name`` (added to the lab).

    Args:
        prompts: texts (a list, needs the lab's tokenizer) or a dict of tensors (``input_ids``,
            ``attention_mask``): the tokens whose average routing the frozen adapter keeps.
        name: the new adapter's name (default ``<routed_name>_frozen``).

    Returns:
        (the adapter, report): ``rel_logit_error`` ‖ℓ_frozen − ℓ_routed‖ / ‖ℓ_routed‖ over real tokens,
        ``kl`` mean KL(p_routed ‖ p_frozen) of next-token distributions, ``top1_agreement``, ``tokens``,
        and ``weights``: a frame ``module, adapter, weight`` of the average gate weights.
    """
    if routed_name not in lab.routers:
        raise WorkbenchError(f"no router {routed_name!r} in this lab; it has {list(lab.routers) or '(none)'}")
    routed = lab.routers[routed_name]
    if not routed.has("freezable"):
        raise WorkbenchError(
            f"router {routed_name!r} ({routed.mechanism}) does not route over a bank of whole adapters, so "
            f"it cannot be frozen into one; freeze works for the mechanisms flagged 'freezable': "
            f"{', '.join(ROUTERS.names(flag='freezable'))}"
        )
    name = name or f"{routed_name}_frozen"
    batches = _batches(lab, prompts, batch_size)
    with lab.session(train=False):
        weights = average_weights(lab, routed_name, batches)
        adapter = lab.add_adapter(_merged(lab, routed, weights, name))
        report = compare(lab, routed_name, name, batches)
    rows = [{"module": p, "adapter": a, "weight": float(w)}
            for p, ws in weights.items() for a, w in zip(routed.modules[p].bank, ws, strict=True)]
    return adapter, report | {"weights": pd.DataFrame(rows)}


@torch.no_grad()
def average_weights(lab, routed_name: str, batches: list[dict]) -> dict[str, torch.Tensor]:
    """Module path -> w̄ (L,): each router's gate weights averaged over the real tokens of ``batches``."""
    routers = lab.routers[routed_name].modules
    sums = {p: 0.0 for p in routers}
    mask: torch.Tensor | None = None

    hook_paths = module_paths(lab.model, [r.hook_route for r in routers.values()])
    router_of = dict(zip(hook_paths, routers, strict=True))  # hook_route path -> router path

    def take(hook_path: str, _module, _inputs, record) -> None:
        w = record.weights.float()  # (B, T, L)
        keep = mask if mask is not None else torch.ones(w.shape[:2], device=w.device)
        path = router_of[hook_path]
        sums[path] = sums[path] + (w * keep[..., None].to(w.device)).sum((0, 1))

    n_tokens = 0
    with lab.using(routed_name), hooks(lab.model, dict.fromkeys(hook_paths, take)):
        for batch in batches:
            mask = batch["attention_mask"].float()
            n_tokens += int(mask.sum())
            lab.model(**batch)
    if not n_tokens:
        raise WorkbenchError("freeze needs at least one real token in prompts")
    missing = [p for p, s in sums.items() if not torch.is_tensor(s)]
    if missing:
        raise WorkbenchError(f"router {routed_name!r} never ran at {missing[:3]} on these prompts")
    return {p: s / n_tokens for p, s in sums.items()}


@torch.no_grad()
def compare(lab, routed_name: str, adapter_name: str, batches: list[dict], *,
            forward: Callable[[dict], object] | None = None) -> dict:
    """How far ``adapter_name``'s outputs are from ``routed_name``'s on ``batches`` (real tokens only).

    ``forward(batch)`` runs the model on a batch (default ``lab.model(**batch)``); the export passes one
    that sets the routing context first.
    """
    forward = forward or (lambda batch: lab.model(**batch))
    diff2 = ref2 = kl = agree = 0.0
    n = 0
    for batch in batches:
        keep = batch["attention_mask"].bool()
        outs = []
        for used in (routed_name, adapter_name):
            with lab.using(used):
                out = forward(batch)
            outs.append((out.logits if hasattr(out, "logits") else out.last_hidden_state)[keep].float())
        routed, frozen = outs  # (N, V)
        diff2 += float(((frozen - routed) ** 2).sum())
        ref2 += float((routed ** 2).sum())
        log_r, log_f = routed.log_softmax(-1), frozen.log_softmax(-1)
        kl += float(F.kl_div(log_f, log_r, log_target=True, reduction="sum"))
        agree += float((routed.argmax(-1) == frozen.argmax(-1)).sum())
        n += routed.shape[0]
    return {"rel_logit_error": (diff2 / max(ref2, 1e-30)) ** 0.5, "kl": kl / n,
            "top1_agreement": agree / n, "tokens": n}


def _merged(lab, routed, weights: dict[str, torch.Tensor], name: str) -> Adapter:
    modules = {}
    for path, router in routed.modules.items():
        parts = [(A, w * s * B) for (A, B, s), w in zip(router.bank_factors(), weights[path].tolist(),
                                                        strict=True) if w != 0]
        A = torch.cat([a.float().cpu() for a, _ in parts])  # (Σr_j, in)
        B = torch.cat([b.float().cpu() for _, b in parts], dim=1)  # (out, Σr_j)
        modules[path] = LoraFactors(A.clone(), B.clone(), float(A.shape[0]))  # alpha = rank: scale 1
    return Adapter(name, modules, scaling="standard", base_fingerprint=lab.fingerprint,
                   lineage={"method": "freeze", "router": routed.name, "mechanism": routed.mechanism,
                            "weights": {p: w.tolist() for p, w in weights.items()}})


def _batches(lab, prompts, batch_size: int) -> list[dict]:
    if isinstance(prompts, dict):
        batch = {k: v.to(lab.device) for k, v in prompts.items()}
        batch.setdefault("attention_mask", torch.ones_like(batch["input_ids"]))
        return [batch]
    texts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not texts:
        raise WorkbenchError("freeze needs prompts: a list of texts or a dict with input_ids")
    return [lab.encode(texts[i:i + batch_size]) for i in range(0, len(texts), batch_size)]
