"""What every benchmark script shares: printing its result table and writing it atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# A benchmark records nothing in the run store (workbench.runs): its writer thread would share the cores
# being timed. Set LORA_WORKBENCH_TRACKING to a store to record anyway.
os.environ.setdefault("LORA_WORKBENCH_TRACKING", "0")


def write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path``, then rename it over ``path`` (a killed run leaves the
    old table whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False,
                                     encoding="utf-8") as f:
        f.write(text)
    os.replace(f.name, path)


def publish(text: str, out: Path | None) -> None:
    """Print the table; write it to ``out`` (atomically) unless ``out`` is None."""
    print(text)
    if out is not None:
        write_atomically(out, text)
        print(f"wrote {out}")
