"""TrainingMonitor: live loss curves of a run that trains in a background thread; a sweep heatmap.

The monitor drives a ``workbench.training.MultiTaskTrainer`` one step at a time in a thread, so the
notebook stays responsive: cells run, and the pause/resume button (the ``running`` trait) reaches
Python while the model trains. Every step pushes the history into ``losses`` (binary float32).
Leave the lab alone while it runs (``wait()`` blocks until it is done or paused).
"""

from __future__ import annotations

import threading

import anywidget
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import traitlets as t

from widgets._frontend import bundle, stylesheet


def losses_payload(history: pd.DataFrame, title: str = "loss per task") -> dict:
    """The ``losses`` payload from a trainer history (``step, task, loss``): one series per task."""
    if history.empty:
        return {"steps": b"", "values": b"", "names": [], "title": title}
    wide = history.pivot_table(index="task", columns="step", values="loss", aggfunc="first")
    names = [n for n in wide.index if n != "total"]
    if "total" in wide.index and len(names) != 1:  # with one task the total is that task's curve
        names.append("total")
    wide = wide.loc[names]
    return {"steps": np.asarray(wide.columns, dtype=np.float32).tobytes(),
            "values": np.ascontiguousarray(wide.to_numpy(dtype=np.float32)).tobytes(),
            "names": [str(n) for n in names], "title": title}


class TrainingMonitor(anywidget.AnyWidget):
    """Loss curves per task and a pause/resume button for a trainer running in the background.

    Example::

        trainer = MultiTaskTrainer(lab, "joint", tasks, steps=200)
        mon = TrainingMonitor.from_trainer(trainer)
        mon            # display; it trains in a thread, the cell returns at once
        mon.wait()     # block until done (or paused); mon.result() is the trainer's result
    """

    _esm = bundle("training_monitor")
    _css = stylesheet("training_monitor")

    losses = t.Dict().tag(sync=True)
    """Loss curves: ``{"steps": float32 bytes (S,), "values": float32 bytes (K, S), "names", "title"}``."""
    status = t.Unicode("").tag(sync=True)
    """One line: what the run is doing (step, loss, paused, done, or the error that stopped it)."""
    step = t.Int(0).tag(sync=True)
    """Steps done."""
    total = t.Int(0).tag(sync=True)
    """Steps planned."""
    running = t.Bool(False).tag(sync=True)
    """True while the background thread trains; the front end's button flips it to pause/resume."""

    def __init__(self, trainer=None, *, history: pd.DataFrame | None = None, every: int = 1, **kwargs):
        """Args:
            trainer: a ``MultiTaskTrainer`` (it is driven from here), or None to show ``history``.
            history: a finished history to show (``step, task, loss``) when there is no trainer.
            every: refresh the curves every N steps.
        """
        self.trainer, self.every, self.error = trainer, max(1, int(every)), None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        super().__init__(**kwargs)
        if trainer is not None:
            self.total, self.step = trainer.steps, trainer.step_index
            trainer.on_step(self._on_step)
            self.losses = losses_payload(trainer.history)
            self.status = f"ready: {trainer.steps} steps on {', '.join(trainer.task_names)}"
        else:
            hist = history if history is not None else pd.DataFrame(columns=["step", "task", "loss"])
            self.losses = losses_payload(hist)
            self.total = self.step = int(hist.step.max()) + 1 if len(hist) else 0
            self.status = "finished run"

    @classmethod
    def from_trainer(cls, trainer, *, start: bool = True, every: int = 1) -> TrainingMonitor:
        """A monitor on ``trainer``; ``start`` begins training in the background at once."""
        mon = cls(trainer, every=every)
        if start:
            mon.running = True
        return mon

    @classmethod
    def from_history(cls, history: pd.DataFrame) -> TrainingMonitor:
        """A monitor that only shows a finished history (``MultiTaskResult.history``)."""
        return cls(None, history=history)

    # -- the background run ----------------------------------------------------------------------
    @t.observe("running")
    def _toggle(self, change) -> None:
        if change["new"]:
            if self.trainer is None or self.trainer.done:
                self.running = False
                return
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._loop, daemon=True)
                    self._thread.start()

    def _loop(self) -> None:
        try:
            while self.running and not self.trainer.done:
                self.trainer.step(1)
        except Exception as e:  # shown in the widget; the trainer keeps its last good checkpoint
            self.error = e
            self.status = f"stopped: {e}"
        finally:
            self._refresh()
            self.running = False
            if self.error is None:
                done = f"done: {self.total} steps in {self.trainer.seconds:.0f} s"
                paused = f"paused at step {self.trainer.step_index}/{self.total}"
                self.status = done if self.trainer.done else paused

    def _on_step(self, trainer, rows) -> None:
        if trainer.step_index % self.every == 0 or trainer.done:
            self._refresh()
        total = next(r["loss"] for r in rows if r["task"] == "total")
        self.step = trainer.step_index
        self.status = f"step {trainer.step_index}/{self.total} · loss {total:.3f}"

    def _refresh(self) -> None:
        self.losses = losses_payload(self.trainer.history)
        self.step = self.trainer.step_index

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        """Pause after the current step (``start`` resumes)."""
        self.running = False

    def wait(self, timeout: float | None = None) -> None:
        """Block until the background run finishes or pauses."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def result(self):
        """The trainer's ``MultiTaskResult`` so far."""
        return self.trainer.result()


def sweep_heatmap(frame: pd.DataFrame, *, rows: str = "variant", cols: str = "lr", task: str | None = None,
                  title: str | None = None) -> go.Figure:
    """A static heatmap of a ``sweep`` frame: mean score per (rows, cols), e.g. variant × lr."""
    part = frame if task is None else frame[frame.task == task]
    table = part.pivot_table(index=rows, columns=cols, values="value", aggfunc="mean")
    metric = part.metric.iloc[0] if len(part) else "value"
    fig = go.Figure(go.Heatmap(z=table.to_numpy(), x=[f"{c:g}" if isinstance(c, float) else str(c)
                                                       for c in table.columns],
                               y=[str(i) for i in table.index], colorscale="Viridis",
                               colorbar={"title": metric},
                               text=np.round(table.to_numpy(), 3), texttemplate="%{text}"))
    fig.update_layout(title=title or f"{metric} by {rows} and {cols}" + (f" on {task}" if task else ""),
                      xaxis_title=cols, yaxis_title=rows, template="plotly_white", height=320,
                      margin=dict(t=50, b=40))
    return fig
