"""Safe file handling: atomic directory writes and safetensors-only reads with clear errors."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from workbench.errors import WorkbenchError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


@contextmanager
def atomic_directory(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; on success it replaces ``path`` in one rename.

    A failure inside the block leaves ``path`` exactly as it was (absent or old) and removes the
    temporary directory: a crash never leaves a half-written adapter behind.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise WorkbenchError(f"{path} already exists; pass overwrite=True or choose another path")
    if path.exists() and not path.is_dir():
        raise WorkbenchError(f"{path} exists and is a file; adapters are saved as directories")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        _usual_permissions(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _usual_permissions(folder: Path) -> None:
    """mkdtemp makes 0700 folders (and some writers 0600 files): give them the umask's usual modes."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for f in folder.iterdir():
        os.chmod(f, 0o666 & ~umask)


def read_safetensors(file: Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file; a missing, truncated or foreign file is named with the fix."""
    if not file.exists():
        pickles = [p.name for p in file.parent.glob("*") if p.suffix in PICKLE_SUFFIXES]
        if pickles:
            raise WorkbenchError(
                f"{file.parent} holds only pickle weights ({', '.join(pickles)}); pickle files can "
                "run code when loaded and are refused. Convert them once, where you trust them: "
                "`safetensors.torch.save_file(torch.load(f, weights_only=True), 'adapter_model.safetensors')`"
            )
        raise WorkbenchError(f"{file} is missing; a PEFT LoRA directory holds adapter_model.safetensors")
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as e:
        raise WorkbenchError(
            f"{file} is not a readable safetensors file ({e}); it may be truncated or corrupt: "
            "copy or export it again"
        ) from None
