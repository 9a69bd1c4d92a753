"""Route-lab views, headless: state, binary payloads, and simulated front-end messages reaching Python."""

from __future__ import annotations

import numpy as np
import pytest
import traitlets

from tests.conftest import tiny_inputs, tiny_lab
from widgets._heatmap import decode
from widgets.expert_load import ALL, ExpertLoad
from widgets.rank_activations import RankActivations
from widgets.token_routing import TokenRouting
from workbench.analysis.routing import activation_frequency, expert_load
from workbench.errors import WorkbenchError


@pytest.fixture(scope="module")
def routed():
    lab = tiny_lab()
    lab.add_router("sm", "smora", r=8, k=2, init="random", targets="attention")
    lab.use("sm")
    x = tiny_inputs(lab.model)
    _, cache = lab.run(x, record="*.hook_route")
    return cache, x["attention_mask"]


def test_rank_activations_follows_the_chosen_task(routed):
    cache, mask = routed
    freq = activation_frequency(cache, groups=["a", "b", "a"], mask=mask)
    view = RankActivations.from_frame(freq)
    state = view.get_state()
    assert state["choices"] == ["a", "b"] and state["choice"] == "a"
    assert isinstance(state["heatmap"]["values"], bytes)  # sent as a binary buffer
    per_layer = freq[freq.group == "a"].groupby(["layer", "expert"])["frequency"].mean().unstack()
    np.testing.assert_allclose(decode(view.heatmap), per_layer.to_numpy(), rtol=1e-6)
    view.set_state({"choice": "b"})  # what a click on the "b" button sends
    assert view.heatmap["choice"] == "b"
    per_layer_b = freq[freq.group == "b"].groupby(["layer", "expert"])["frequency"].mean().unstack()
    np.testing.assert_allclose(decode(view.heatmap), per_layer_b.to_numpy(), rtol=1e-6)
    overlap = decode(view.aside)
    assert overlap.shape == (2, 2) and np.allclose(np.diag(overlap), 1.0)
    view.set_state({"selected": ["layer 1", "3"]})  # a click on a cell
    assert view.detail.startswith("layer 1, rank 3: a ")
    with pytest.raises(traitlets.TraitError, match="choice must be one of"):
        view.choice = "c"


def test_expert_load_per_module_and_balance(routed):
    cache, mask = routed
    load = expert_load(cache, mask=mask)
    view = ExpertLoad.from_frame(load)
    assert view.choice == ALL and view.choices[1:] == list(dict.fromkeys(load["module"]))
    total = decode(view.heatmap)
    assert total.shape == (2, 8) and np.allclose(total.sum(1), 1.0, atol=1e-5)  # loads sum to one per layer
    view.set_state({"choice": "self_attn.q_proj"})
    q = load[load.module == "self_attn.q_proj"].pivot(index="layer", columns="expert", values="load")
    np.testing.assert_allclose(decode(view.heatmap), q.to_numpy(), rtol=1e-6)
    assert "H=" in view.heatmap["rows"][0] and "cv=" in view.heatmap["rows"][0]


def test_token_routing_sends_the_chosen_modules_weights(routed):
    cache, _ = routed
    view = TokenRouting.from_cache(cache, [f"t{i}" for i in range(7)])
    assert len(view.modules) == 8 and view.weights["shape"] == [7, 8]
    second = view.modules[1]
    view.set_state({"module": second})
    key = next(k for k in cache if ".layers.0.self_attn.k_proj." in k)
    expected = cache[key].weights[0].abs().argmax(-1).tolist()
    assert view.weights["module"] == second and view.dominant() == expected


def test_views_refuse_the_wrong_frames(routed):
    cache, _ = routed
    with pytest.raises(WorkbenchError, match="activation_frequency"):
        RankActivations.from_frame(expert_load(cache))
    with pytest.raises(WorkbenchError, match="expert_load"):
        ExpertLoad.from_frame(activation_frequency(cache))
    with pytest.raises(WorkbenchError, match="tokens"):
        TokenRouting.from_cache(cache, ["only", "three", "tokens"])
    with pytest.raises(WorkbenchError, match="row 99 is not a row"):
        TokenRouting.from_cache(cache, [f"t{i}" for i in range(7)], row=99)


@pytest.mark.slow
def test_prompt_what_if_routes_edits_and_freezes(smollm2):
    from widgets import PromptWhatIf
    from workbench import Workbench

    lab = Workbench(smollm2.model, smollm2.tokenizer, name=smollm2.name, fingerprint=smollm2.fingerprint)
    try:
        for i, name in enumerate(("a", "b")):
            lab.new_adapter(name, r=2, targets="q_proj", init="random", seed=i)
        lab.add_router("gate", "meteora", bank=["a", "b"], k=2)
        view = PromptWhatIf.from_lab(lab, "gate", "Hi")
        first = list(view.view.tokens)
        view.prompt.value = "What is 17 plus 25?"  # what an edit in the box sends
        n_tokens = len(lab.encode(view.prompt.value)["input_ids"][0])
        assert view.view.tokens != first and len(view.view.tokens) == n_tokens
        assert view.view.weights["shape"] == [len(view.view.tokens), 2]
        view.freeze_button.click()
        assert "gate_frozen_1" in lab.adapters and "top-1 agreement" in view.status.value
    finally:
        lab.detach()


def test_token_routing_labels_its_experts(routed):
    cache, _ = routed
    names = [f"rank{i}" for i in range(8)]
    view = TokenRouting.from_cache(cache, [f"t{i}" for i in range(7)], experts=names)
    assert view.get_state()["experts"] == names
    with pytest.raises(WorkbenchError, match="3 expert labels for 8 experts"):
        TokenRouting.from_cache(cache, [f"t{i}" for i in range(7)], experts=names[:3])


def test_expert_load_draws_the_balance_loss_over_steps(routed):
    import pandas as pd

    cache, mask = routed
    history = pd.DataFrame({"step": [0, 1, 2], "loss": [3.0, 2.0, 1.5], "aux": [0.3, 0.2, 0.1],
                            "aux/sm/load_balance": [0.3, 0.2, 0.1]})
    view = ExpertLoad.from_frame(expert_load(cache, mask=mask), history=history)
    assert view.curve["x"] == [0.0, 1.0, 2.0]
    assert view.curve["series"] == {"sm/load_balance": [0.3, 0.2, 0.1]}  # the total "aux" is not a curve
    assert ExpertLoad.from_frame(expert_load(cache, mask=mask)).curve == {}
    with pytest.raises(WorkbenchError, match="auxiliary loss columns"):
        ExpertLoad.from_frame(expert_load(cache, mask=mask), history=history[["step", "loss"]])


def test_expert_load_names_its_experts(routed):
    cache, mask = routed
    names = [f"adapter{i}" for i in range(8)]
    view = ExpertLoad.from_frame(expert_load(cache, mask=mask), experts=names)
    assert view.heatmap["cols"] == names
    view.set_state({"selected": [view.heatmap["rows"][0], "adapter3"]})
    assert view.detail.startswith("layer 0, expert adapter3: load ")
    with pytest.raises(WorkbenchError, match="2 expert labels for 8 experts"):
        ExpertLoad.from_frame(expert_load(cache, mask=mask), experts=names[:2])
