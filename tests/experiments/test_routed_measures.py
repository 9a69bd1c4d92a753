"""The measures of the LoRA-Mixer, RecLoRA and TARA experiments, against hand computations."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from workbench.analysis.leakage import cross_and_own, kl_rows, leakage
from workbench.analysis.user_mixtures import alignment, user_distances, user_mixture
from workbench.errors import WorkbenchError
from workbench.experiments.answers import example_scores
from workbench.experiments.reclora import counts


def test_example_scores_average_the_answer_tokens_nll_and_pick_among_the_choices_only():
    v = 5
    logits = torch.zeros(2, 4, v)  # (B, T, V)
    logits[0, 1] = torch.tensor([0.0, 0.0, 3.0, 1.0, 9.0])  # predicts token 2 (labels[0, 2])
    logits[0, 2] = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0])  # predicts token 1 (labels[0, 3])
    logits[1, 2] = torch.tensor([2.0, 0.0, 0.0, 1.0, 0.0])
    labels = torch.tensor([[-100, -100, 2, 1], [-100, -100, -100, 3]])
    loss, correct = example_scores(logits, labels, [[2, 3], [0, 3]])

    def nll(row, target):
        return -float(torch.log_softmax(row, -1)[target])

    assert loss[0] == pytest.approx((nll(logits[0, 1], 2) + nll(logits[0, 2], 1)) / 2)  # answer tokens only
    assert loss[1] == pytest.approx(nll(logits[1, 2], 3))
    # row 0: token 4 has the highest logit overall, but among the choices {2, 3} the target 2 wins
    assert correct.tolist() == [1.0, 0.0]  # row 1: choice 0 (logit 2) beats the target 3 (logit 1)
    _, none = example_scores(logits, labels, [None, [3, 0]])
    assert math.isnan(none[0]) and none[1] == 0.0


def test_example_scores_refuse_an_example_without_answer_tokens():
    with pytest.raises(WorkbenchError, match="no answer tokens"):
        example_scores(torch.zeros(1, 3, 4), torch.full((1, 3), -100), [None])


def test_counts_split_by_largest_remainder():
    assert counts((0.8, 0.1, 0.1), 12) == [10, 1, 1]  # 9.6, 1.2, 1.2: the largest remainder rounds up
    assert counts((1 / 3, 1 / 3, 1 / 3), 8) == [3, 3, 2]  # ties go to the first tasks
    assert sum(counts((0.5, 0.25, 0.25), 7)) == 7


def test_user_mixture_frame_distances_and_alignment_by_hand():
    w = {"model.layers.0.self_attn.q_proj": torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]),
         "model.layers.1.self_attn.q_proj": torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])}
    frame = user_mixture(w, ["a", "b", "c"])
    assert list(frame.columns) == ["layer", "module", "user", "lora", "weight"] and len(frame) == 2 * 3 * 2
    assert frame[(frame.layer == 0) & (frame.user == "b") & (frame.lora == 1)]["weight"].item() == 0.5
    d = user_distances(frame).set_index(["user_a", "user_b"])["distance"]
    # total variation ½Σ|wa − wb| per module, then the mean over modules
    assert d[("a", "b")] == pytest.approx((0.5 + 0.0) / 2)
    assert d[("a", "c")] == pytest.approx(1.0) and d[("b", "c")] == pytest.approx((0.5 + 1.0) / 2)
    profiles = {"a": (1, 0), "b": (0.6, 0.4), "c": (0, 1)}  # profile distances 0.4, 1.0, 0.6
    x, y = [0.25, 1.0, 0.75], [0.4, 1.0, 0.6]
    mx, my = sum(x) / 3, sum(y) / 3
    r = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / math.sqrt(
        sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))
    assert alignment(user_distances(frame), profiles) == pytest.approx(r)
    flat = user_mixture({"m.layers.0.q": torch.full((3, 2), 0.5)}, ["a", "b", "c"])
    assert math.isnan(alignment(user_distances(flat), profiles))  # no spread: no correlation
    with pytest.raises(WorkbenchError, match="one row of mixture weights per user"):
        user_mixture({"m.layers.0.q": torch.ones(2, 2)}, ["a", "b", "c"])


def test_leakage_is_the_kl_from_the_full_prediction_to_the_one_without_the_source():
    full = torch.tensor([[2.0, 0.0], [0.0, 0.0], [1.0, 1.0]])  # (N=3 positions, V=2)
    without_a = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])  # taking a out moves position 0 only
    without_b = torch.tensor([[2.0, 0.0], [0.0, 3.0], [0.0, 1.0]])
    targets = {"a": torch.tensor([True, False, False]), "b": torch.tensor([False, True, True])}
    frame = leakage(full, {"a": without_a, "b": without_b}, targets, condition="x")

    def kl(p_logits, q_logits):
        p, q = p_logits.softmax(-1), q_logits.softmax(-1)
        return float((p * (p / q).log()).sum())

    got = frame.set_index(["source", "target"])["leakage"]
    assert got[("a", "a")] == pytest.approx(kl(full[0], without_a[0]))
    assert got[("a", "b")] == pytest.approx(0.0)  # a leaves b's positions alone
    assert got[("b", "b")] == pytest.approx((kl(full[1], without_b[1]) + kl(full[2], without_b[2])) / 2)
    assert got[("b", "a")] == pytest.approx(0.0) and set(frame.condition) == {"x"}
    assert frame.set_index(["source", "target"])["tokens"][("b", "b")] == 2
    assert kl_rows(full, without_b)[1] == pytest.approx(kl(full[1], without_b[1]))  # p = full, not q
    cross, own = cross_and_own(frame)
    assert cross == pytest.approx(0.0) and own == pytest.approx((got[("a", "a")] + got[("b", "b")]) / 2)
    with pytest.raises(WorkbenchError, match="same positions"):
        leakage(full, {"a": without_a[:2]}, targets)


def test_leakage_kl_direction_matters():
    p, q = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    assert kl_rows(p, q)[0] != pytest.approx(kl_rows(q, p)[0])


def test_frames_are_tidy_pandas():
    frame = user_mixture({"m.layers.0.q": torch.eye(2)}, ["a", "b"])
    assert isinstance(frame, pd.DataFrame) and frame.weight.sum() == pytest.approx(2.0)


def test_tara_relative_verdict_is_the_log_ratio_of_cross_leakage_per_seed():
    from workbench.experiments.tara import TARAExperiment

    plain, masked = [0.2, 0.5, 0.3], [0.002, 0.004, 0.004]
    table = pd.DataFrame([{"seed": s, "arm": arm, "measure": "cross_leakage", "task": "", "value": v}
                          for arm, vals in (("plain_sum", plain), ("tara", masked))
                          for s, v in enumerate(vals)])
    verdict = next(v for v in TARAExperiment().verdicts(table) if v.claim.endswith("(relative)"))
    logs = [math.log(m / p) for m, p in zip(masked, plain, strict=True)]
    assert verdict.interval.mean == pytest.approx(sum(logs) / 3) and verdict.holds is True
    assert verdict.note.startswith(f"{math.exp(sum(logs) / 3):.1%}")
