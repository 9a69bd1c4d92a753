"""Module names: split a dotted path into the tidy-frame columns ``layer`` and ``module``."""

from __future__ import annotations

import re

_LAYER = re.compile(r"(?:^|\.)(?:layers|h|layer|blocks)\.(\d+)\.(.+)$")


def split_module_name(name: str) -> tuple[int | None, str]:
    """``"model.layers.3.self_attn.q_proj"`` -> ``(3, "self_attn.q_proj")``.

    Names outside a numbered block keep their full path and layer ``None``.
    """
    m = _LAYER.search(name)
    if m is None:
        return None, name
    return int(m.group(1)), m.group(2)
