"""The searchers on cheap synthetic objectives: planted optima found, budget and patience kept, every
candidate recorded, the same seed giving the same candidates; the Pareto front and the space's coding."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from workbench.errors import WorkbenchError
from workbench.search import SEARCHERS, Candidate, FunctionObjective, SearchSpace, pareto_front, search, wide

PLANT = {"a": 0.3, "b": 1.2, "c": 0.9}


def _bowl(c: Candidate) -> dict:
    """Maximum 0 at PLANT (and, with a method axis, only under ties at density 0.6)."""
    d = sum((c.weights[n] - w) ** 2 for n, w in PLANT.items())
    if c.density is not None:
        d += (c.density - 0.6) ** 2
    return {"t": -d - (0.5 if c.method != "ties" else 0.0)}


def _dist(c: Candidate) -> float:
    return float(np.sqrt(sum((c.weights[n] - w) ** 2 for n, w in PLANT.items())))


@pytest.mark.parametrize("optimizer", ["NGOpt", "OnePlusOne", "CMA"])
def test_nevergrad_finds_the_planted_optimum_where_random_search_does_not(optimizer):
    space = SearchSpace(list(PLANT), weights=(0.0, 1.5))
    objective = FunctionObjective(_bowl, ["t"])
    run = search(objective, space, "nevergrad", budget=80, seed=0, progress=False, optimizer=optimizer)
    assert _dist(run.best) < 0.1
    # the same budget spent ignoring the objective lands far from it (so the check above needs the values)
    blind = search(FunctionObjective(lambda c: {"t": 0.0}, ["t"]), space, "nevergrad", budget=80, seed=0,
                   progress=False, optimizer=optimizer)
    assert min(_dist(c) for c in blind.candidates) > 0.1


def test_nevergrad_finds_the_planted_method_and_density():
    space = SearchSpace(list(PLANT), methods=["task_arithmetic", "ties"], weights=(0.0, 1.5),
                        density=(0.1, 1.0))
    run = search(FunctionObjective(_bowl, ["t"]), space, "nevergrad", budget=150, seed=0, progress=False)
    assert run.best.method == "ties"
    assert abs(run.best.density - 0.6) < 0.1 and _dist(run.best) < 0.15


def test_grid_finds_a_planted_grid_point_and_random_the_best_it_drew():
    space = SearchSpace(["a", "b"], weights=(0.0, 1.5))
    plant = {"a": 0.75, "b": 1.5}  # on the 3-point grid 0, 0.75, 1.5
    objective = FunctionObjective(lambda c: {"t": -sum((c.weights[n] - plant[n]) ** 2 for n in plant)}, ["t"])
    grid = search(objective, space, "grid", budget=9, progress=False)
    assert grid.best.weights == plant and grid.evaluations == 9 and grid.stopped_by == "exhausted" or \
        grid.stopped_by == "budget"
    rand = search(objective, space, "random", budget=200, seed=1, progress=False)
    table = wide(rand.frame)
    assert rand.best_value == table.objective.max()  # the best kept is the best scored
    assert np.hypot(rand.best.weights["a"] - 0.75, rand.best.weights["b"] - 1.5) < 0.15


def test_the_budget_and_patience_are_kept():
    space = SearchSpace(list(PLANT))
    flat = FunctionObjective(lambda c: {"t": 1.0}, ["t"])
    for name in ("random", "nevergrad"):
        assert search(FunctionObjective(_bowl, ["t"]), space, name, budget=7, progress=False).evaluations == 7
        run = search(flat, space, name, budget=50, patience=4, progress=False)
        assert run.evaluations == 5 and run.stopped_by == "patience"  # the first, then 4 without a gain
    improving = iter(range(100))
    run = search(FunctionObjective(lambda c: {"t": float(next(improving))}, ["t"]), space, "random",
                 budget=12,
                 patience=2, progress=False)
    assert run.evaluations == 12 and run.stopped_by == "budget"  # every step improves: patience never fires
    with pytest.raises(WorkbenchError, match="budget"):
        search(flat, space, budget=0)
    with pytest.raises(WorkbenchError, match="patience"):
        search(flat, space, budget=3, patience=0)


def test_every_candidate_is_in_the_table_with_its_parameters_and_scores():
    space = SearchSpace(["a", "b"], methods=["task_arithmetic", "ties"], density=(0.2, 1.0))
    objective = FunctionObjective(lambda c: {"x": c.weights["a"], "y": c.weights["b"]}, ["x", "y"])
    run = search(objective, space, "random", budget=6, seed=3, start=space.uniform(), progress=False)
    frame = run.frame
    assert len(frame) == 6 * 2 and set(frame.task) == {"x", "y"}
    cols = {"search", "searcher", "seed", "candidate", "method", "density", "weight.a", "weight.b", "note",
            "task",
            "metric", "value", "normalized", "objective", "best", "seconds", "cached"}
    assert cols <= set(frame.columns)
    assert not frame[sorted(cols - {"note"})].isna().any().any()
    table = wide(frame)
    assert list(table.candidate) == list(range(6))
    for c, row in zip(run.candidates, table.itertuples(), strict=True):
        assert row._asdict()["objective"] == pytest.approx((c.weights["a"] + c.weights["b"]) / 2)
    assert run.candidates[0] == space.uniform()  # the start comes first
    assert (frame.groupby("candidate").best.first().diff().dropna() >= 0).all()  # best so far never falls


@pytest.mark.parametrize(("name", "params"), [("random", {}), ("nevergrad", {"optimizer": "OnePlusOne"}),
                                              ("nevergrad", {"optimizer": "CMA"}), ("grid", {})])
def test_the_same_seed_proposes_the_same_candidates(name, params):
    # (NGOpt at a budget of 10 picks a deterministic optimizer: every seed proposes the same points)
    space = SearchSpace(list(PLANT), density=(0.1, 1.0))
    objective = FunctionObjective(_bowl, ["t"])
    runs = [search(objective, space, name, budget=10, seed=s, progress=False, **params) for s in (5, 5, 6)]
    assert runs[0].candidates == runs[1].candidates
    pd.testing.assert_frame_equal(runs[0].frame.drop(columns="seconds"),
                                  runs[1].frame.drop(columns="seconds"))
    if name != "grid":  # a grid does not depend on the seed
        assert runs[0].candidates != runs[2].candidates


def test_a_background_search_returns_at_once_and_reports_each_evaluation():
    gate = threading.Event()

    def slow(c):
        gate.wait(5)
        return {"t": -_dist(c)}

    seen = []
    space = SearchSpace(list(PLANT))
    run = search(FunctionObjective(slow, ["t"]), space, "random", budget=3, background=True, progress=False)
    run.subscribe(lambda r: seen.append(r.evaluations))
    assert not run.done and run.evaluations == 0  # the cell returned while the first evaluation waits
    gate.set()
    run.wait(10)
    assert run.done and run.evaluations == 3 and seen == [1, 2, 3, 3]  # each evaluation, then the end
    failing = search(FunctionObjective(lambda c: {}, ["t"]), space, "random", budget=2, background=True,
                     progress=False)
    with pytest.raises(WorkbenchError, match="no score"):
        failing.wait(10)


def test_the_pareto_objective_spreads_over_the_front_and_the_front_is_exact():
    space = SearchSpace(["a"], weights=(0.0, 1.0))
    objective = FunctionObjective(lambda c: {"x": c.weights["a"], "y": 1 - c.weights["a"] ** 2}, ["x", "y"],
                                  kind="pareto")
    run = search(objective, space, "random", budget=20, seed=0, progress=False)
    front = pareto_front(run.frame, "x", "y")
    assert front.front.all()  # on this curve nothing dominates anything
    frame = pd.DataFrame({"search": "s", "seed": 0, "candidate": [0, 0, 1, 1, 2, 2, 3, 3],
                          "method": "m", "objective": 0.0, "task": ["x", "y"] * 4,
                          "normalized": [1, 0, 0, 1, 0.5, 0.5, 0.4, 0.4]})
    front = pareto_front(frame, "x", "y")
    assert set(front[front.front].candidate) == {0, 1, 2} and set(front[~front.front].candidate) == {3}
    with pytest.raises(WorkbenchError, match="no task 'z'"):
        pareto_front(frame, "x", "z")


def test_the_space_codes_candidates_both_ways_and_refuses_bad_boxes():
    space = SearchSpace(["a", "b"], methods=["task_arithmetic", "ties", "dare_ties"], density=(0.1, 0.9))
    c = Candidate({"a": 0.2, "b": 1.4}, "dare_ties", 0.5)
    assert space.decode(space.encode(c)).key() == c.key()
    assert len(space.grid(2)) == 2 ** 3 * 3
    with pytest.raises(WorkbenchError, match="merge method"):
        SearchSpace(["a"], methods=["nope"])
    with pytest.raises(WorkbenchError, match="density"):
        SearchSpace(["a"], density=(0.0, 1.0))
    with pytest.raises(WorkbenchError, match="distinct"):
        SearchSpace(["a", "a"])
    assert set(SEARCHERS.names()) >= {"grid", "random", "nevergrad", "adamerging"}


def test_the_objective_kinds_combine_as_computed_by_hand():
    scores = {"x": 0.2, "y": 0.8, "z": float("nan")}
    mean = FunctionObjective(lambda c: scores, ["x", "y", "z"])
    assert mean.combine(scores) == pytest.approx((0.2 + 0.8 + 0.0) / 3)  # an undefined score counts as 0
    weighted = FunctionObjective(lambda c: scores, ["x", "y", "z"], kind="weighted",
                                 task_weights={"x": 3.0, "y": 1.0, "z": 0.0})
    assert weighted.combine(scores) == pytest.approx((3 * 0.2 + 0.8) / 4)
    pareto = FunctionObjective(lambda c: scores, ["x", "y"], kind="pareto")
    lam = np.random.default_rng(7).dirichlet(np.ones(2))
    s = np.array([0.2, 0.8])
    want = min(lam * s) + 0.05 * float(lam @ s)  # ParEGO's augmented Chebyshev scalarization
    assert pareto.scalar(scores, np.random.default_rng(7)) == pytest.approx(want)
    assert pareto.combine(scores) == pytest.approx(0.5)  # the reported objective stays the mean
    with pytest.raises(WorkbenchError, match="kind"):
        FunctionObjective(lambda c: scores, ["x"], kind="best")
