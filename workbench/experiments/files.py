"""Where the results live and how they are written (atomically: a reader never sees half a file)."""

from __future__ import annotations

from pathlib import Path

from workbench.adapters.files import write_text_atomic


def results_root() -> Path:
    """The ``results/`` folder at the repository root."""
    return Path(__file__).resolve().parents[2] / "results"


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a temporary file beside it, then a rename)."""
    write_text_atomic(path, text)
