"""The lab's run store: every adapter it makes or takes in, and every evaluation, recorded in MLflow.

    lab.track("sqlite:///runs.db")    # record there (a new lab records to MLflow's default
                                      # sqlite:///mlflow.db when MLflow is installed; see workbench.runs)
    lab.track(False)                  # nothing is recorded from now on
    lab.runs()                        # the records, newest first, as a DataFrame

Records are written by a background thread: a call returns at once, and a failed write only warns.
Adapters are recorded when trained (``train_lora``, ``train_multitask``), loaded, merged, extracted,
exported from a router or generated (anything ``add_adapter`` takes in that is not a fresh or a
private evaluation copy), with their PEFT files (once per content), a model card and, for merges, the
recipe that re-creates them (``lora-workbench merge recipe.json``).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator

import pandas as pd

from workbench.adapters import Adapter
from workbench.adapters.update_cache import adapter_fingerprint
from workbench.errors import WorkbenchError
from workbench.evaluation.private import PREFIX
from workbench.runs import EXPERIMENT, Tracker, from_env, model_card, recipe_of

FRESH = {"new"}  # lineage methods of adapters not made yet (training records them when it ends)


class Tracking:
    """Mixin of ``Workbench``: ``track``, ``runs`` and the records its methods make."""

    _tracker: Tracker | None | bool = True  # True: not decided yet (from the environment on first use)
    _event: str | None = None
    _recorded: set | None = None

    @property
    def tracker(self) -> Tracker | None:
        """Where this lab records (``None``: nowhere)."""
        if self._tracker is True:
            self._tracker = from_env()
        return self._tracker

    def track(self, uri: str | bool = True, *, experiment: str = EXPERIMENT) -> Tracker | None:
        """Record to ``uri`` (an MLflow tracking URI; ``True``: MLflow's default ``sqlite:///mlflow.db``),
        or stop recording (``False``). Returns the tracker."""
        if uri is False or uri is None:
            self._tracker = None
            return None
        if uri is not True and not isinstance(uri, str):
            raise WorkbenchError(f"track takes a tracking URI, True or False; got {uri!r}")
        self._tracker = Tracker(**({} if uri is True else {"uri": uri}), experiment=experiment)
        self._recorded = set()
        return self._tracker

    def runs(self, kind: str | None = None) -> pd.DataFrame:
        """What this lab's store holds (every process's records), newest first; ``kind``: ``adapter``,
        ``evaluation``, ``candidate``, ``sweep``."""
        if self.tracker is None:
            raise WorkbenchError("this lab records nothing (tracking is off); turn it on with lab.track() "
                                 "or read a store with workbench.runs.read_runs(uri)")
        return self.tracker.runs(kind)

    # -- records -----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _recording_as(self, event: str) -> Iterator[None]:
        before, self._event = self._event, event
        try:
            yield
        finally:
            self._event = before

    def _record_added(self, adapter: Adapter) -> None:
        """``add_adapter``'s record: what entered the lab (not fresh adapters, not private copies)."""
        if adapter.lineage.get("method") in FRESH or adapter.name.startswith(PREFIX):
            return
        self._record_adapter(adapter, self._event or "added")

    def _record_adapter(self, adapter: Adapter, event: str, *, history: pd.DataFrame | None = None) -> None:
        tracker = self.tracker
        if tracker is None or not isinstance(adapter, Adapter):
            return
        if self._recorded is None:
            self._recorded = set()
        fingerprint = adapter_fingerprint(adapter)
        folder, files = None, {"README.md": model_card(adapter, base=self.name, event=event)}
        if fingerprint not in self._recorded:  # the PEFT files once per content
            folder = tempfile.mkdtemp(prefix="lora-workbench-record-")
            self.save_adapter(adapter, folder, overwrite=True)
            self._recorded.add(fingerprint)
        with contextlib.suppress(WorkbenchError):  # only merges that need no data have recipes
            files["recipe.json"] = json.dumps(recipe_of(adapter, base=self.name), indent=1)
        metrics = {k: float(adapter.lineage[k]) for k in ("final_loss", "seconds")
                   if isinstance(adapter.lineage.get(k), int | float)}
        tracker.adapter(adapter, event, folder, metrics=metrics, history=history, files=files)

    def _record_evaluation(self, frame: pd.DataFrame, params: dict) -> None:
        if self.tracker is not None and len(frame):
            self.tracker.evaluation(frame, params={k: v for k, v in params.items() if k != "progress"},
                                    tags={"base": self.name})
