"""Latest: one background worker that computes the latest request only (a view's slow previews).

A view asks for a preview with ``submit(job, deliver)``; the job runs on a single worker thread, off the
kernel's main thread, so the notebook keeps answering (another gesture, another cell) while it computes.
Every submit starts a new *generation*; a job checks its generation between its steps (``check()``) and
stops early when a newer one was submitted: the older request is cancelled cooperatively, its result
dropped, and the newer one runs next (a job still queued when a newer arrives is skipped unrun).

Where the result goes: ``deliver(generation, outcome)`` is called on the event loop that was running where
the worker was built (the kernel's: ipykernel runs a cell inside its asyncio loop on the main thread), so
traits are set and comm messages sent from the main thread, never concurrently with a front-end message
being handled. Without a running loop (a script, a test) ``deliver`` is called on the worker thread.
``wait()`` blocks until the latest job is done and hands its outcome to ``deliver`` itself (a caller on
the main thread cannot wait for the loop it is blocking); ``deliver`` must therefore be idempotent per
generation.

Threads: torch's intra-op thread count is set in the worker (``threads``, default 1). Two processes that
each ask torch for two threads on a shared two-core machine spin-wait each other into 10–40× slowdowns
(issue 23); one thread per worker keeps a preview's time steady when a training run or another kernel is
busy beside it. ``torch.set_num_threads`` in the worker sets the worker thread's OpenMP team size; the
main thread, already initialised, keeps its own (threads started later begin with the worker's setting:
torch keeps one process-wide default).

Reference: the "latest value wins" pattern of debounced UI back ends (RxJS ``switchMap``: a new request
cancels the one in flight). Deviation: cancellation is cooperative, between steps; a step already running
(one ``merging.merge`` call) finishes before the check stops the job.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass


class Cancelled(Exception):  # noqa: N818  (a signal, not an error)
    """A newer request was submitted: the job stops at its next ``check()``."""


@dataclass
class Outcome:
    """What a job returned (``value``) or raised (``error``), for the generation it ran in."""

    generation: int
    value: object = None
    error: BaseException | None = None


class Latest:
    """A single worker thread that runs the latest submitted job and cancels the older ones.

    Args:
        threads: torch's intra-op threads inside the worker (None: leave torch's setting alone).
        name: the worker thread's name (shown by debuggers and ``threading.enumerate()``).
    """

    def __init__(self, threads: int | None = 1, name: str = "preview") -> None:
        if threads is not None and int(threads) < 1:
            raise ValueError(f"threads={threads}: give at least 1 (or None to keep torch's setting)")
        self.threads = None if threads is None else int(threads)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._generation = 0
        self._future: Future | None = None
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # no running loop here (a script, a test): deliver on the worker thread
            self._loop = None

    @property
    def generation(self) -> int:
        """The generation of the latest submitted job (or cancel)."""
        return self._generation

    @property
    def busy(self) -> bool:
        """The latest job is queued or running."""
        future = self._future
        return future is not None and not future.done()

    def submit(self, job: Callable[[Callable[[], None]], object],
               deliver: Callable[[Outcome], None]) -> int:
        """Run ``job(check)`` on the worker after the jobs before it stop; returns its generation.

        ``job`` calls ``check()`` between its steps; ``check`` raises ``Cancelled`` once a newer job was
        submitted. ``deliver(outcome)`` gets what the job returned or raised (not when it was cancelled).
        """
        with self._lock:
            self._generation += 1
            generation = self._generation
            self._future = self._pool.submit(self._run, generation, job, deliver)
        return generation

    def cancel(self) -> None:
        """Cancel whatever runs or waits (a result taken from a cache answers instead)."""
        with self._lock:
            self._generation += 1

    def current(self, generation: int) -> bool:
        return generation == self._generation

    def check_for(self, generation: int) -> Callable[[], None]:
        def check() -> None:
            if generation != self._generation:
                raise Cancelled
        return check

    def _run(self, generation: int, job, deliver) -> Outcome | None:
        if not self.current(generation):
            return None  # superseded while queued: never started
        if self.threads is not None:
            import torch  # the worker's own OpenMP team (see the module docstring)
            if torch.get_num_threads() != self.threads:
                torch.set_num_threads(self.threads)
        try:
            outcome = Outcome(generation, value=job(self.check_for(generation)))
        except Cancelled:
            return None
        except Exception as e:  # handed to deliver: the view reports it; wait() raises it
            outcome = Outcome(generation, error=e)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(deliver, outcome)
                return outcome
            except RuntimeError:  # the loop closed meanwhile
                pass
        deliver(outcome)
        return outcome

    def wait(self, deliver: Callable[[Outcome], None], timeout: float | None = None) -> None:
        """Block until the latest job is done, and hand its outcome to ``deliver`` here and now."""
        future = self._future
        if future is None:
            return
        outcome = future.result(timeout)
        if outcome is not None:
            deliver(outcome)

    def close(self) -> None:
        """Cancel what is pending and let the worker thread end."""
        self.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)


__all__ = ["Cancelled", "Latest", "Outcome"]
