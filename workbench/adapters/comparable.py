"""check_comparable: refuse adapters that do not update the same weights of the same base model.

Shared by the analysis functions (which compare updates) and the merge engine (which adds them).
"""

from __future__ import annotations

from collections.abc import Mapping

from workbench.adapters.adapter import Adapter
from workbench.errors import WorkbenchError


def check_comparable(named: Mapping[str, Adapter], *,
                     why: str = "geometry compares updates of the same weights, so compare adapters "
                                "of one base") -> None:
    """Refuse adapters for different base models or with different shapes on a shared module.

    ``why`` ends the base-model error: what the caller does with the updates (compare, merge ...).
    """
    prints = {n: a.base_fingerprint for n, a in named.items() if a.base_fingerprint is not None}
    if len(set(prints.values())) > 1:
        listing = ", ".join(f"{n}: {p}" for n, p in prints.items())
        raise WorkbenchError(f"the adapters were made for different base models ({listing}); {why}")
    for n, a in named.items():
        if "dora" in a.kinds:
            raise WorkbenchError(
                f"adapter {n!r} is DoRA: its update diag(m/‖W+sBA‖)(W+sBA) − W depends on the base weight "
                "and is not the low-rank product sBA its factors describe, so factor geometry and "
                "factor merges would describe another update. Use it (lab.use) or fold it into the base "
                "(lab.merge_into_base); compare or merge plain LoRA adapters"
            )
    seen: dict[str, tuple[str, tuple[int, int]]] = {}
    for n, a in named.items():
        for path, f in a.modules.items():
            shape = (f.out_features, f.in_features)
            if path in seen and seen[path][1] != shape:
                first, first_shape = seen[path]
                raise WorkbenchError(
                    f"module {path!r} is {first_shape} (out, in) in adapter {first!r} but {shape} "
                    f"in adapter {n!r}; these adapters do not target the same weights"
                )
            seen.setdefault(path, (n, shape))
