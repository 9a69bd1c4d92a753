"""Workers: score many candidates at once, in local processes or on a Dask cluster.

    with Workers(2) as pool:                                   # a local Dask cluster on 127.0.0.1
        run = search(objective, space, "grid", budget=16, workers=pool)
    Workers(address="tcp://10.0.0.5:8786")                     # an existing cluster ($DASK_SCHEDULER_ADDRESS)
    Workers(2, backend="processes")                            # no Dask: a local process pool

Each worker builds the base model once (``base``: a picklable function returning the model and its
tokenizer; default: the lab's zoo model) and receives the source adapters as tensors, not paths, with
the tasks' examples and each task's reference score already computed by the driver, so a candidate
scores the same everywhere. Workers run torch at one thread and record nothing (the driver's lab
records every candidate in its run store). A search with workers asks as many candidates as there are
workers, scores them together and tells the searcher their values in the order asked: grid and random
search propose the same candidates as without workers (their proposals do not depend on the values),
so their results are the same; a model-based searcher (nevergrad) sees its values a batch later.

Reference: mergekit-evolve (Akiba et al., 2024) scores its candidates on Ray workers. Deviation: Dask's
distributed scheduler instead of Ray, because a local Dask cluster binds where it is told (127.0.0.1,
dashboard off) while Ray 2.60's GCS was seen listening on the machine's primary address.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor

from workbench.errors import WorkbenchError
from workbench.search.objective import LabObjective
from workbench.search.space import Candidate

BACKENDS = ("auto", "dask", "processes")
_BUILT: dict[str, LabObjective] = {}  # in a worker process: the objective of each spec, built once


def zoo_base(name: str):
    """The base of a zoo model: ``(model, tokenizer, fingerprint)`` (the default ``base``)."""
    from workbench import zoo

    z = zoo.load(name)
    return z.model, z.tokenizer, z.fingerprint


def portable(objective: LabObjective, base: Callable | None = None) -> dict:
    """What a worker needs to score candidates of ``objective``: the base's recipe, the source adapters
    (copies), the tasks' examples, the references, the seed. Computes the references here, once."""
    if not isinstance(objective, LabObjective):
        raise WorkbenchError(f"workers score a LabObjective (the lab's tasks); got "
                             f"{type(objective).__name__}: a plain function objective runs in this process "
                             "(workers=None)")
    lab = objective.lab
    from workbench.adapters.update_cache import adapter_fingerprint

    adapters = [lab.adapters[n].copy() for n in objective.adapters]
    key = "|".join([lab.fingerprint, str(objective.seed), *(adapter_fingerprint(a) for a in adapters),
                    *(f"{t.name}:{len(t.eval)}" for t in objective.task_objs.values())])
    return {"key": key, "base": base or zoo_base, "lab_class": type(lab), "base_name": lab.name,
            "fingerprint": lab.fingerprint,
            "adapters": adapters, "tasks": dict(objective.task_objs), "reference": objective.references(),
            "seed": objective.seed, "batch_size": objective.batch_size, "names": list(objective.adapters)}


def build_objective(spec: dict) -> LabObjective:
    """The worker's objective for ``spec`` (built on the first call in this process, then kept)."""
    if spec["key"] in _BUILT:
        return _BUILT[spec["key"]]
    import torch

    torch.set_num_threads(1)
    built = spec["base"](spec["base_name"]) if spec["base"] is zoo_base else spec["base"]()
    model, tokenizer, fingerprint = (*built, None) if len(built) == 2 else built
    lab = spec["lab_class"](model, tokenizer, name=spec["base_name"], fingerprint=fingerprint)
    if lab.fingerprint != spec["fingerprint"]:
        raise WorkbenchError(f"the worker's base {spec['base_name']!r} has fingerprint {lab.fingerprint}, "
                             f"the driver's is {spec['fingerprint']}: give Workers a base= that builds the "
                             "same model")
    lab.track(False)
    for a in spec["adapters"]:
        lab.add_adapter(a.copy())
    _BUILT[spec["key"]] = LabObjective(lab, spec["names"], spec["tasks"], limit=None, seed=spec["seed"],
                                       batch_size=spec["batch_size"], reference=spec["reference"])
    return _BUILT[spec["key"]]


def score(spec: dict, candidate: Candidate) -> dict:
    """A worker's task: the candidate's scores (``LabObjective.scores``)."""
    return build_objective(spec).scores(candidate)


class Workers:
    """A pool of workers that score candidates (``search(..., workers=pool)``); a context manager.

    Args:
        n: workers to start for a local cluster or process pool (each builds the base once).
        address: a running Dask scheduler (``tcp://host:port``; default ``$DASK_SCHEDULER_ADDRESS``);
            None starts a local cluster on 127.0.0.1 with its dashboard off.
        backend: ``auto`` (Dask when installed, else local processes), ``dask`` or ``processes``.
        base: a picklable function returning ``(model, tokenizer)`` or ``(model, tokenizer, fingerprint)``
            for labs whose base is not a zoo model (default: the lab's zoo model, by name).
    """

    def __init__(self, n: int = 2, *, address: str | None = None, backend: str = "auto",
                 base: Callable | None = None):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise WorkbenchError(f"n={n!r}: give the number of workers, a whole number ≥ 1")
        if backend not in BACKENDS:
            raise WorkbenchError(f"backend={backend!r}: choose one of {BACKENDS}")
        address = address or os.environ.get("DASK_SCHEDULER_ADDRESS")
        has_dask = importlib.util.find_spec("distributed") is not None
        if backend == "dask" or address:
            if not has_dask:
                raise WorkbenchError("Dask workers need the scale extra: pip install 'lora-workbench[scale]' "
                                     "(or backend='processes' for local processes)")
            backend = "dask"
        elif backend == "auto":
            backend = "dask" if has_dask else "processes"
        self.n, self.address, self.backend, self.base = n, address, backend, base
        self._cluster = self._client = self._pool = None
        self._shared = (None, None)  # (objective, its spec or the spec's future on the cluster)

    def __repr__(self) -> str:
        where = self.address or ("127.0.0.1" if self.backend == "dask" else "local processes")
        return f"Workers({self.n}, backend={self.backend!r}, at {where})"

    @property
    def size(self) -> int:
        """How many candidates a search scores together."""
        return self.n

    def __enter__(self) -> Workers:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        """Start the local cluster or pool, or connect to ``address`` (done by the first ``map`` too)."""
        if self._client is not None or self._pool is not None:
            return
        if self.backend == "processes":
            import multiprocessing as mp

            self._pool = ProcessPoolExecutor(self.n, mp_context=mp.get_context("spawn"))
            return
        from distributed import Client, LocalCluster

        if self.address:
            self._client = Client(self.address)
        else:
            env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "LORA_WORKBENCH_TRACKING": "0"}
            self._cluster = LocalCluster(n_workers=self.n, threads_per_worker=1, processes=True,
                                         host="127.0.0.1", dashboard_address=None, scheduler_port=0,
                                         worker_dashboard_address=None, env=env, silence_logs=40)
            self._client = Client(self._cluster)

    def close(self) -> None:
        """Stop what ``start`` started (a cluster given by ``address`` keeps running)."""
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
        self._cluster = self._client = self._pool = None
        self._shared = (None, None)

    def map(self, objective: LabObjective, candidates: Sequence[Candidate]) -> list[dict]:
        """Each candidate's scores, in order, computed by the workers."""
        self.start()
        if self._shared[0] is not objective:  # the adapters and tasks travel once per objective
            spec = portable(objective, self.base)
            self._shared = (objective, spec if self._pool is not None
                            else self._client.scatter([spec], broadcast=True)[0])
        shared = self._shared[1]
        if self._pool is not None:
            return list(self._pool.map(score, [shared] * len(candidates), candidates))
        futures = [self._client.submit(score, shared, c, pure=False) for c in candidates]
        return self._client.gather(futures)
