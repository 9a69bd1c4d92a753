"""Previews in the background (widgets/_latest.py, MergeModel(background=True), MergeBuilder): a newer
request cancels the one computing between its steps and runs next, the stale previews are flagged
meanwhile, answers come back on the event loop, settings seen before are answered from the cache, and
torch's thread count is the worker's own. Deterministic: the slow step is held by events, never by
sleeps or timings."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
import torch

from tests.widgets.fake_comm import FakeComm
from tests.widgets.merge_lab import sources, tiny_merge_lab
from widgets import MergeBuilder
from widgets._heatmap import decode, module_by_layer
from widgets._latest import Latest
from widgets.merge_model import MergeModel
from workbench import merging

HOLD = 60  # seconds an event waits at most before the test fails (never reached when all is well)


@pytest.fixture
def lab():
    return tiny_merge_lab()


class Held(MergeModel):
    """A MergeModel whose first step (the angles) waits for ``release`` while ``hold`` is set: the real
    computation, paused where a slow one would still be running."""

    def __init__(self, *args, **kwargs):
        self.hold, self.entered, self.release = False, threading.Event(), threading.Event()
        self.boom = False
        super().__init__(*args, **kwargs)

    def _angles(self, chosen, sources):
        if self.boom:
            raise RuntimeError("a bug in a preview")
        if self.hold:
            self.hold = False  # only the first request after `hold` is set waits
            self.entered.set()
            assert self.release.wait(HOLD)
        return super()._angles(chosen, sources)


def weights(a: float) -> dict:
    return {"a": a, "b": 1.0, "c": 1.0}


def test_latest_cancels_the_older_job_between_steps():
    worker = Latest(threads=1)
    started, release, delivered, steps = threading.Event(), threading.Event(), [], []

    def slow(check):
        started.set()
        assert release.wait(HOLD)
        check()  # a newer job was submitted meanwhile: stops here
        steps.append("slow finished")
        return "slow"

    def quick(check):
        check()
        return "quick"

    first = worker.submit(slow, delivered.append)
    assert started.wait(HOLD) and worker.busy
    second = worker.submit(quick, delivered.append)
    third = worker.submit(quick, delivered.append)  # supersedes the second before it starts
    assert (first, second, third) == (1, 2, 3)
    release.set()
    worker.wait(lambda outcome: None)
    assert steps == [] and [(o.generation, o.value) for o in delivered] == [(3, "quick")]
    assert not worker.busy
    worker.close()


def test_latest_sets_torchs_threads_in_the_worker_only():
    before = torch.get_num_threads()
    worker = Latest(threads=2)
    got = []
    worker.submit(lambda check: torch.get_num_threads(), got.append)
    worker.wait(lambda outcome: None)
    assert got[0].value == 2 and torch.get_num_threads() == before
    worker.close()
    with pytest.raises(ValueError, match="at least 1"):
        Latest(threads=0)


def test_a_newer_request_cancels_the_one_computing(lab):
    m = Held(lab, background=True)
    m.wait()
    assert m.status == "current" and m.answered == 0 and not m.stale and m.computing == -1
    first = m.result
    heard: list[dict] = []
    m.subscribe(heard.append)
    m.hold = True
    m.update(weights=weights(0.5), request=1)
    assert m.entered.wait(HOLD)  # request 1 is computing (paused in its first step)
    assert m.busy and m.status == "computing…" and m.computing == 1 and m.stale
    assert m.answered == 0 and m.result is first  # the previews shown are request 0's, flagged stale
    m.update(weights=weights(-1.0), request=2)  # a second gesture, answered at once
    assert m.computing == 2 and m.stale and m.answered == 0
    m.update(metric="mass_lost", request=3)  # same settings as request 2: carried by its answer
    m.release.set()
    m.wait()
    assert not m.busy and m.answered == 3 and m.status == "current" and not m.stale and m.computing == -1
    assert [h["answered"] for h in heard if "answered" in h] == [3]  # nothing of request 1 was shown
    expected = merging.merge(sources(lab), "task_arithmetic", [-1.0, 1.0, 1.0], name="merged")
    np.testing.assert_allclose(decode(m.error_map), module_by_layer(expected.error, "value"), rtol=1e-5)
    assert m.result.total_error == pytest.approx(expected.total_error, rel=1e-6)
    assert m.metric == "mass_lost" and m.interference["title"].startswith("L1 mass lost")
    assert m.key() in m._previews and (m.key()[0], (0.5, 1.0, 1.0)) not in [k[:2] for k in m._previews]
    m.close()


def test_settings_seen_before_are_answered_from_the_cache(lab):
    m = Held(lab, background=True)
    m.wait()
    first = m.result
    m.update(weights=weights(0.5), request=1)
    m.wait()
    m.hold = True
    m.update(weights=weights(2.0), request=2)
    assert m.entered.wait(HOLD)
    m.update(weights=weights(1.0), request=3)  # back to request 0's settings while request 2 computes
    assert not m.busy and m.answered == 3 and m.result is first and m.status == "current"
    m.release.set()
    m.wait()
    assert m.answered == 3 and m.result is first  # request 2's work was dropped
    m.close()


def test_answers_come_back_on_the_event_loop(lab):
    async def main():
        loop = asyncio.get_running_loop()
        answers: dict[int, asyncio.Future] = {0: loop.create_future(), 1: loop.create_future()}
        threads: list[str] = []

        def listen(fields):
            if "answered" in fields:
                threads.append(threading.current_thread().name)
                answers[fields["answered"]].set_result(fields)
        m = Held(lab, background=True)  # built where a loop runs (a kernel): answers are posted to it
        m.subscribe(listen)  # before the first answer can be posted: this coroutine holds the loop
        await asyncio.wait_for(answers[0], HOLD)
        m.update(weights=weights(0.5), request=1)
        assert m.busy  # update returned before the work
        fields = await asyncio.wait_for(answers[1], HOLD)
        m.close()
        return fields, threads

    fields, threads = asyncio.run(main())
    assert fields["status"] == "current" and threads == [threading.main_thread().name] * 2


def test_a_bug_in_the_background_is_reported_and_raised_by_wait(lab):
    m = Held(lab, background=True)
    m.wait()
    m.boom = True
    m.update(weights=weights(0.5), request=1)
    with pytest.raises(RuntimeError, match="a bug in a preview"):
        m.wait()
    assert m.status.startswith("error: RuntimeError") and m.answered == 1
    m.boom = False
    m.update(weights=weights(0.25), request=2)
    m.wait()
    assert m.status == "current"
    m.close()


def test_the_view_answers_a_browser_gesture_in_the_background(lab):
    b = MergeBuilder.from_lab(lab)  # background by default; the first previews are in when it returns
    assert b.status == "current" and b.answered == 0 and not b.stale
    b.comm = comm = FakeComm()
    b.set_state({"weights": weights(0.5), "request": 1, "status": "computing…"})
    b.set_state({"weights": weights(0.25), "request": 2, "status": "computing…"})  # a second gesture
    assert b.request == 2  # taken at once, whatever computes
    b.wait()
    assert b.answered == 2 and b.status == "current" and not b.stale and b.computing == -1
    assert [s["answered"] for s in comm.states() if "answered" in s][-1] == 2
    b.method = "svd"  # assigned from Python: the cell sees its previews
    assert b.status == "current" and b.result.adapter.lineage["merge"]["method"] == "svd"
    b.model.close()
