"""Where the results live and how they are written (atomically: a reader never sees half a file)."""

from __future__ import annotations

import os
from pathlib import Path


def results_root() -> Path:
    """The ``results/`` folder at the repository root."""
    return Path(__file__).resolve().parents[2] / "results"


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a temporary file beside it, then a rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
