"""Readers for the chatterbot-corpus YAML files (dialog pairs in 21 English topics, 28 languages).

Layout: ``chatterbot_corpus/data/<language>/<topic>.yml`` with a ``conversations`` key holding
lists of turns. A few entries are malformed (a bare string instead of a list); they are skipped
where pairs are needed.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import yaml

from workbench.errors import MissingPackageError

try:  # the C loader is ~10x faster; the pure-Python one is the fallback
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader


def corpus_dir() -> Path:
    """``chatterbot_corpus/data``, or a clear error saying how to install it."""
    spec = importlib.util.find_spec("chatterbot_corpus")
    if spec is None or spec.origin is None:
        raise MissingPackageError(
            "this task reads chatterbot-corpus; run `pip install chatterbot-corpus==1.3.3`"
        )
    return Path(spec.origin).parent / "data"


def _clean(text: str) -> str:
    return " ".join(str(text).split())


@functools.cache
def conversations(language: str, topic: str) -> tuple[tuple[str, ...], ...]:
    """All conversations of one corpus file, each a tuple of whitespace-normalized turns."""
    path = corpus_dir() / language / f"{topic}.yml"
    if not path.is_file():
        raise MissingPackageError(
            f"chatterbot-corpus file {path} is missing; reinstall with "
            "`pip install --force-reinstall chatterbot-corpus==1.3.3`"
        )
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader) or {}
    out = []
    for conv in data.get("conversations") or []:
        turns = [conv] if isinstance(conv, str) else conv
        turns = tuple(_clean(t) for t in turns if isinstance(t, (str, int, float)))
        if turns:
            out.append(turns)
    return tuple(out)


def topics(language: str) -> list[str]:
    """Topic file names (without ``.yml``) of one language folder, sorted."""
    return sorted(p.stem for p in (corpus_dir() / language).glob("*.yml"))


def pairs(language: str, topic: str) -> list[tuple[str, str]]:
    """(first turn, second turn) of every conversation with at least two turns."""
    return [(c[0], c[1]) for c in conversations(language, topic) if len(c) >= 2]


def lines(language: str) -> set[str]:
    """Every distinct turn of every conversation of one language."""
    return {t for topic in topics(language) for c in conversations(language, topic) for t in c}
