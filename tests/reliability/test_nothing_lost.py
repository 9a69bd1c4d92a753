"""Nothing lost: overwrite replaces only our folders, leftovers of saves are cleaned and skipped, a call
that fails midway leaves the lab as it was, and the command line and dashboard say what they do."""

from __future__ import annotations

import argparse
import json
import shutil

import pytest
import torch

from tests.conftest import tiny_lab
from tests.multimodal.helpers import tiny_text_lab
from tests.reliability.world import build_lab
from workbench.adapters import read_peft
from workbench.adapters.files import foreign_files, is_leftover, visible_entries
from workbench.errors import WorkbenchError


def _task():
    from workbench.tasks import Example, Task

    ex = [Example(f"what is {i}+{i}?", str(2 * i)) for i in range(6)]
    return Task("double", "six sums", "exact_match", ex, ex)


def _state(lab) -> tuple:
    return (
        sorted(lab.adapters),
        sorted(lab.routers),
        sorted(lab.layers),
        dict(lab.active.weights),
        {n: [t.clone() for t in r.state_dict().values()] for n, r in lab.routers.items()},
    )


def _same(a: tuple, b: tuple) -> bool:
    return (
        a[:4] == b[:4]
        and a[4].keys() == b[4].keys()
        and all(torch.equal(x, y) for n in a[4] for x, y in zip(a[4][n], b[4][n], strict=True))
    )


# -- overwrite replaces only our folders --------------------------------------------------------------
def test_overwrite_replaces_our_adapter_router_and_peft_folders(tmp_path):
    lab = build_lab()
    lab.save_adapter("a", tmp_path / "a")
    lab.save_adapter("b", tmp_path / "a", overwrite=True)  # an adapter of ours: replaced
    assert read_peft(tmp_path / "a").ranks == lab.adapters["b"].ranks
    (tmp_path / "a" / "README.md").write_text("model card written by peft")  # peft's save_pretrained
    lab.save_adapter("a", tmp_path / "a", overwrite=True)
    assert not (tmp_path / "a" / "README.md").exists()
    lab.save_router("rt", tmp_path / "rt")
    lab.save_router("rt", tmp_path / "rt", overwrite=True)
    (tmp_path / "empty").mkdir()
    lab.save_adapter("a", tmp_path / "empty", overwrite=True)  # nothing to lose in an empty folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "empty", "rt"]


def test_foreign_files_are_named(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    assert foreign_files(tmp_path) == []
    (tmp_path / "train.py").write_text("")
    (tmp_path / "runs").mkdir()
    assert foreign_files(tmp_path) == ["runs", "train.py"]
    only_weights = tmp_path / "w"
    only_weights.mkdir()
    (only_weights / "adapter_model.safetensors").write_bytes(b"")
    assert foreign_files(only_weights) == ["adapter_model.safetensors"]  # no config: not recognizably ours


# -- leftovers of interrupted saves -------------------------------------------------------------------
def test_leftovers_are_cleaned_by_the_next_save_and_skipped_by_readers(tmp_path):
    lab = build_lab()
    lab.save_adapter("a", tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / ".a.old")
    shutil.copytree(tmp_path / "a", tmp_path / ".a.x1y2z3w4")
    (tmp_path / ".a.q9q9q9q9").mkdir()
    (tmp_path / ".a.q9q9q9q9" / ".lora-workbench-partial").touch()  # a save killed while writing
    (tmp_path / ".a.mine").mkdir()  # a user's own hidden folder: not a leftover (name)
    (tmp_path / ".a.snapshot").mkdir()  # the leftovers' name pattern, but a user's file inside: kept
    (tmp_path / ".a.snapshot" / "keep.txt").write_text("mine")
    mine_old = tmp_path / ".b.old"  # looks like a leftover, but holds a user's file: kept
    mine_old.mkdir()
    (mine_old / "notes.txt").write_text("mine")
    assert [p.name for p in visible_entries(tmp_path)] == ["a"]
    assert is_leftover(tmp_path / ".a.old") and not is_leftover(mine_old)
    lab.save_adapter("b", tmp_path / "a", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".a.mine", ".a.snapshot", ".b.old", "a"]
    assert (mine_old / "notes.txt").read_text() == "mine"


def test_the_serve_listing_skips_leftovers_and_unreadable_entries_and_takes_any_name(tmp_path):
    from widgets.dashboard import Dashboard, load_folder, skipped_note

    lab = build_lab()
    lab.save_adapter("a", tmp_path / "my-adapter")
    lab.save_adapter("b", tmp_path / "2nd.adapter")
    lab.save_adapter("a", tmp_path / "broken")
    (tmp_path / "broken" / "adapter_config.json").write_text("[1]")
    shutil.copytree(tmp_path / "my-adapter", tmp_path / ".my-adapter.old")
    (tmp_path / "scores.csv").write_bytes(b"\xff\xfe not a table")
    with pytest.raises(WorkbenchError, match="JSON list"):
        load_folder(tmp_path)  # strict without a place to note what was skipped
    board = Dashboard.from_folder(tmp_path, load_base=False)
    assert sorted(board.adapters) == ["adapter_2nd_adapter", "my_adapter"]
    assert sorted(board.skipped) == ["broken", "scores.csv"] and "JSON list" in board.skipped["broken"]
    assert board.scores is None
    note = skipped_note(board.skipped)
    assert "Skipped 2 unreadable entries" in note and "`broken`" in note
    title = board.app()[0].object
    assert "Skipped 2 unreadable entries" in title


# -- a failed call leaves the lab as it was ---------------------------------------------------------
def test_training_that_fails_midway_removes_the_half_trained_adapter():
    lab = tiny_text_lab()
    lab.new_adapter("keep", r=2)
    before = _state(lab)
    with pytest.raises(WorkbenchError, match="lr=1e\\+30"):  # the loss became non-finite
        lab.train_lora("t", _task(), r=2, steps=20, lr=1e30, batch_size=2, progress=False)
    assert _same(_state(lab), before)
    lab.train_lora("t", _task(), r=2, steps=1, batch_size=2, progress=False)  # the retry works
    assert "t" in lab.adapters


def test_router_training_that_fails_midway_puts_the_weights_back():
    lab = tiny_text_lab()
    lab.add_router("rt", "smora", r=4, k=2)
    before = _state(lab)
    with pytest.raises(WorkbenchError, match="lr=1e\\+30"):  # the loss became non-finite
        lab.train_router("rt", _task(), steps=20, lr=1e30, batch_size=2, progress=False)
    assert _same(_state(lab), before)


def test_multitask_training_that_fails_midway_removes_the_new_adapter():
    lab = tiny_text_lab()
    before = _state(lab)
    with pytest.raises(WorkbenchError):
        lab.train_multitask("m", {"t": _task()}, r=2, steps=20, lr=1e30, batch_size=2, progress=False)
    assert _same(_state(lab), before)


def test_a_router_whose_weights_do_not_fit_leaves_no_wrapping(tmp_path):
    lab = build_lab()
    lab.save_router("rt", tmp_path / "rt")
    fresh = tiny_lab()
    config = json.loads((tmp_path / "rt" / "router.json").read_text())
    config["params"]["r"] = 8
    (tmp_path / "rt" / "router.json").write_text(json.dumps(config))
    with pytest.raises(WorkbenchError, match="do not fit"):
        fresh.load_router(tmp_path / "rt")
    assert not fresh.routers and not fresh.layers


def test_a_failed_merge_into_base_keeps_the_base(tmp_path):
    lab = build_lab()
    lab.merge_into_base("a")
    with pytest.raises(WorkbenchError, match="already merged"):
        lab.merge_into_base("a")
    lab.unmerge()
    assert lab.fingerprint == __import__("workbench").zoo.fingerprint(lab.model)


# -- the command line says what it does ---------------------------------------------------------------
def test_a_non_loopback_host_warns_and_needs_a_token(capsys, monkeypatch):
    from workbench.cli import check_host

    monkeypatch.delenv("LORA_WORKBENCH_TOKEN", raising=False)
    assert check_host("127.0.0.1", None) is None and check_host("localhost", None) is None
    assert capsys.readouterr().err == ""
    assert check_host("0.0.0.0", "s3cret") == "s3cret"
    assert "reachable from other machines" in capsys.readouterr().err
    with pytest.raises(WorkbenchError, match="token is required"):
        check_host("10.0.0.2", None)


def test_lab_says_when_it_adds_allow_root(tmp_path, capsys):
    from workbench.cli import lab_command

    args = argparse.Namespace(port=8888, no_browser=True, extra=[])
    assert "--allow-root" not in lab_command(tmp_path / "tutorials", args, root=False)
    assert capsys.readouterr().err == ""
    assert "--allow-root" in lab_command(tmp_path / "tutorials", args, root=True)
    assert "running as root, so --allow-root is passed" in capsys.readouterr().err
