"""Merging: one method per file, registered by name in ``MERGES``; ``merge`` runs any of them.

    from workbench.merging import MERGES, merge, method_params
    MERGES.names()                      # every registered method
    method_params("ties")               # {"density": 0.2, "majority_sign_method": "total", ...}
    result = merge([a, b], "ties", [1.0, 1.0], density=0.2)
    result.adapter, result.error, result.total_error

Every method works in ΔW space (ΔWᵢ = sᵢBᵢAᵢ), module by module; factored methods never build a
dense ΔW, elementwise ones build one module at a time. ``Workbench.merge`` adds the result to a lab.

Output rank (``rank=None``), per module, over the sources with a nonzero weight:

- Σrᵢ: ``task_arithmetic`` (exact), ``cat`` (exact, always), ``cat_learned`` (always), ``knots``
  (its numerical rank, ≤ Σrᵢ), the methods whose result is a combination Σᵢ cᵢΔWᵢ with
  coefficients from the updates' angles or data, exact at Σrᵢ (``slerp``, ``nuslerp`` (also per
  row/column), ``karcher``, ``model_stock``, ``regmean``), and the elementwise methods ``ties``,
  ``dare_linear``, ``dare_ties``, ``magnitude_prune``, ``breadcrumbs``, ``della``, ``sce``, ``fisher``
  (the dense result cut by SVD to Σrᵢ, the rank of the unpruned sum);
- max rᵢ: ``svd``, ``lora_lego`` (k = r clusters) and every ``*_svd`` variant (peft's default).

The merged adapter has scale 1 (alpha = r in every module, standard scaling) whatever the sources'
scaling. ``peft_compat=True`` (task_arithmetic and peft's elementwise types) reproduces peft's
``add_weighted_adapter`` for the same combination type, factor space and all.

The methods live in ``methods/`` (one file each, found by ``MERGES``' package scan); this package
holds the plumbing: ``base`` (the registry and the two decorators), ``inputs`` (what a method sees),
``engine`` (checks, error, lineage), ``spherical`` (angles and spherical means from the factors),
``statistics`` (the Gram matrices and Fishers that ``regmean``/``fisher`` read, measured through the
recording hooks: ``merge_statistics(lab, names, data)``), ``extract`` (LoRA extraction from a dense ΔW
or a full fine-tune: ``extract``, ``extract_from_models``, ``lab.extract``). ``MERGES.info(name)``
gives a method's declared parameters (default, bounds or choices, doc) and flags (``stochastic``,
``svd_variant``, ``needs_data``, ``pair`` ...).
"""

from workbench.adapters.update_cache import adapter_fingerprint
from workbench.merging.base import MERGES, MergeMethod, elementwise, factored, method_params
from workbench.merging.engine import MergeResult, merge
from workbench.merging.extract import ExtractResult, extract, extract_from_models
from workbench.merging.statistics import MergeStatistics, merge_statistics

__all__ = [
    "MERGES",
    "ExtractResult",
    "MergeMethod",
    "MergeResult",
    "MergeStatistics",
    "adapter_fingerprint",
    "elementwise",
    "extract",
    "extract_from_models",
    "factored",
    "merge",
    "merge_statistics",
    "method_params",
]
