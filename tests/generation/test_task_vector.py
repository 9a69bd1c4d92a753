"""task_vector: the ICM-LoRA hook reads the last decoder layer's output at the last position, averaged."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_lab
from workbench.errors import WorkbenchError
from workbench.generation import last_decoder_layer, task_vector

IDS = [{"input_ids": [5, 6, 7, 8, 3]}, {"input_ids": [9, 10, 11]}]


@pytest.mark.parametrize(("name", "path", "norm"), [("tiny-llama", "model.layers.1", "model.norm"),
                                                    ("tiny-gpt2", "transformer.h.1", "transformer.ln_f")])
def test_the_hook_is_the_last_decoder_layer_at_the_last_position(name, path, norm):
    lab = tiny_lab(name)
    assert last_decoder_layer(lab.model) == path
    c = task_vector(lab, IDS[:1])  # (H,)
    with torch.no_grad():
        out = lab.model(input_ids=torch.tensor([IDS[0]["input_ids"]]), output_hidden_states=True)
    # the model's last hidden state is the final norm of the last decoder layer's output
    final = out.hidden_states[-1][0]  # (T, H)
    normed = lab.model.get_submodule(norm)(c[None])[0]
    torch.testing.assert_close(normed, final[-1], atol=1e-5, rtol=1e-5)
    assert (normed - final[0]).abs().max() > 1e-3  # not the first position


def test_the_vector_is_the_mean_over_examples():
    lab = tiny_lab()
    each = [task_vector(lab, [e]) for e in IDS]
    torch.testing.assert_close(task_vector(lab, IDS), torch.stack(each).mean(0), atol=1e-6, rtol=0)


def test_it_runs_on_the_base_by_default_and_with_use_on_an_adapter():
    lab = tiny_lab()
    lab.new_adapter("a", r=2, init="random", seed=0)
    lab.use("a")
    base = task_vector(lab, IDS)
    assert lab.active.names == {"a"}  # what was used comes back
    tuned = task_vector(lab, IDS, use="a")
    lab.use(None)
    torch.testing.assert_close(task_vector(lab, IDS), base)
    assert (tuned - base).abs().max() > 1e-4


def test_no_examples_or_odd_examples_are_refused():
    lab = tiny_lab()
    with pytest.raises(WorkbenchError, match="needs examples"):
        task_vector(lab, [])
    with pytest.raises(WorkbenchError, match="Example"):
        task_vector(lab, ["a string"])
