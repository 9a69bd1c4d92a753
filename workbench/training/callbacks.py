"""Callbacks of a run: after every step, every N steps (an evaluation), at every checkpoint, at the end.

    loop.callbacks.on_step(lambda loop, rows: ...)            # rows: that step's history rows
    loop.callbacks.on_eval(lambda loop: lab.evaluate(...), every=10)
    loop.callbacks.on_checkpoint(lambda loop, ckpt: ...)
    loop.callbacks.on_finish(lambda loop: ...)                # once, when the last step is done
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from workbench.errors import WorkbenchError


@dataclass
class Callbacks:
    """The callables a loop calls; each ``on_*`` adds one."""

    step: list[Callable] = field(default_factory=list)
    eval: list[tuple[int, Callable]] = field(default_factory=list)
    checkpoint: list[Callable] = field(default_factory=list)
    finish: list[Callable] = field(default_factory=list)
    results: list[tuple[int, object]] = field(default_factory=list)  # (step, what an eval callback gave)

    def on_step(self, fn: Callable) -> None:
        """``fn(loop, rows)`` after every step."""
        self.step.append(fn)

    def on_eval(self, fn: Callable, every: int) -> None:
        """``fn(loop)`` after every ``every``-th step (and after the last); results kept in ``results``."""
        if int(every) < 1:
            raise WorkbenchError(f"on_eval counts steps: give every >= 1; got {every}")
        self.eval.append((int(every), fn))

    def on_checkpoint(self, fn: Callable) -> None:
        """``fn(loop, checkpoint)`` whenever a checkpoint is made."""
        self.checkpoint.append(fn)

    def on_finish(self, fn: Callable) -> None:
        """``fn(loop)`` once, after the last step (before the final checkpoint)."""
        self.finish.append(fn)

    def after_step(self, loop, rows: list[dict]) -> None:
        for fn in self.step:
            fn(loop, rows)
        for every, fn in self.eval:
            if loop.step_index % every == 0 or loop.done:
                self.results.append((loop.step_index, fn(loop)))
