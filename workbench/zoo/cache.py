"""The on-disk cache of converted models, and how a directory is published into it atomically.

A conversion writes into a private temporary directory beside its target, writes the marker file
last, and renames the directory into place. A crashed or concurrent conversion therefore never
leaves a half-written directory that a later load would trust: a directory counts only when its
marker holds the expected stamp.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError

ENV = "LORA_WORKBENCH_CACHE"
MARKER = "workbench-complete.json"  # written last; its presence and content validate a directory
STALE_AFTER_S = 3600  # temporary directories older than this belong to crashed conversions


def cache_dir() -> Path:
    """The workbench cache directory, created if needed.

    Returns:
        ``$LORA_WORKBENCH_CACHE`` when set, else ``~/.cache/lora-workbench``.
    """
    root = os.environ.get(ENV) or Path.home() / ".cache" / "lora-workbench"
    path = Path(root).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def read_stamp(target: Path) -> dict[str, Any] | None:
    """The stamp in ``target``'s marker file, or None when the directory is absent or incomplete."""
    try:
        return json.loads((Path(target) / MARKER).read_text())
    except (OSError, ValueError):
        return None


def build_atomically(target: Path, build: Callable[[Path], None], stamp: dict[str, Any]) -> Path:
    """Make ``target`` hold what ``build`` writes, unless it already carries ``stamp``.

    Args:
        target: the final directory, e.g. ``cache_dir() / "smollm2-135m"``.
        build: writes the content into the empty directory it is given.
        stamp: JSON-serializable description of the source (name, size, format version); a
            directory whose marker holds another stamp is rebuilt and replaced.

    Returns:
        ``target``, complete.
    """
    target = Path(target)
    if read_stamp(target) == stamp:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the published cache is readable like the rest
        build(tmp)
        (tmp / MARKER).write_text(json.dumps(stamp, indent=1, sort_keys=True))
        _publish(tmp, target, stamp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # still there only if another build won
    return target


def _publish(tmp: Path, target: Path, stamp: dict[str, Any]) -> None:
    """Rename ``tmp`` to ``target``; a complete target from a concurrent build wins."""
    for _ in range(5):
        try:
            os.rename(tmp, target)  # atomic; fails when target exists and is not empty
            return
        except OSError:
            if read_stamp(target) == stamp:
                return  # a concurrent conversion published first; ours is discarded
            trash = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
            try:
                os.rename(target, trash)  # move the incomplete or stale directory aside
            except FileNotFoundError:
                continue
            shutil.rmtree(trash, ignore_errors=True)
    raise WorkbenchError(
        f"could not move the converted model into {target}: the path keeps changing. "
        f"Close other processes that write to {target.parent} and retry."
    )


def _remove_stale_temporaries(target: Path) -> None:
    """Delete temporary directories of conversions that crashed more than an hour ago."""
    now = time.time()
    for pattern in (f".{target.name}.tmp-*", f".{target.name}.old-*"):
        for path in target.parent.glob(pattern):
            try:
                if now - path.stat().st_mtime > STALE_AFTER_S:
                    shutil.rmtree(path, ignore_errors=True)
            except OSError:
                pass
