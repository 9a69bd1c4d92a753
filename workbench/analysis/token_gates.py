"""Token gates: the gate weights each token got from each recorded router, as plain arrays.

    _, cache = lab.run(prompt, record="*.hook_route")
    gates = token_gates(cache, row=0)      # {(layer, module, router): float32 (T, E)}

What ``widgets.TokenRouting`` draws (it takes these arrays and never touches a tensor).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from workbench.analysis.routing import records
from workbench.errors import WorkbenchError


def token_gates(cache: Mapping, row: int = 0) -> dict[tuple, np.ndarray]:
    """(layer, module, router) -> the gate weights of batch row ``row``, float32 ``(T, E)``.

    Args:
        cache: a cache recorded with ``record="*.hook_route"`` while a router was used.
        row: the batch row (the prompt) to read.

    Raises:
        WorkbenchError: the cache holds no routing record, or ``row`` is not a row of the batch.
    """
    found = records(cache)
    batch = next(iter(found.values())).shape[0]
    if not 0 <= row < batch:
        raise WorkbenchError(f"row {row} is not a row of the recorded batch (size {batch}); "
                             f"give 0..{batch - 1}")
    return {k: np.ascontiguousarray(rec.weights[row].detach().float().cpu().numpy(), dtype=np.float32)
            for k, rec in found.items()}  # (T, E) each
