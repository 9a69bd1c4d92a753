"""Cache: the plain mapping of recorded values that ``Workbench.run(..., record=...)`` returns."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd
import torch

from workbench.naming import split_module_name

# The meaning of each dimension of a recorded value, by hook name (the last part of its key,
# or the part before an adapter name for per-adapter hooks such as ``hook_rank.<adapter>``).
DIMS: dict[str, tuple[str, ...]] = {
    "hook_in": ("batch", "token", "feature"),
    "hook_rank": ("batch", "token", "rank"),
    "hook_delta": ("batch", "token", "feature"),
}


class Cache(Mapping[str, torch.Tensor]):
    """Recorded tensors keyed by hook path, e.g. ``model.layers.3.self_attn.q_proj.hook_rank.arith``.

    A plain container: analysis lives in ``workbench.analysis``. ``to_frame`` gives the tidy long form.
    """

    def __init__(self, values: dict[str, torch.Tensor] | None = None):
        self._values: dict[str, torch.Tensor] = dict(values or {})

    def __getitem__(self, key: str) -> torch.Tensor:
        try:
            return self._values[key]
        except KeyError:
            raise KeyError(
                f"{key!r} was not recorded; recorded keys: {', '.join(self._values) or '(none)'}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {tuple(v.shape)}" for k, v in list(self._values.items())[:4])
        more = f", ... ({len(self)} in all)" if len(self) > 4 else ""
        return f"Cache({shapes}{more})"

    def to_frame(self, keys: list[str] | None = None) -> pd.DataFrame:
        """Tidy long frame: ``layer, module, hook, adapter`` plus one column per dimension, and ``value``.

        Args:
            keys: which recorded keys to include (default all). Values of many elements make long
                frames: select the hooks you need, e.g. the per-rank ones.
        """
        frames = []
        for key in keys if keys is not None else list(self._values):
            module_path, hook, adapter = split_hook_key(key)
            layer, module = split_module_name(module_path)
            if hasattr(self[key], "to_frame"):  # a structured record (e.g. a RoutingRecord)
                frame = self[key].to_frame()
                for i, (col, v) in enumerate({"layer": layer, "module": module, "hook": hook,
                                              "adapter": adapter}.items()):
                    frame.insert(i, col, v)
                frames.append(frame)
                continue
            value = self[key].detach().float().cpu()
            dims = DIMS.get(hook, tuple(f"dim{i}" for i in range(value.dim())))
            if len(dims) != value.dim():
                dims = tuple(f"dim{i}" for i in range(value.dim()))
            index = np.indices(value.shape).reshape(value.dim(), -1)
            frame = pd.DataFrame({d: index[i] for i, d in enumerate(dims)})
            frame.insert(0, "adapter", adapter)
            frame.insert(0, "hook", hook)
            frame.insert(0, "module", module)
            frame.insert(0, "layer", layer)
            frame["value"] = value.reshape(-1).numpy()
            frames.append(frame)
        if not frames:
            return pd.DataFrame(columns=["layer", "module", "hook", "adapter", "value"])
        return pd.concat(frames, ignore_index=True)


def split_hook_key(key: str) -> tuple[str, str, str | None]:
    """``a.b.hook_rank.arith`` -> ``("a.b", "hook_rank", "arith")``; ``a.b.hook_in`` -> (.., None);
    ``a.b.routes.smora.hook_route`` -> ``("a.b", "hook_route", "smora")``."""
    parts = key.split(".")
    for i in range(len(parts) - 1, -1, -1):
        if parts[i].startswith("hook_"):
            adapter = ".".join(parts[i + 1 :]) or None
            module = parts[:i]
            if len(module) >= 2 and module[-2] == "routes":  # a router's hook: a.b.routes.<name>.hook_x
                module, adapter = module[:-2], module[-1]
            return ".".join(module), parts[i], adapter
    return key, "", None
