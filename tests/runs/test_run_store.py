"""The run store: a lab's trainings, merges and evaluations read back from a fresh process, and a merge
re-created bit for bit from its recipe by the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import tiny_lab
from workbench.adapters import read_peft
from workbench.errors import WorkbenchError
from workbench.runs import available, read_recipe, recipe_of, replay

pytestmark = pytest.mark.skipif(not available(), reason="MLflow is not installed (the [track] extra)")
ROOT = Path(__file__).resolve().parents[2]


def _task():
    from workbench.tasks import Example, Task

    ex = [Example("what is one plus two ?", "three"), Example("what is two plus two ?", "four"),
          Example("what is one plus four ?", "five"), Example("what is three plus three ?", "six")]
    return Task("double", "sums", "exact_match", ex, ex)


def _lab():
    from tests.tasks.helpers import build_tokenizer
    from workbench import Workbench, zoo

    z = zoo.load("tiny-llama")
    return Workbench(z.model, build_tokenizer(), name="tiny-llama", fingerprint=z.fingerprint)


def _fresh_process(code: str, tmp_path: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow  # MLflow imported in three processes and a fresh database (~40 s idle)
def test_trainings_merges_and_evaluations_are_read_back_from_a_fresh_process(tmp_path):
    uri = f"sqlite:///{tmp_path / 'runs.db'}"
    lab = _lab()
    lab.track(uri)
    a, history = lab.train_lora("a", _task(), r=2, steps=3, batch_size=2, seed=1, progress=False)
    lab.train_lora("b", _task(), r=2, steps=3, batch_size=2, seed=2, progress=False)
    merged = lab.merge(["a", "b"], method="ties", weights=[0.7, 0.3], density=0.5, name="m")
    scores = lab.evaluate([None, "m"], _task(), progress=False)
    lab.tracker.flush()
    assert lab.tracker.errors == []

    out = _fresh_process(f"""
import json
from workbench.runs import read_runs
runs = read_runs({uri!r})
print(json.dumps([{{k: (v if isinstance(v, (str, dict)) or v is None else str(v)) for k, v in r.items()}}
                  for r in runs.drop(columns=["start"]).to_dict("records")]))
""", tmp_path)
    runs = {(r["kind"], r["name"]): r for r in json.loads(out)}
    assert set(runs) == {("adapter", "a"), ("adapter", "b"), ("adapter", "m"), ("evaluation", "evaluate")}
    trained = runs[("adapter", "a")]
    assert trained["event"] == "trained" and trained["params"]["method"] == "train_lora"
    assert trained["params"]["seed"] == "1" and trained["params"]["steps"] == "3"
    assert float(trained["metrics"]["train/loss"]) == pytest.approx(history["loss"].iloc[-1])
    m = runs[("adapter", "m")]
    assert m["event"] == "merged" and m["method"] == "merge:ties"
    assert json.loads(m["params"]["merge.weights"]) == [0.7, 0.3]
    evaluation = runs[("evaluation", "evaluate")]
    for row in scores.itertuples():
        assert evaluation["metrics"][f"{row.adapter}/double/{row.metric}"] == pytest.approx(row.value)

    # the merged run holds its PEFT files, its model card and its recipe; the recipe replays bit for bit
    folder = Path(m["artifact_uri"].removeprefix("file://"))
    assert "merge: `ties`" in (folder / "README.md").read_text().lower()
    saved = read_peft(folder / "adapter")
    recipe = read_recipe(folder / "recipe.json")
    assert recipe == json.loads(json.dumps(recipe_of(merged, base=lab.name)))
    out_dir = tmp_path / "again"
    _fresh_process(f"""
from workbench.cli import main
recipe = {str(folder / 'recipe.json')!r}
raise SystemExit(main(["merge", recipe, "--store", {uri!r}, "--out", {str(out_dir)!r}]))
""", tmp_path)
    again = read_peft(out_dir)
    for path, f in merged.modules.items():
        for x, y, z in ((f.A, saved.modules[path].A, again.modules[path].A),
                        (f.B, saved.modules[path].B, again.modules[path].B)):
            assert torch.equal(x, y) and torch.equal(x, z)


def test_a_recipe_refuses_a_changed_source_and_a_non_merge():
    lab = tiny_lab()
    lab.new_adapter("a", r=2, init="random", seed=0)
    lab.new_adapter("b", r=2, init="random", seed=1)
    m = lab.merge(["a", "b"], method="task_arithmetic", weights=[1, 1], name="m")
    recipe = recipe_of(m, base=lab.name)
    same = replay(recipe, lambda src: lab.adapters[src["name"]])
    assert all(torch.equal(same.modules[p].A, m.modules[p].A) for p in m.modules)
    changed = lab.adapters["b"].copy()
    next(iter(changed.modules.values())).B.add_(1e-3)
    with pytest.raises(WorkbenchError, match="changed since the merge"):
        replay(recipe, lambda src: changed if src["name"] == "b" else lab.adapters["a"])
    with pytest.raises(WorkbenchError, match="not a merge"):
        recipe_of(lab.adapters["a"], base=lab.name)


def test_tracking_off_records_nothing_and_says_how_to_turn_it_on(tmp_path):
    lab = _lab()
    assert lab.tracker is None  # LORA_WORKBENCH_TRACKING=0 in tests/conftest.py
    lab.train_lora("a", _task(), r=2, steps=1, batch_size=2, progress=False)
    with pytest.raises(WorkbenchError, match="lab.track"):
        lab.runs()
    assert not list(tmp_path.iterdir()) and not (Path.cwd() / "mlflow.db").exists()


@pytest.mark.slow  # MLflow and a fresh database
def test_every_search_candidate_is_recorded_with_its_weights_and_scores(tmp_path):
    from tests.experiments.toy import toy_lab, toy_tasks
    from workbench.search import LabObjective, SearchSpace, search

    names = ["colour", "fruit", "sum"]
    lab = toy_lab()
    for i, n in enumerate(names):
        lab.new_adapter(n, r=2, targets="attention", init="random", seed=i)
    lab.track(f"sqlite:///{tmp_path / 'runs.db'}")
    run = search(LabObjective(lab, names, toy_tasks(), limit=2), SearchSpace(names), "random", budget=2,
                 seed=0, progress=False)
    candidates = lab.runs("candidate").sort_values("name")
    assert list(candidates.name) == [f"{run.name} #0", f"{run.name} #1"]
    best = run.frame[run.frame.candidate == 1].iloc[0]
    recorded = candidates.iloc[1]
    assert float(recorded.metrics["objective"]) == pytest.approx(best.objective)
    assert float(recorded.params["weight.colour"]) == pytest.approx(best["weight.colour"])


@pytest.mark.slow  # MLflow and a fresh database
def test_every_sweep_point_is_recorded_with_its_settings_and_scores(tmp_path):
    from tests.training.test_training_sweep import toy
    from workbench.training.sweep import sweep

    lab, task = toy()
    lab.track(f"sqlite:///{tmp_path / 'runs.db'}")
    frame = sweep(lab, task, {"lr": [1e-3, 1e-2], "r": [2]}, cache_dir=tmp_path / "cache", steps=2,
                  batch_size=2, progress=False)
    points = lab.runs("sweep")
    assert len(points) == 2
    for row in frame.itertuples():
        [point] = [p for p in points.itertuples() if float(p.params["lr"]) == row.lr]
        assert point.metrics[f"sums/{row.metric}"] == pytest.approx(row.value)
        assert point.metrics["final_loss"] == pytest.approx(row.final_loss)
