"""How a pattern names paths, for recording and for hooks: a glob (``*.hook_rank.*``) or a regex."""

from __future__ import annotations

import fnmatch
import re


def matching(names: list[str], pattern: str) -> list[str]:
    """The ``names`` that ``pattern`` matches as a glob or, when it compiles, as a full regex."""
    try:
        rx = re.compile(pattern)
    except re.error:
        rx = None
    return [n for n in names if fnmatch.fnmatchcase(n, pattern) or (rx is not None and rx.fullmatch(n))]
