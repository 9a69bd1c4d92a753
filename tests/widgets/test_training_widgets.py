"""Training monitors without a browser: live updates from a background run, pause by a front-end
message, binary payloads that equal the engine's frames, and clear errors."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import traitlets
from ipywidgets.widgets.widget import _remove_buffers

from tests.conftest import tiny_lab
from tests.training.helpers import two_tasks
from widgets import ConflictMonitor, TrainingMonitor, sweep_heatmap
from widgets._heatmap import decode
from widgets.conflict_monitor import pair_mean
from workbench.errors import WorkbenchError
from workbench.training import MultiTaskTrainer


def trainer(steps=6, **kw):
    return MultiTaskTrainer(tiny_lab(), "j", two_tasks(), r=4, steps=steps, lr=1e-2, batch_size=4,
                            progress=False, **kw)


def test_training_monitor_trains_in_the_background_and_the_cell_returns():
    tr = trainer(steps=8)
    gate = threading.Event()
    tr.on_step(lambda t, rows: gate.wait(30) if t.step_index == 2 else None)  # hold the run at step 2
    mon = TrainingMonitor.from_trainer(tr)
    assert mon.running and mon._thread.is_alive()  # the constructor returned while training goes on
    assert mon.step <= 2
    gate.set()
    mon.wait(60)
    assert not mon.running and mon.step == 8 and mon.status.startswith("done")
    state = mon.get_state()
    _, paths, buffers = _remove_buffers(state)
    assert ["losses", "values"] in paths and ["losses", "steps"] in paths
    values = np.frombuffer(mon.losses["values"], dtype=np.float32).reshape(len(mon.losses["names"]), -1)
    hist = tr.history
    total = hist[hist.task == "total"].loss.to_numpy(dtype=np.float32)
    assert mon.losses["names"][-1] == "total"
    np.testing.assert_allclose(values[-1], total)


def test_a_pause_from_the_front_end_stops_the_thread_and_resume_goes_on():
    tr = trainer(steps=30)
    paused = threading.Event()

    def slow(t, rows):
        if t.step_index == 3:
            mon.set_state({"running": False})  # what the pause button sends
            paused.set()

    tr.on_step(slow)
    mon = TrainingMonitor.from_trainer(tr)
    assert paused.wait(60)
    mon.wait(60)
    assert not mon.running and tr.step_index == 3 and mon.status.startswith("paused at step 3")
    mon.set_state({"running": True})  # resume
    mon.wait(120)
    assert tr.done and mon.status.startswith("done")


def test_conflict_monitor_shows_the_capture_and_answers_a_click():
    tr = trainer(steps=6, capture_every=2)
    mon = ConflictMonitor.from_trainer(tr)
    mon.wait(60)
    cap = tr.conflicts
    assert cap.steps == [0, 2, 4]
    expected = pair_mean(cap.cosines(by="layer")).pivot(index="layer", columns="step", values="value")
    np.testing.assert_allclose(decode(mon.heatmap), expected.to_numpy(), atol=1e-6)
    assert mon.heatmap["rows"] == ["0", "1"] and mon.heatmap["cols"] == ["0", "2", "4"]
    assert mon.matrix["at"] == ["total", 4]
    total = cap.cosines(by="total", last=True).pivot(index="task", columns="task_b", values="value")
    np.testing.assert_allclose(decode(mon.matrix), total.to_numpy(), atol=1e-6)
    mon.set_state({"selected": [1, 2]})  # a click on layer 1, step 2
    assert mon.matrix["at"] == [1, 2]
    one = cap.cosines(by="layer", step=2).query("layer == 1").pivot(index="task", columns="task_b",
                                                                   values="value")
    np.testing.assert_allclose(decode(mon.matrix), one.to_numpy(), atol=1e-6)
    with pytest.raises(traitlets.TraitError, match="captured step"):
        mon.selected = [0, 3]


def test_monitors_from_finished_runs_and_bad_input():
    res = trainer(steps=3, capture_every=1).run()
    mon = ConflictMonitor.from_capture(res.conflicts, res.history)
    assert mon.total == 3 and mon.matrix["shape"] == [2, 2] and not mon.running
    mon.running = True  # nothing to train: it stays off
    assert not mon.running
    assert TrainingMonitor.from_history(res.history).losses["names"] == ["left", "right", "total"]
    one_task = res.history[res.history.task != "right"]  # one task: the total is its curve
    assert TrainingMonitor.from_history(one_task).losses["names"] == ["left"]
    with pytest.raises(WorkbenchError, match="capture_every"):
        ConflictMonitor.from_trainer(trainer(steps=2))


def test_a_failing_run_shows_its_error():
    broken = [{"input_ids": [5, 6, 7], "labels": [-100, -100, -100]}] * 4
    tr = MultiTaskTrainer(tiny_lab(), "j", {"broken": broken}, r=2, steps=5, lr=1e-2, batch_size=2,
                          progress=False)
    mon = TrainingMonitor.from_trainer(tr)
    mon.wait(60)
    assert isinstance(mon.error, WorkbenchError) and mon.status.startswith("stopped: training 'j' stopped")
    assert not mon.running


def test_sweep_heatmap_is_a_figure_of_means():
    import pandas as pd

    frame = pd.DataFrame({"lr": [1e-3, 1e-3, 1e-2, 1e-2], "variant": ["lora", "lora", "lora", "pissa"],
                          "value": [0.2, 0.4, 0.6, 0.8], "task": "t", "metric": "accuracy"})
    fig = sweep_heatmap(frame)
    z = np.asarray(fig.data[0].z, dtype=float)
    assert z[0].tolist() == pytest.approx([0.3, 0.6]) and np.isnan(z[1, 0]) and z[1, 1] == pytest.approx(0.8)
