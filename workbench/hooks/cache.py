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
    ``record`` fills it while it records (``add`` as each hook fires), so a cache read during a run,
    or after a forward that raised midway, holds everything recorded so far. A key added more than
    once (a hook point that fires at each decoding step) reads as its values joined along the token
    axis (dim 1; a record type such as ``RoutingRecord`` brings its own ``concat``).
    """

    def __init__(self, values: dict[str, torch.Tensor] | None = None):
        # key -> the values added so far; joined into one on read (and kept joined)
        self._parts: dict[str, list] = {k: [v] for k, v in (values or {}).items()}

    def add(self, key: str, value) -> None:
        """Append ``value`` to ``key`` (what a recording hook calls each time its point fires)."""
        self._parts.setdefault(key, []).append(value)

    def __getitem__(self, key: str) -> torch.Tensor:
        try:
            parts = self._parts[key]
        except KeyError:
            raise KeyError(
                f"{key!r} was not recorded; recorded keys: {', '.join(self._parts) or '(none)'}"
            ) from None
        if len(parts) > 1:
            parts[:] = [_concat(parts)]  # joined once; later adds join onto it
        return parts[0]

    def __iter__(self) -> Iterator[str]:
        return iter(self._parts)

    def __len__(self) -> int:
        return len(self._parts)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {tuple(self[k].shape)}" for k in list(self._parts)[:4])
        more = f", ... ({len(self)} in all)" if len(self) > 4 else ""
        return f"Cache({shapes}{more})"

    def to_frame(self, keys: list[str] | None = None) -> pd.DataFrame:
        """Tidy long frame: ``layer, module, hook, adapter`` plus one column per dimension, and ``value``.

        Args:
            keys: which recorded keys to include (default all). Values of many elements make long
                frames: select the hooks you need, e.g. the per-rank ones.
        """
        frames = []
        for key in keys if keys is not None else list(self._parts):
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


def _concat(parts: list):
    """Successive values of one hook point along the token axis (a record type brings its own)."""
    concat = getattr(type(parts[0]), "concat", None)
    return concat(parts) if concat else torch.cat(parts, dim=1)


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
