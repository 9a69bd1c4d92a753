"""Safe file handling: atomic directory writes and safetensors-only reads with clear errors.

A save never loses anything:
- it replaces only a folder that holds an adapter or a router in a format we recognize (a PEFT
  adapter, a workbench router) and nothing else; a folder with other files is refused, naming them;
- it writes into a hidden sibling ``.name.XXXXXXXX``, fsyncs every file and the folder, then swaps
  it with the old folder in one ``renameat2(RENAME_EXCHANGE)`` (two renames where the file system
  lacks it), so a kill at any moment leaves the complete old or the complete new folder;
- hidden leftovers of an interrupted save (``.name.XXXXXXXX``, ``.name.old``) are recognized by
  their name and contents, removed by the next save of ``name``, and skipped by every reader
  (``is_leftover``, ``visible_entries``).
"""

from __future__ import annotations

import ctypes
import os
import re
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
# What our savers (and peft's) write in a folder: an adapter, or a router.
ADAPTER_FILES = frozenset({"adapter_config.json", "adapter_model.safetensors", "README.md"})
ROUTER_FILES = frozenset({"router.json", "router.safetensors",  # + its training state, when saved with it
                          "history.json", "optimizer.safetensors", "training_state.json"})
CONFIG_FILES = ("adapter_config.json", "router.json")
PARTIAL = ".lora-workbench-partial"  # marker inside a save in progress
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?:old|[a-z0-9_]{8})$")


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (a temporary file beside it, then a rename): a reader never
    sees half a file, and a failed write leaves the old file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def foreign_files(folder: Path) -> list[str]:
    """Entries of ``folder`` that no adapter or router save writes (sorted); [] for one of ours.

    A folder is ours when it holds an adapter config or a router config and only the files of that
    format (an empty folder holds nothing to lose and counts as ours).
    """
    names = {p.name for p in folder.iterdir()}
    if not names:
        return []
    for known in (ADAPTER_FILES, ROUTER_FILES):
        if names <= known | {PARTIAL} and names & set(CONFIG_FILES):
            return []
    known_any = ADAPTER_FILES | ROUTER_FILES
    foreign = sorted(n for n in names if n not in known_any or (folder / n).is_dir())
    return foreign or sorted(names)  # e.g. weights without any config: not recognizably ours


def is_leftover(entry: Path) -> bool:
    """True for a hidden ``.name.XXXXXXXX`` / ``.name.old`` folder that an interrupted save left."""
    if not _LEFTOVER.match(entry.name) or not entry.is_dir() or entry.is_symlink():
        return False
    try:
        names = {p.name for p in entry.iterdir()}
    except OSError:  # unreadable: not ours to judge (or to delete)
        return False
    return PARTIAL in names or names <= ADAPTER_FILES | ROUTER_FILES
    # (the contents check keeps a user's own hidden folder that happens to match the pattern)


def visible_entries(folder: Path) -> list[Path]:
    """The entries of ``folder`` a reader should list: no hidden names, no leftovers of saves."""
    return sorted(p for p in Path(folder).iterdir() if not p.name.startswith(".") and not is_leftover(p))


def clean_leftovers(path: Path) -> list[Path]:
    """Remove the leftovers of interrupted saves of ``path`` (its hidden siblings that we wrote)."""
    removed = []
    if not path.parent.is_dir():
        return removed
    for entry in path.parent.iterdir():
        m = _LEFTOVER.match(entry.name)
        if m and m["name"] == path.name and is_leftover(entry):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def check_replaceable(path: Path, *, overwrite: bool) -> None:
    """Refuse to write at ``path`` unless it is free, or ``overwrite`` and it holds only our files."""
    if not path.exists() and not path.is_symlink():
        return
    if not overwrite:
        raise WorkbenchError(f"{path} already exists; pass overwrite=True or choose another path")
    if path.is_symlink() or not path.is_dir():
        raise WorkbenchError(
            f"{path} exists and is not a folder; adapters and routers are saved as folders: "
            "choose another path (nothing was written)"
        )
    foreign = foreign_files(path)
    if foreign:
        shown = ", ".join(foreign[:6]) + (f" and {len(foreign) - 6} more" if len(foreign) > 6 else "")
        raise WorkbenchError(
            f"{path} holds files that no adapter or router save writes ({shown}); overwrite=True "
            "replaces only a folder holding a saved adapter or router, so nothing was written. "
            "Choose another path, or move those files away first"
        )


@contextmanager
def atomic_directory(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; on success it replaces ``path`` in one rename.

    A failure inside the block leaves ``path`` exactly as it was (absent or old) and removes the
    temporary directory: a crash never leaves a half-written adapter behind. ``overwrite`` replaces
    only a folder of ours (see ``foreign_files``).
    """
    path = Path(path)
    check_replaceable(path, overwrite=overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        (tmp / PARTIAL).touch()
        yield tmp
        (tmp / PARTIAL).unlink()
        _usual_permissions(tmp)
        _fsync_tree(tmp)
        if path.exists():
            if not _exchange(tmp, path):  # no atomic swap here: two renames, .old meanwhile
                old = path.with_name(f".{path.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(path, old)
                os.replace(tmp, path)
                _fsync_dir(path.parent)
                shutil.rmtree(old, ignore_errors=True)
            # after the exchange ``tmp`` holds the old folder; finally removes it
        else:
            os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _fsync_tree(folder: Path) -> None:
    """fsync every file of ``folder`` and the folder itself: the rename publishes complete data."""
    for f in folder.iterdir():
        if f.is_file():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a directory: the rename is still atomic
        pass
    finally:
        os.close(fd)


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
    if not file.is_file():
        raise WorkbenchError(f"{file} is not a file; it should be a safetensors file written by a save")
    try:
        return load_file(str(file))
    except Exception as e:  # noqa: BLE001 -- any failure to parse a foreign file is the file's fault
        if isinstance(e, MemoryError | KeyboardInterrupt):
            raise
        kind = type(e).__name__ if not isinstance(e, SafetensorError | OSError | ValueError) else ""
        raise WorkbenchError(
            f"{file} is not a readable safetensors file ({kind + ': ' if kind else ''}{e}); it may be "
            "truncated or corrupt: copy or export it again"
        ) from None
