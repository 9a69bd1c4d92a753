"""The merged adapter a Candidate describes: ``merging.merge`` for a setting, the exact stacked sum for
layer-wise weights.

    adapter = build(lab, ["arithmetic", "topic"], candidate, name="candidate", seed=0)

A candidate with ``layer_weights`` (AdaMerging's layer-wise coefficients) is the exact weighted sum with
one weight per (layer, adapter): its factors are the sources' stacked, A' = [A₁; …; A_K] and
B' = [λ₁s₁B₁, …, λ_Ks_KB_K] (rank Σrᵢ, s = 1), so B'A' = Σₖ λₖ sₖBₖAₖ exactly; modules outside a numbered
layer take ``weights``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from workbench.adapters import Adapter
from workbench.adapters.adapter import LoraFactors
from workbench.errors import WorkbenchError
from workbench.naming import split_module_name
from workbench.search.space import Candidate


def build(lab, names: Sequence[str], candidate: Candidate, *, name: str = "candidate",
          seed: int = 0) -> Adapter:
    """The Adapter of ``candidate`` over the lab's adapters ``names`` (not added to the lab)."""
    sources = [lab._get(n) for n in names]
    weights = [float(candidate.weights[n]) for n in names]
    if candidate.layer_weights is not None:
        return stacked(sources, candidate, name=name)
    from workbench.merging import merge
    from workbench.merging.base import get_method

    params = {}
    if candidate.density is not None and "density" in get_method(candidate.method).params:
        params["density"] = float(candidate.density)
    return merge(sources, candidate.method, weights, name=name, seed=seed, **params).adapter


def stacked(sources: Sequence[Adapter], candidate: Candidate, *, name: str) -> Adapter:
    """The exact weighted sum with per-layer weights (see the module docstring)."""
    paths = list(sources[0].modules)
    for a in sources[1:]:
        if list(a.modules) != paths:
            raise WorkbenchError(f"layer-wise weights need sources on the same modules; {a.name!r} differs "
                                 f"from {sources[0].name!r}")
    layers = candidate.layer_weights or {}
    modules = {}
    for path in paths:
        layer, _ = split_module_name(path)
        w = layers.get(layer, candidate.weights)
        As, Bs = [], []
        for a in sources:
            A, sB = a.factors(path)  # (r, in), (out, r)
            As.append(A)
            Bs.append(float(w[a.name]) * sB)
        A = torch.cat(As, 0).detach().float().contiguous()  # (R, in)
        B = torch.cat(Bs, 1).detach().float().contiguous()  # (out, R)
        modules[path] = LoraFactors(A, B, float(A.shape[0]))
    return Adapter(name=name, modules=modules, scaling="standard",
                   base_fingerprint=next((a.base_fingerprint for a in sources if a.base_fingerprint), None),
                   lineage={"method": "search", "layer_weights": {str(k): dict(v) for k, v in layers.items()},
                            "sources": [a.name for a in sources]})
