"""merge: check the sources, run a registered method module by module, report the error, record lineage.

    result = merge([arith, topic], "ties", [1.0, 1.0], density=0.2)
    result.adapter          # the new Adapter (scale 1: alpha = r per module)
    result.error            # DataFrame[layer, module, value]: ||ΔW' − Σ wᵢΔWᵢ||_F / ||Σ wᵢΔWᵢ||_F
    result.total_error      # the same over all modules together

Every check runs before any work; the sources are never modified (methods see copies or float64
casts of their factors, and dense stacks built for the purpose). The error against the exact
weighted sum is computed in factored form (float64 QR of the stacked factors), never densely.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pandas as pd
import torch

from workbench.adapters.adapter import Adapter, LoraFactors
from workbench.adapters.comparable import check_comparable
from workbench.adapters.params import ParamDelta
from workbench.adapters.update_cache import adapter_fingerprint  # noqa: F401 (re-exported)
from workbench.errors import WorkbenchError
from workbench.merging.base import MERGES, MergeMethod, get_method
from workbench.merging.inputs import MergeInputs
from workbench.naming import split_module_name
from workbench.ops.frames import tidy
from workbench.ops.lowrank import difference_norms, stack
from workbench.ops.sparsify import check_density

TARGETS = ("same", "union", "intersection")


@dataclass
class MergeResult:
    """What ``merge`` returns.

    Attributes:
        adapter: the merged adapter; ``adapter.lineage["merge"]`` holds method, params, weights,
            seed, sources (name, fingerprint, base_fingerprint) and the total error.
        error: one row per module: ``layer, module, value`` with value = ||ΔW' − Σ wᵢΔWᵢ||_F /
            ||Σ wᵢΔWᵢ||_F (0 for an exact merge; NaN where the weighted sum is zero but ΔW' is not).
        total_error: the same ratio over all modules together.
    """

    adapter: Adapter
    error: pd.DataFrame
    total_error: float


def merge(adapters: list[Adapter], method: str, weights: list[float] | None = None, *,
          name: str | None = None, seed: int = 0, targets: str = "same", **params) -> MergeResult:
    """Merge ``adapters`` into one new adapter with a registered method (``MERGES.names()``).

    Args:
        adapters: the sources (same base model; shared modules with the same shapes).
        method: a registered method name; ``method_params(method)`` lists its parameters.
        weights: one weight per source (default 1 each); negative weights subtract.
        name: the new adapter's name (default ``<method>_<source names>``).
        seed: seeds the random methods (DARE, DELLA, k-means); same seed, same adapter.
        targets: ``"same"`` (every source must target the same modules), ``"union"`` (a module a
            source lacks counts as a zero update there) or ``"intersection"`` (only shared modules).
        **params: the method's parameters (unknown ones are refused).

    Returns:
        MergeResult(adapter, error, total_error).

    Raises:
        WorkbenchError: unknown method or parameter, weights of the wrong length or not finite,
            density outside (0, 1], sources of different base models, mismatched shapes or
            targets, unequal ranks where the method needs equal ones. Raised before any work.
    """
    spec = get_method(method)
    adapters = _check_adapters(adapters)
    weights = _check_weights(weights, adapters)
    full = _check_params(spec, params)
    paths = _check_targets(adapters, targets)
    if full.get("peft_compat") and not MERGES.has(method, "svd_variant"):  # peft's factor space
        for path in paths:
            ranks = {a.modules[path].r for a in adapters if path in a.modules}
            if len(ranks) > 1:
                raise WorkbenchError(
                    f"{method} with peft_compat=True works on A and B separately, as peft does, which "
                    f"needs equal ranks; module {path!r} has ranks {sorted(ranks)}. Use peft_compat=False "
                    f"(ΔW space) or {method}_svd"
                )
    if not isinstance(seed, int):
        raise WorkbenchError(f"seed must be an int, got {seed!r}")
    name = name or _default_name(method, adapters)
    if not name.isidentifier():
        raise WorkbenchError(f"merged adapter name {name!r} is not a Python identifier; pass name=...")

    inputs = MergeInputs(adapters, weights, seed, paths)
    with torch.no_grad():
        factors = spec.run(inputs, full)
    modules = {p: LoraFactors(A.detach().to(torch.float32).contiguous(), B.detach().to(torch.float32)
                              .contiguous(), float(A.shape[0])) for p, (A, B) in factors.items()}
    carry_extras(modules, adapters, weights)
    error, total = merge_error(modules, inputs)
    lineage_params = {k: _jsonable(v) for k, v in full.items()}
    adapter = Adapter(
        name=name,
        modules=modules,
        scaling="standard",  # alpha = r: s = 1 (never inherit rsLoRA: peft PR #3449)
        base_fingerprint=next((a.base_fingerprint for a in adapters if a.base_fingerprint), None),
        lineage={
            "method": "merge",
            "merge": {
                "method": method,
                "params": lineage_params,
                "weights": list(weights),
                "seed": seed,
                "targets": targets,
                "sources": [{"name": a.name, "fingerprint": inputs.fingerprint(i),
                             "base_fingerprint": a.base_fingerprint, "made_by": a.lineage.get("method")}
                            for i, a in enumerate(adapters)],
                "error": total,
                **{k: _jsonable(v) for k, v in inputs.notes.items()},
            },
        },
    )
    adapter.params = merged_params(adapters, weights)
    return MergeResult(adapter, error, total)


# -- checks ----------------------------------------------------------------------------------
def _check_adapters(adapters) -> list[Adapter]:
    if isinstance(adapters, Adapter):
        adapters = [adapters]
    adapters = list(adapters)
    if not adapters:
        raise WorkbenchError("merge needs at least one adapter")
    for a in adapters:
        if not isinstance(a, Adapter):
            raise WorkbenchError(f"merge takes Adapter objects, got {type(a).__name__}; "
                                 "use lab.merge(names, ...) to merge by name")
    names = [a.name for a in adapters]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise WorkbenchError(f"two sources are named {dup[0]!r}; give each source its own name "
                             "(adapter.copy(name=...))")
    check_comparable({a.name: a for a in adapters},
                     why="a merge adds updates of the same weights, so merge adapters of one base")
    return adapters


def _check_weights(weights, adapters: list[Adapter]) -> list[float]:
    if weights is None:
        return [1.0] * len(adapters)
    if isinstance(weights, int | float):
        raise WorkbenchError(f"weights is one number ({weights}); give a list with one weight per adapter")
    nonnumbers = [w for w in weights if isinstance(w, bool) or not isinstance(w, int | float)]
    if nonnumbers:
        raise WorkbenchError(f"weights {list(weights)} hold {nonnumbers[0]!r}, not a number; "
                             "give one number per adapter, e.g. weights=[1.0, 0.5]")
    weights = [float(w) for w in weights]
    if len(weights) != len(adapters):
        raise WorkbenchError(
            f"{len(weights)} weights for {len(adapters)} adapters ({[a.name for a in adapters]}); "
            "give one weight per adapter, in the same order"
        )
    bad = [w for w in weights if not math.isfinite(w)]
    if bad:
        raise WorkbenchError(f"weights {weights} hold non-finite values; give finite numbers")
    return weights


def _check_params(spec: MergeMethod, params: dict) -> dict:
    """The method's parameters, defaults filled, checked against its declarations (``MERGES.check``:
    unknown names, bounds, choices, required ones) and its own ``validate``."""
    declared = MERGES.info(spec.name).params
    if "density" in params and "density" in declared:
        check_density(params["density"], spec.name)  # (0, 1]: zero is refused, which bounds cannot say
    rank = params.get("rank")
    if "rank" in declared and rank is not None and (not isinstance(rank, int) or isinstance(rank, bool)
                                                     or rank < 1):
        raise WorkbenchError(f"{spec.name}: rank={rank!r} must be a positive int (or None for the default)")
    full = MERGES.check(spec.name, params)
    if spec.validate is not None:
        spec.validate(full)
    if full.get("peft_compat") and rank is not None and not MERGES.has(spec.name, "svd_variant"):
        raise WorkbenchError(f"{spec.name}: peft_compat=True keeps peft's rank (the sources' r); "
                             "drop rank=..., or use the _svd variant")
    return full


def _check_targets(adapters: list[Adapter], targets: str) -> list[str]:
    if targets not in TARGETS:
        raise WorkbenchError(f"targets={targets!r}; choose one of {list(TARGETS)}")
    union = list(dict.fromkeys(p for a in adapters for p in a.modules))
    common = [p for p in union if all(p in a.modules for a in adapters)]
    if targets == "union":
        return union
    if not common:
        raise WorkbenchError(
            f"the adapters share no module ({', '.join(f'{a.name}: {a.targets[0]}...' for a in adapters)}); "
            "pass targets='union' to merge them side by side (a missing module is a zero update)"
        )
    if targets == "same" and len(common) != len(union):
        odd = next(p for p in union if p not in common)
        lacking = [a.name for a in adapters if odd not in a.modules]
        raise WorkbenchError(
            f"the adapters target different modules: {odd!r} is missing from {lacking} "
            f"({len(union) - len(common)} of {len(union)} modules are not shared); pass "
            "targets='union' (a missing module is a zero update) or targets='intersection'"
        )
    return common


# -- error and lineage -----------------------------------------------------------------------
def merge_error(modules: dict[str, LoraFactors], inputs: MergeInputs) -> tuple[pd.DataFrame, float]:
    """Per-module and total ||ΔW' − Σ wᵢΔWᵢ||_F / ||Σ wᵢΔWᵢ||_F, from the factors (float64)."""
    rows, num, den = [], 0.0, 0.0
    for path, f in modules.items():
        parts, weights = inputs.parts(path)
        B, A = stack(parts, weights)  # the exact weighted sum, factored
        diff, target = difference_norms(f.B, f.A, B, A)
        num, den = num + diff**2, den + target**2
        layer, module = split_module_name(path)
        rows.append({"layer": layer, "module": module, "value": _ratio(diff, target)})
    return tidy(rows), _ratio(math.sqrt(num), math.sqrt(den))


def carry_extras(modules: dict[str, LoraFactors], adapters: list[Adapter], weights: list[float]) -> None:
    """Keep embedding modules embeddings, and give the merged modules the exact weighted sum of the
    sources' lora_B biases, Σ wᵢ·sᵢ·bᵢ.

    A bias update adds to the output linearly, so its weighted sum is exact for every method; the
    method (trimming, rescaling ...) acts on the weight updates only. The merged adapter has s = 1.
    When any source has a lora_bias, every merged module gets one (zero where no source has it), so
    the adapter stays one peft kind (``lora_bias=True``).
    """
    for path, f in modules.items():  # an embedding module stays one (its factors are lookups)
        f.embedding = any(a.modules[path].embedding for a in adapters if path in a.modules)
    if not any(f.bias is not None for a in adapters for f in a.modules.values()):
        return
    for path, f in modules.items():
        total = torch.zeros(f.out_features, dtype=torch.float64)
        for a, w in zip(adapters, weights, strict=True):
            if path in a.modules and (db := a.bias_delta(path)) is not None:
                total += w * db.detach().double().cpu()
        f.bias = total.float().to(f.A.device)


def merged_params(adapters: list[Adapter], weights: list[float]) -> dict[str, ParamDelta]:
    """Σ wᵢ·Δᵢ of the sources' trained base parameters (biases, modules_to_save, token rows): exact,
    since each changes the output linearly. Token rows must be the same ids in every source."""
    out: dict[str, ParamDelta] = {}
    for a, w in zip(adapters, weights, strict=True):
        for path, d in a.params.items():
            if path not in out:
                out[path] = ParamDelta(w * d.delta.detach().float().cpu(), d.rows, d.origin, d.group)
                continue
            have = out[path]
            if (have.rows is None) != (d.rows is None) or (
                    d.rows is not None and not torch.equal(have.rows, d.rows)):
                raise WorkbenchError(
                    f"adapter {a.name!r} trains token rows {d.rows!r} of {path!r} but another source "
                    f"trains {have.rows!r}; merge adapters that train the same token ids")
            have.delta = have.delta + w * d.delta.detach().float().cpu()
    return out


def _ratio(diff: float, target: float) -> float:
    if target > 0:
        return diff / target
    return 0.0 if diff == 0 else float("nan")


def _default_name(method: str, adapters: list[Adapter]) -> str:
    return re.sub(r"\W", "_", "_".join([method, *(a.name for a in adapters)]))


def _jsonable(value):
    """Lineage values as JSON: objects that are not (a lab, tasks) become a short description."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        if any(isinstance(v, dict) for v in value):
            return f"<{len(value)} items>"  # e.g. encoded features: the count, not the data
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return getattr(value, "name", None) or type(value).__name__
