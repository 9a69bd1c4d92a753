"""Tracker: every adapter made and every evaluation, recorded in MLflow without blocking the notebook.

    tracker = Tracker("sqlite:///mlflow.db")        # MLflow's default local store: no server to start
    tracker.adapter(adapter, "merged", folder)      # a run: lineage as params, PEFT files as artifacts
    tracker.evaluation(frame)                        # a run: one metric per (adapter, task)
    tracker.runs()                                   # every recorded run as a DataFrame (flushes first)

Records go through a queue to one writer thread, so a call returns at once (importing MLflow and
creating a fresh database take seconds); ``flush`` waits for them. A failed write never breaks the lab:
it is kept in ``tracker.errors`` and warned about once. The caller snapshots what it records (an
adapter's PEFT folder is written before the call returns), so later changes to the lab do not leak
into a record.

Reference: MLflow tracking (``MlflowClient``: experiments, runs, params, metrics, tags, artifacts),
https://mlflow.org/docs/latest/tracking.html. Deviation: ``mlflow-skinny`` with SQLAlchemy and Alembic
(the SQLite store without the UI server; ``pip install mlflow`` adds ``mlflow ui``).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import shutil
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from workbench.errors import WorkbenchError

DEFAULT_URI = "sqlite:///mlflow.db"  # MLflow's own default: a SQLite file in the working folder
EXPERIMENT = "lora-workbench"
ENV = "LORA_WORKBENCH_TRACKING"  # "0"/"off": nothing is recorded; a tracking URI: record there
RUN_COLUMNS = ["run_id", "kind", "name", "event", "method", "fingerprint", "base", "start", "params",
               "metrics", "artifact_uri"]


def available() -> bool:
    """Whether MLflow is installed (``pip install lora-workbench[track]``)."""
    import importlib.util

    return importlib.util.find_spec("mlflow") is not None


def from_env() -> Tracker | None:
    """The tracker a new lab starts with: ``$LORA_WORKBENCH_TRACKING`` (a URI, or "0"/"off" for none);
    unset, MLflow's default local store when MLflow is installed, else none."""
    value = os.environ.get(ENV, "").strip()
    if value.lower() in {"0", "off", "false", "no"}:
        return None
    if not value and not available():
        return None
    return Tracker(value or DEFAULT_URI)


class Tracker:
    """Records runs in an MLflow tracking store from a background writer thread.

    Args:
        uri: an MLflow tracking URI (``sqlite:///path.db``, ``file:///folder``, ``http://host:port``).
        experiment: the MLflow experiment the runs go to (created when missing).
        artifacts: where a new experiment keeps its artifacts (default: ``mlruns/`` beside a SQLite
            file, as MLflow does).
    """

    def __init__(self, uri: str = DEFAULT_URI, *, experiment: str = EXPERIMENT,
                 artifacts: str | Path | None = None):
        if not available():
            raise WorkbenchError("tracking needs MLflow: pip install 'lora-workbench[track]' "
                                 "(or turn tracking off: lab.track(False))")
        if not isinstance(uri, str) or not uri:
            raise WorkbenchError(f"a tracking URI is a string such as 'sqlite:///mlflow.db', got {uri!r}")
        self.uri = uri
        self.experiment = experiment
        self.artifacts = Path(artifacts) if artifacts is not None else _artifacts_beside(uri)
        self.errors: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        self._client = None
        self._experiment_id: str | None = None
        self._thread = threading.Thread(target=self._work, name="lora-workbench-tracker", daemon=True)
        self._thread.start()
        atexit.register(self.flush)

    def __repr__(self) -> str:
        return f"Tracker({self.uri!r}, experiment={self.experiment!r})"

    # -- what the lab records ---------------------------------------------------------------------
    def adapter(self, adapter, event: str, folder: str | Path | None = None, *,
                metrics: Mapping[str, float] | None = None, history: pd.DataFrame | None = None,
                files: Mapping[str, str] | None = None) -> None:
        """Record an adapter the lab made or took in.

        Args:
            adapter: the ``workbench.adapters.Adapter`` (its lineage, ranks and fingerprint are read now).
            event: what happened (``trained``, ``merged``, ``loaded``, ``generated``, ...).
            folder: its PEFT folder, written by the caller for this record (moved into the store's
                artifacts, then deleted).
            metrics: numbers to log (final loss, seconds, scores).
            history: a training history (``step``, ``loss`` ...): logged as step metrics.
            files: extra text files for the artifacts (``README.md`` model card, ``recipe.json``).
        """
        from workbench.adapters.update_cache import adapter_fingerprint

        lineage = dict(adapter.lineage)
        method = lineage.get("method", "")
        if isinstance(lineage.get("merge"), Mapping):  # the merge engine's record
            method = f"merge:{lineage['merge'].get('method')}"
        tags = {"kind": "adapter", "event": event, "adapter": adapter.name, "method": str(method),
                "fingerprint": adapter_fingerprint(adapter),
                "base_fingerprint": str(adapter.base_fingerprint)}
        params = {"r": ",".join(str(r) for r in sorted(set(adapter.ranks.values()))),
                  "modules": len(adapter.modules), "scaling": adapter.scaling, **_flat(lineage)}
        steps = None
        if history is not None and len(history):
            steps = [(int(row.get("step", i)), {k: float(v) for k, v in row.items()
                                                if k != "step" and isinstance(v, int | float)})
                     for i, row in enumerate(history.to_dict("records"))]
        texts = {"lineage.json": json.dumps(lineage, indent=1, default=str), **dict(files or {})}
        self._queue.put(("run", adapter.name, tags, params, dict(metrics or {}), steps,
                         str(folder) if folder else None, texts))

    def evaluation(self, frame: pd.DataFrame, *, name: str = "evaluate", params: Mapping | None = None,
                   tags: Mapping[str, str] | None = None) -> None:
        """Record an evaluation frame (``adapter, task, metric, value``): one metric per (adapter, task)."""
        metrics = {f"{_safe(a)}/{_safe(t)}/{m}": float(v)
                   for a, t, m, v in zip(frame["adapter"].astype(str), frame["task"].astype(str),
                                         frame["metric"], frame["value"], strict=True)
                   if pd.notna(v)}
        adapters = sorted(set(frame["adapter"].astype(str)))
        all_tags = {"kind": "evaluation", "event": "evaluated", "adapter": ",".join(adapters)[:4000],
                    **dict(tags or {})}
        self._queue.put(("run", name, all_tags, {"tasks": ",".join(sorted(set(frame["task"].astype(str)))),
                                                 **_flat(params or {})},
                         metrics, None, None, {"scores.csv": frame.to_csv(index=False)}))

    def record(self, name: str, kind: str, *, params: Mapping | None = None,
               metrics: Mapping[str, float] | None = None, tags: Mapping[str, str] | None = None) -> None:
        """Record anything else (a sweep point, a search candidate) as a run of ``kind``."""
        self._queue.put(("run", name, {"kind": kind, "event": kind, **dict(tags or {})}, _flat(params or {}),
                         dict(metrics or {}), None, None, {}))

    # -- reading back ------------------------------------------------------------------------------
    def flush(self, timeout: float | None = 300) -> None:
        """Wait until every record so far is written (``timeout`` seconds at most)."""
        done = threading.Event()
        self._queue.put(("flush", done))
        if not done.wait(timeout):
            raise WorkbenchError(f"the tracker did not finish writing in {timeout} s; "
                                 f"its store {self.uri} may be locked by another process")

    def runs(self, kind: str | None = None) -> pd.DataFrame:
        """Every run of this tracker's experiment (newest first), one row each: ``RUN_COLUMNS``."""
        self.flush()
        return read_runs(self.uri, self.experiment, kind=kind)

    # -- the writer thread ---------------------------------------------------------------------------
    def _connect(self):
        if self._client is None:
            MlflowClient = _mlflow_client()

            client = MlflowClient(tracking_uri=self.uri)
            found = client.get_experiment_by_name(self.experiment)
            self._experiment_id = found.experiment_id if found is not None else client.create_experiment(
                self.experiment, artifact_location=self.artifacts.resolve().as_uri())
            self._client = client
        return self._client

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item[0] == "flush":
                item[1].set()
                continue
            try:
                self._write(*item[1:])
            except Exception as e:  # a record must never break the lab: keep it, say it once
                self.errors.append(f"{type(e).__name__}: {e}")
                if len(self.errors) == 1:
                    warnings.warn(f"lora-workbench tracking to {self.uri} failed ({self.errors[0]}); "
                                  "the lab goes on; see tracker.errors", stacklevel=1)
            finally:
                if item[6]:
                    shutil.rmtree(item[6], ignore_errors=True)  # the snapshot folder the caller wrote for us

    def _write(self, name, tags, params, metrics, steps, folder, texts) -> None:
        client = self._connect()
        run = client.create_run(self._experiment_id, run_name=name, tags={k: str(v) for k, v in tags.items()})
        rid = run.info.run_id
        try:
            from mlflow.entities import Metric, Param

            plist = [Param(k, str(v)[:6000]) for k, v in params.items()]
            mlist = [Metric(k, float(v), 0, 0) for k, v in metrics.items()]
            for step, values in steps or ():
                mlist += [Metric(f"train/{k}", v, 0, step) for k, v in values.items()]
            for i in range(0, len(plist), 90):  # MLflow's batch limits: 100 params, 1000 metrics
                client.log_batch(rid, params=plist[i:i + 90])
            for i in range(0, len(mlist), 900):
                client.log_batch(rid, metrics=mlist[i:i + 900])
            if folder:  # the PEFT files once per content in the store (any process may have logged them)
                earlier = client.search_runs([self._experiment_id], max_results=1, filter_string=(
                    f"tags.fingerprint = '{tags['fingerprint']}' and tags.artifacts = 'adapter'"))
                if earlier:
                    client.set_tag(rid, "artifacts_in", earlier[0].info.run_id)
                else:
                    client.log_artifacts(rid, folder, artifact_path="adapter")
                    client.set_tag(rid, "artifacts", "adapter")
            for fname, text in texts.items():
                client.log_text(rid, text, fname)
            client.set_terminated(rid)
        except Exception:
            client.set_terminated(rid, status="FAILED")
            raise


def read_runs(uri: str, experiment: str = EXPERIMENT, *, kind: str | None = None) -> pd.DataFrame:
    """The runs of ``experiment`` in the store at ``uri`` (any process), newest first: ``RUN_COLUMNS``."""
    client = _mlflow_client()(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return pd.DataFrame(columns=RUN_COLUMNS)
    query = f"tags.kind = '{kind}'" if kind else ""
    rows, token = [], None
    while True:
        page = client.search_runs([found.experiment_id], filter_string=query, max_results=1000,
                                  order_by=["attributes.start_time DESC"], page_token=token)
        for r in page:
            t = r.data.tags
            rows.append({"run_id": r.info.run_id, "kind": t.get("kind"), "name": r.info.run_name,
                         "event": t.get("event"), "method": t.get("method"),
                         "fingerprint": t.get("fingerprint"),
                         "base": t.get("base_fingerprint"),
                         "start": pd.Timestamp(r.info.start_time, unit="ms", tz="UTC"),
                         "params": dict(r.data.params), "metrics": dict(r.data.metrics),
                         "artifact_uri": r.info.artifact_uri})
        token = page.token
        if not token:
            break
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def _mlflow_client():
    """MLflow's client class, imported quietly: no telemetry, no INFO lines about database migrations."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    from mlflow import MlflowClient

    for quiet in ("mlflow", "alembic"):
        logging.getLogger(quiet).setLevel(logging.WARNING)
    return MlflowClient


def _artifacts_beside(uri: str) -> Path:
    """``mlruns/`` beside a SQLite file (MLflow's layout), else in the working folder."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):]).resolve().parent / "mlruns"
    return Path("mlruns").resolve()


def _flat(d: Mapping, prefix: str = "") -> dict[str, str]:
    """Nested lineage as MLflow params: ``merge.weights`` -> "[1.0, 1.0]"; long values cut."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and len(v) <= 32:
            out |= _flat(v, key + ".")
        else:
            out[key] = v if isinstance(v, str) else json.dumps(v, default=str)
    return {_safe(k): v for k, v in out.items()}


def _safe(name: str) -> str:
    """MLflow names allow letters, digits, ``_-. /`` and spaces."""
    return "".join(c if c.isalnum() or c in "_-. /" else "_" for c in str(name))[:250]

