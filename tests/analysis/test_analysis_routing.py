"""Routing statistics on hand-made records: frequencies, overlaps, load and entropy by construction."""

from __future__ import annotations

import pytest
import torch

from workbench.analysis.routing import activation_frequency, active_overlap, expert_load, token_routing
from workbench.errors import WorkbenchError
from workbench.hooks import Cache
from workbench.routing import RoutingRecord

KEY = "model.layers.2.self_attn.q_proj.routes.sm.hook_route"


def one_hot_record(choice: torch.Tensor, n: int = 4) -> RoutingRecord:
    """Each token uses exactly the expert ``choice[b, t]`` with weight 1."""
    w = torch.nn.functional.one_hot(choice, n).float()
    return RoutingRecord(scores=w, weights=w, selected=choice[..., None])


def test_frequency_per_group_and_padding_excluded():
    choice = torch.tensor([[0, 0, 1], [2, 3, 3]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    freq = activation_frequency(Cache({KEY: one_hot_record(choice)}), groups=["a", "b"], mask=mask)
    a = freq[freq.group == "a"].set_index("expert")["frequency"]
    b = freq[freq.group == "b"].set_index("expert")["frequency"]
    assert a.tolist() == [1.0, 0.0, 0.0, 0.0]  # the padded token (expert 1) does not count
    assert b.tolist() == pytest.approx([0.0, 0.0, 1 / 3, 2 / 3])
    assert set(freq.columns) >= {"layer", "module", "router", "mean_weight"}
    assert freq["layer"].iloc[0] == 2 and freq["router"].iloc[0] == "sm"


def test_overlap_is_one_for_same_experts_and_zero_for_disjoint():
    choice = torch.tensor([[0, 1], [0, 1], [2, 3]])
    freq = activation_frequency(Cache({KEY: one_hot_record(choice)}), groups=["a", "b", "c"])
    ov = active_overlap(freq, top=2).set_index(["group_a", "group_b"])["jaccard"]
    assert ov[("a", "b")] == 1.0 and ov[("a", "c")] == 0.0


def test_load_entropy_and_balance():
    balanced = one_hot_record(torch.tensor([[0, 1, 2, 3]]))
    skewed = one_hot_record(torch.tensor([[0, 0, 0, 0]]))
    soft = RoutingRecord(scores=torch.full((1, 2, 4), 0.25), weights=torch.full((1, 2, 4), 0.25))
    lb = expert_load(Cache({KEY: balanced}))
    ls = expert_load(Cache({KEY: skewed}))
    lsoft = expert_load(Cache({KEY: soft}))
    assert lb["load"].tolist() == [0.25] * 4 and lb["cv"].iloc[0] == 0.0 and lb["entropy"].iloc[0] == 0.0
    assert ls["load"].tolist() == [1.0, 0, 0, 0] and ls["cv"].iloc[0] > 1.5
    assert lsoft["entropy"].iloc[0] == pytest.approx(torch.log(torch.tensor(4.0)).item(), abs=1e-5)


def test_token_routing_names_the_dominant_expert():
    frame = token_routing(Cache({KEY: one_hot_record(torch.tensor([[3, 1]]))}), tokens=["hi", "!"])
    assert frame["expert"].tolist() == [3, 1] and frame["token"].tolist() == ["hi", "!"]


def test_bad_input_is_named():
    with pytest.raises(WorkbenchError, match="no routing records"):
        expert_load(Cache({"x.hook_in": torch.zeros(1, 2, 3)}))
    rec = one_hot_record(torch.tensor([[0, 1]]))
    with pytest.raises(WorkbenchError, match="mask has shape"):
        expert_load(Cache({KEY: rec}), mask=torch.ones(1, 5))
    with pytest.raises(WorkbenchError, match="group labels"):
        activation_frequency(Cache({KEY: rec}), groups=["a", "b"])


def test_gate_accuracy_counts_real_tokens_routed_to_the_target():
    from workbench.analysis.routing import gate_accuracy

    choice = torch.tensor([[1, 1, 0], [2, 2, 2]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    acc = gate_accuracy(Cache({KEY: one_hot_record(choice)}), targets=[1, 2], mask=mask)
    assert acc["accuracy"].iloc[0] == pytest.approx(4 / 5) and acc["tokens"].iloc[0] == 5
    with pytest.raises(WorkbenchError, match="targets for a batch"):
        gate_accuracy(Cache({KEY: one_hot_record(choice)}), targets=[1])


def test_chance_overlap_matches_simulation_and_edges():
    from workbench.analysis.routing import chance_overlap

    assert chance_overlap(8, 8) == 1.0  # every subset is the whole set
    assert chance_overlap(8, 1) == pytest.approx(1 / 8)  # the same single expert with probability 1/n
    g = torch.Generator().manual_seed(0)
    sims = []
    for _ in range(20_000):
        a = set(torch.randperm(16, generator=g)[:4].tolist())
        b = set(torch.randperm(16, generator=g)[:4].tolist())
        sims.append(len(a & b) / len(a | b))
    assert chance_overlap(16, 4) == pytest.approx(sum(sims) / len(sims), abs=0.005)
    with pytest.raises(WorkbenchError, match="0 < k <= n_experts"):
        chance_overlap(4, 5)


def test_task_separation_is_within_minus_across():
    from workbench.analysis.routing import task_separation

    # halves of task x use experts {0,1}; halves of task y use {2,3}: perfectly separated
    choice = torch.tensor([[0, 1], [0, 1], [2, 3], [2, 3]])
    groups = ["x/0", "x/1", "y/0", "y/1"]
    freq = activation_frequency(Cache({KEY: one_hot_record(choice)}), groups=groups)
    sep = task_separation(active_overlap(freq, top=2), {g: g[0] for g in groups})
    assert sep[["within", "across", "separation"]].iloc[0].tolist() == [1.0, 0.0, 1.0]
    # the same experts for every group: nothing separates the tasks
    same = torch.tensor([[0, 1]] * 4)
    freq = activation_frequency(Cache({KEY: one_hot_record(same)}), groups=groups)
    assert task_separation(active_overlap(freq, top=2), {g: g[0] for g in groups})["separation"].iloc[0] == 0
    with pytest.raises(WorkbenchError, match="no task for the groups"):
        task_separation(active_overlap(freq, top=2), {"x/0": "x"})
