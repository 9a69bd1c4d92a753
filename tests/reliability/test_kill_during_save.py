"""A process saving an adapter over and over is SIGKILLed at random moments: the folder always holds the
complete old or the complete new adapter, leftovers are ignored by readers and cleaned by the next save."""

from __future__ import annotations

import os
import random
import signal
import time

import pytest
import torch

from workbench.adapters import Adapter, LoraFactors, read_peft, write_peft
from workbench.adapters.files import visible_entries

MODULES = [f"model.layers.{i}.self_attn.{m}" for i in range(2) for m in ("q_proj", "v_proj")]


def version(v: int) -> Adapter:
    """About 8 MB of factors whose every value says which version it is."""
    return Adapter(
        "big",
        {
            m: LoraFactors(torch.full((64, 4096), float(v)), torch.full((4096, 64), float(v)), 8.0)
            for m in MODULES
        },
    )


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_kill_at_any_moment_leaves_the_old_or_the_new_adapter(tmp_path):
    path = tmp_path / "big"
    write_peft(version(0), path)
    versions = {1: version(1), 2: version(2)}  # built before forking: the child runs no OpenMP work
    rng = random.Random(0)
    seen, interrupted = set(), 0
    for _ in range(8):
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child saves versions 1, 2, 1, 2, ... until it is killed
            try:
                os.close(ready_r)
                os.write(ready_w, b"x")
                v = 1
                while True:
                    write_peft(versions[v], path, overwrite=True)
                    v = 3 - v
            except BaseException:
                import traceback

                (tmp_path / "child-error.txt").write_text(traceback.format_exc())
            finally:
                os._exit(1)
        os.close(ready_w)
        os.read(ready_r, 1)
        os.close(ready_r)
        time.sleep(rng.uniform(0.0, 0.4))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        adapter = read_peft(path)  # complete: it loads, and every value is one version's
        values = {float(t.unique().item()) for f in adapter.modules.values() for t in (f.A, f.B)}
        assert len(values) == 1 and sorted(adapter.modules) == sorted(MODULES), values
        seen |= values
        interrupted += any(p.name.startswith(".big.") for p in tmp_path.iterdir())
        assert [p.name for p in visible_entries(tmp_path)] == ["big"]  # readers skip the leftovers
    write_peft(version(3), path, overwrite=True)  # the next save removes what interrupted saves left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big"]
    assert float(read_peft(path).modules[MODULES[0]].A[0, 0]) == 3.0
    assert seen and interrupted  # kills landed inside saves; which version survived depends on timing
