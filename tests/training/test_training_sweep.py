"""Sweeps: a grid trains once, lands on disk (json + safetensors), and a rerun reads it back."""

from __future__ import annotations

import pytest
from safetensors.torch import load_file

from tests.tasks.helpers import build_tokenizer
from workbench import Workbench, zoo
from workbench.errors import WorkbenchError
from workbench.tasks import Example, Task
from workbench.training.sweep import VARIANTS, spread, sweep


def toy():
    z = zoo.load("tiny-llama")
    lab = Workbench(z.model, build_tokenizer(), name="tiny-llama", fingerprint=z.fingerprint)
    ex = [Example("what is one plus two ?", "three", ("three", "four")),
          Example("what is two plus two ?", "four", ("three", "four")),
          Example("what is one plus three ?", "four", ("three", "four")),
          Example("what is two plus one ?", "three", ("three", "four"))]
    return lab, Task("sums", "toy sums", "accuracy", ex[:3], ex[3:], max_length=40)


def test_sweep_caches_every_point_and_reruns_without_training(tmp_path):
    lab, task = toy()
    grid = {"lr": [1e-3, 1e-2], "variant": ["lora", "pissa"], "r": [2]}
    first = sweep(lab, task, grid, cache_dir=tmp_path, steps=2, batch_size=2, progress=False)
    assert len(first) == 4 and not first.cached.any()
    assert set(first.columns) == {"lr", "variant", "rank", "seed", "task", "metric", "value", "final_loss",
                                  "cached"}
    files = sorted(tmp_path.iterdir())
    assert len([f for f in files if f.suffix == ".json"]) == 4
    assert len([f for f in files if f.suffix == ".safetensors"]) == 4
    assert not [f for f in files if f.name.endswith(".tmp")]
    tensors = load_file(next(f for f in files if f.suffix == ".safetensors"))
    assert any(k.endswith("lora_B") for k in tensors)
    stamps = {f: f.stat().st_mtime_ns for f in files}
    again = sweep(lab, task, grid, cache_dir=tmp_path, steps=2, batch_size=2, progress=False)
    assert again.cached.all() and again.drop(columns="cached").equals(first.drop(columns="cached"))
    assert {f: f.stat().st_mtime_ns for f in files} == stamps  # nothing rewritten
    assert lab.adapters == {} and all(not layer.merged for layer in lab.layers.values())
    shares = spread(first)
    assert set(shares.factor) == {"lr", "variant"} and shares.value.between(0, 1).all()


def test_sweep_refuses_bad_grids(tmp_path):
    lab, task = toy()
    with pytest.raises(KeyError, match="lorapro"):
        sweep(lab, task, {"variant": ["dora"]}, cache_dir=tmp_path, progress=False)
    with pytest.raises(WorkbenchError, match="> 0"):
        sweep(lab, task, {"lr": [0.0]}, cache_dir=tmp_path, progress=False)
    with pytest.raises(WorkbenchError, match="unknown"):
        sweep(lab, task, {"alpha": [1]}, cache_dir=tmp_path, progress=False)
    assert {"lora", "rslora", "loraplus", "pissa", "lorapro", "nola"} <= set(VARIANTS.names())
