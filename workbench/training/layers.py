"""Which layers get an adapter: LayRA's first and last layers, Flexora's searched layer gates.

Both return module paths that ``targets=`` accepts (``lab.new_adapter``, ``MultiTaskTrainer``).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from workbench.adapters import resolve_targets
from workbench.errors import WorkbenchError
from workbench.naming import split_module_name


def layer_paths(lab, modules: str | list[str] = "attention") -> dict[int, list[str]]:
    """Layer index -> the paths of ``modules`` in that layer (modules outside a block are left out)."""
    out: dict[int, list[str]] = {}
    for path in resolve_targets(lab.model, modules):
        layer, _ = split_module_name(path)
        if layer is not None:
            out.setdefault(layer, []).append(path)
    return dict(sorted(out.items()))


def layra_targets(lab, first_k: int = 2, last_k: int = 2,
                  modules: str | list[str] = "attention") -> list[str]:
    """LoRA on the first ``first_k`` and the last ``last_k`` layers only; the middle stays frozen.

    Reference: Owodunni & Kumar, "LayRA: continually adding languages", arXiv 2509.11414 (the model
    encodes the language early, reasons in the middle and translates back late). The counts are
    hyperparameters (the paper does not fix them; 2 + 2 suits a 24–32-layer model).
    """
    layers = layer_paths(lab, modules)
    n = len(layers)
    if first_k < 0 or last_k < 0 or first_k + last_k == 0:
        raise WorkbenchError(f"LayRA needs first_k, last_k ≥ 0 and at least one layer; got {first_k}, "
                             f"{last_k}")
    if first_k + last_k > n:
        raise WorkbenchError(f"LayRA: first_k + last_k = {first_k + last_k} but the model has {n} layers")
    keep = set(list(layers)[:first_k]) | set(list(layers)[n - last_k:])
    return [p for layer, paths in layers.items() if layer in keep for p in paths]


def flexora_search(lab, name: str, train: Sequence[dict], val: Sequence[dict], *, steps: int = 20,
                   lr: float = 2e-3, gate_lr: float = 0.05, batch_size: int = 8, seed: int = 0,
                   progress: bool = False) -> pd.DataFrame:
    """Search one gate α_ℓ per layer (``h = W0 x + α_ℓ s B A x``) by first-order bilevel descent.

    Reference: Wei et al., "Flexora: Flexible Low Rank Adaptation for Large Language Models",
    ACL 2025 (no public code; reconstruction from the abstract, see ../shared/specs/merging.md §8).
    Each step trains the LoRA on a ``train`` batch (AdamW), then moves the gates down the
    ``val`` loss gradient, a one-step first-order (DARTS-style) unroll. The gate gradient needs no
    extra graph: with the gate folded into the layer's scale, ``∂L/∂α_ℓ = Σ_m ⟨∂L/∂B_m, B_m⟩ / α_ℓ``
    over the layer's modules (the update is linear in B). Gates start at 1.

    Args:
        name: an adapter in the lab (all the layers it targets are candidates); it trains here,
            and its per-layer scales are put back afterwards.

    Returns:
        ``step, layer, value`` (the gates after each step). Rank the last step's layers by value
        and keep the top ones (``flexora_select``), then retrain a fresh adapter on those.
    """
    from workbench.training.multitask import MultiTaskTrainer

    adapter = lab.adapters[name] if name in lab.adapters else None
    if adapter is None:
        raise WorkbenchError(f"flexora_search trains an adapter of the lab; add {name!r} first")
    if not val:
        raise WorkbenchError("flexora_search needs validation examples (val) to move the gates")
    trainer = MultiTaskTrainer(lab, name, {"train": list(train)}, steps=steps, lr=lr, batch_size=batch_size,
                               seed=seed, progress=progress, warmup=0.0)
    by_layer: dict[int, list[str]] = {}
    for path in adapter.modules:
        layer, _ = split_module_name(path)
        if layer is not None:
            by_layer.setdefault(layer, []).append(path)
    layers = lab.layers
    base_scale = {p: layers[p].scaling[name] for p in adapter.modules}
    gates = {layer: 1.0 for layer in by_layer}
    g = torch.Generator().manual_seed(seed + 1)
    rows = []
    try:
        for step in range(steps):
            for layer, paths in by_layer.items():
                for p in paths:
                    layers[p].scaling[name] = base_scale[p] * gates[layer]
            trainer.step(1)  # inner: the LoRA on a train batch
            idx = torch.randperm(len(val), generator=g)[:batch_size].tolist()
            grads = _val_gradients(lab, name, trainer, [val[i] for i in idx])
            for layer, paths in by_layer.items():  # outer: gates down the validation gradient
                dot = sum(float((grads[p] * layers[p].lora_B[name].detach()).sum()) for p in paths)
                gates[layer] -= gate_lr * dot / gates[layer] if gates[layer] != 0 else 0.0
                rows.append({"step": step, "layer": layer, "value": gates[layer]})
    finally:
        for p, s in base_scale.items():
            layers[p].scaling[name] = s
    return pd.DataFrame(rows)


def flexora_select(gates: pd.DataFrame, k: int) -> list[int]:
    """The ``k`` layers with the largest gate at the last step, in layer order."""
    last = gates[gates.step == gates.step.max()].sort_values("value", ascending=False)
    return sorted(int(x) for x in last.layer.head(k))


def _val_gradients(lab, name: str, trainer, features: Sequence[dict]) -> dict[str, torch.Tensor]:
    """∂L_val/∂B per module of adapter ``name`` (the base and the LoRA stay as they are)."""
    Bs = {p: lab.layers[p].lora_B[name] for p in lab.adapters[name].modules}
    with lab.session(name, trainable=Bs.values()):
        loss = trainer._task_loss(0, features)
        grads = torch.autograd.grad(loss, list(Bs.values()))
    return dict(zip(Bs, grads, strict=True))
