"""output_interference: updates ΔW x on the base's own inputs, checked against a dense reference."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from tests.analysis.helpers import lookup, negated
from tests.conftest import tiny_inputs, tiny_lab
from workbench import zoo
from workbench.analysis import output_interference
from workbench.errors import WorkbenchError
from workbench.naming import split_module_name


def _lab(name: str = "tiny-llama"):
    lab = tiny_lab(name)
    lab.new_adapter("a", r=4, init="random", seed=1, targets="attention")
    lab.new_adapter("b", r=2, init="random", seed=2, targets="all-linear")
    return lab



def dense_reference(name: str, adapters, batch) -> dict[str, np.ndarray]:
    """Path -> (K, K) Σ_t <ΔW_i x_t, ΔW_j x_t>: dense ΔW, x from an unwrapped copy of the base."""
    model = zoo.load(name).model
    xs, handles = {}, []
    paths = sorted({p for a in adapters for p in a.modules})
    for p in paths:
        handles.append(model.get_submodule(p).register_forward_pre_hook(
            lambda m, args, p=p: xs.__setitem__(p, args[0][batch["attention_mask"].bool()].double())))
    with torch.no_grad():
        model(**batch)
    for h in handles:
        h.remove()
    out = {}
    for p in paths:
        updates = [xs[p] @ a.delta(p).detach().double().T if p in a.modules else None for a in adapters]
        out[p] = np.array([[float((u * v).sum()) if u is not None and v is not None else 0.0
                            for v in updates] for u in updates])
    return out


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_equals_a_dense_reference_per_module_and_per_layer(name):
    lab = _lab(name)
    batch = tiny_inputs(lab.model)
    ref = dense_reference(name, [lab.adapters["a"], lab.adapters["b"]], batch)
    by_module = output_interference(lab, inputs={"random": batch})
    assert list(by_module.columns) == ["source", "layer", "module", "adapter_a", "adapter_b", "cosine",
                                       "norm_ratio"]
    shared = [p for p in ref if p in lab.adapters["a"].modules]
    assert len(by_module) == 3 * len(shared) + len(ref)  # a-b, b-a, a-a, b-b per shared module; b-b alone
    for p in shared:
        layer, module = split_module_name(p)
        row = lookup(by_module, "a", "b", layer=layer, module=module)
        M = ref[p]
        assert row.cosine == pytest.approx(M[0, 1] / math.sqrt(M[0, 0] * M[1, 1]), abs=1e-5)
        assert row.norm_ratio == pytest.approx(math.sqrt(M[1, 1] / M[0, 0]), rel=1e-5)

    by_layer = output_interference(lab, inputs={"random": batch}, by="layer")
    assert "module" not in by_layer.columns
    for layer in (0, 1):
        M = sum(m for p, m in ref.items() if split_module_name(p)[0] == layer)  # a's norm: its modules only
        row = lookup(by_layer, "a", "b", layer=layer)
        assert row.cosine == pytest.approx(M[0, 1] / math.sqrt(M[0, 0] * M[1, 1]), abs=1e-5)
        assert row.norm_ratio == pytest.approx(math.sqrt(M[1, 1] / M[0, 0]), rel=1e-5)


def test_an_adapter_with_itself_and_with_its_negation():
    lab = tiny_lab()
    a = lab.new_adapter("a", r=3, init="random", seed=0)
    lab.add_adapter(a.copy("same"))
    lab.add_adapter(negated(a, "neg"))
    frame = output_interference(lab, inputs={"random": tiny_inputs(lab.model)})
    same = frame[(frame.adapter_a == "a") & (frame.adapter_b == "same")]
    neg = frame[(frame.adapter_a == "a") & (frame.adapter_b == "neg")]
    assert len(same) == len(neg) == len(lab.adapters["a"].modules)
    np.testing.assert_allclose(same.cosine, 1.0, atol=1e-9)
    np.testing.assert_allclose(same.norm_ratio, 1.0, atol=1e-9)
    np.testing.assert_allclose(neg.cosine, -1.0, atol=1e-9)
    np.testing.assert_allclose(neg.norm_ratio, 1.0, atol=1e-9)
    diagonal = frame[frame.adapter_a == frame.adapter_b]
    assert (diagonal.cosine == 1).all() and (diagonal.norm_ratio == 1).all()


def test_padding_tokens_are_excluded_and_batches_add_up():
    lab = _lab()
    batch = tiny_inputs(lab.model)  # the last row ends with two padding tokens
    ref = output_interference(lab, inputs={"s": batch})
    repadded = {k: v.clone() for k, v in batch.items()}
    repadded["input_ids"][-1, -2:] = (batch["input_ids"][-1, -2:] + 7) % 256  # other ids under the mask
    pd.testing.assert_frame_equal(output_interference(lab, inputs={"s": repadded}), ref)
    one_by_one = output_interference(lab, inputs={"s": batch}, batch_size=1)  # float32 x: rounding only
    np.testing.assert_allclose(one_by_one[["cosine", "norm_ratio"]], ref[["cosine", "norm_ratio"]], atol=1e-6)
    unmasked = output_interference(lab, inputs={"s": {"input_ids": repadded["input_ids"]}})
    assert not np.allclose(unmasked.cosine, ref.cosine, atol=1e-6)


def test_the_base_gives_x_whatever_the_lab_uses():
    lab = _lab()
    batch = tiny_inputs(lab.model)
    ref = output_interference(lab, inputs={"s": batch})
    lab.use("b")
    pd.testing.assert_frame_equal(output_interference(lab, inputs={"s": batch}), ref)
    assert lab.active.names == {"b"}  # restored
    lab.merge_into_base("a")
    with pytest.raises(WorkbenchError, match="unmerge"):
        output_interference(lab, inputs={"s": batch})


def test_bad_input_is_refused_with_clear_errors():
    lab = _lab()
    batch = tiny_inputs(lab.model)
    with pytest.raises(WorkbenchError, match=r"no adapter\(s\) \['zz'\]"):
        output_interference(lab, ["a", "zz"], inputs={"s": batch})
    with pytest.raises(WorkbenchError, match="at least two"):
        output_interference(lab, ["a"], inputs={"s": batch})
    with pytest.raises(WorkbenchError, match="not a view"):
        output_interference(lab, inputs={"s": batch}, by="token")
    with pytest.raises(WorkbenchError, match="needs a tokenizer"):
        output_interference(lab, inputs={"s": ["some text"]})
    with pytest.raises(WorkbenchError, match="needs a tokenizer"):
        output_interference(lab)  # default inputs are task prompts: text
    with pytest.raises(WorkbenchError, match="input_ids"):
        output_interference(lab, inputs={"s": {"ids": batch["input_ids"]}})


@pytest.mark.slow
def test_ready_adapters_on_their_own_tasks(smollm2):
    from workbench import Workbench, ready

    lab = Workbench(smollm2.model, smollm2.tokenizer, name=smollm2.name, fingerprint=smollm2.fingerprint)
    try:
        ready.load_all(lab)
        frame = output_interference(lab, n=2, by="layer")
        layers = smollm2.model.config.num_hidden_layers
        assert set(frame.source) == set(ready.NAMES)
        assert len(frame) == len(ready.NAMES) * layers * len(ready.NAMES) ** 2
        assert np.isfinite(frame[["cosine", "norm_ratio"]].to_numpy()).all()
        assert frame.cosine.between(-1, 1).all()
    finally:
        lab.detach()  # the session model is shared: put its original modules back
