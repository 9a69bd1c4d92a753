"""Any model people bring: new adapters, use, recording, geometry, merging (into a new adapter and into
the base) and training on tiny random models of eight architectures, in fp32, bf16 and fp16 (on CUDA
when there is one).

Adapters keep float32 factors on a half-precision base, as peft does; the update is added to the base
output in the base's dtype. BERT has no language-model head, so it is not trained here.
"""

from __future__ import annotations

import pytest
import torch

from tests.adapters.tiny_archs import ARCHS, build, inputs
from workbench import Workbench, analysis
from workbench.training import MultiTaskTrainer

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _base_weights(model) -> dict[str, torch.Tensor]:
    """The base model's own tensors under their original names (wrapping adds ``base_layer.``)."""
    state = model.state_dict()
    return {k.replace("base_layer.", ""): v.clone() for k, v in state.items() if "lora_" not in k}


def _output(out) -> torch.Tensor:
    return (out.logits if hasattr(out, "logits") else out.last_hidden_state).float()


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("arch", ARCHS)
def test_the_engine_runs_on_any_architecture(arch, dtype):
    dt = DTYPES[dtype]
    lab = Workbench(build(arch, dt, DEVICE), name=arch)
    before = _base_weights(lab.model)
    a = lab.new_adapter("a", r=2, targets="all-linear", init="random", seed=0)
    lab.new_adapter("b", r=2, targets="all-linear", init="random", seed=1)
    assert all(f.A.device.type == DEVICE for f in a.modules.values())
    x = inputs(lab.model)
    base = _output(lab.run(x)[0])

    with lab.using({"a": 1.0, "b": 0.5}):  # use, and record every rank activation
        out, cache = lab.run(x, record="*.hook_rank.*")
    applied = _output(out)
    assert torch.isfinite(applied).all() and (applied - base).abs().max() > 0
    assert len(cache) == 2 * len(a.modules)

    geometry = analysis.angles(lab.adapters, by="layer")  # factored geometry, one row per pair and layer
    assert len(geometry) and geometry["cosine"].abs().le(1 + 1e-6).all()

    merged = lab.merge(["a", "b"], method="task_arithmetic", weights=[1.0, 0.5])
    with lab.using(merged.name):
        assert torch.allclose(_output(lab.run(x)[0]), applied, atol=5e-2 if dt != torch.float32 else 1e-5)

    lab.merge_into_base("a")
    lab.merge_into_base("b", weight=0.5)
    tol = 1e-5 if dt == torch.float32 else 1e-1  # half-precision bases round the folded weights
    assert (_output(lab.run(x)[0]) - applied).abs().max() <= tol
    lab.unmerge()
    after = _base_weights(lab.model)
    assert after.keys() == before.keys() and all(torch.equal(after[k], v) for k, v in before.items())
    assert lab.model.dtype == dt


@pytest.mark.parametrize("arch", [a for a in ARCHS if a != "bert"])
def test_training_runs_on_any_causal_architecture(arch):
    lab = Workbench(build(arch), name=arch)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 90, (8, 6), generator=g).tolist()
    features = [{"input_ids": row, "labels": [-100] * 3 + row[3:]} for row in ids]
    trainer = MultiTaskTrainer(lab, "t", {"toy": features}, r=2, targets="attention", steps=3,
                               batch_size=4, lr=1e-2, progress=False)
    result = trainer.run()
    assert len(result.history) and torch.isfinite(torch.tensor(result.history["loss"].values)).all()
    assert any(f.B.abs().sum() > 0 for f in lab.adapters["t"].modules.values())  # B moved off zero
