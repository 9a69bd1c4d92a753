"""Shared fixtures: tiny random models for fast unit tests, the real SmolLM2 for slow ones."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("LORA_WORKBENCH_TRACKING", "0")  # tests record nowhere unless they turn it on
# One thread per pytest-xdist worker (make test runs two on two cores: no spin-waiting on each other),
# two in a single process.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)

TINY = ["tiny-llama", "tiny-gemma3", "tiny-gpt2", "tiny-bert"]


@pytest.fixture
def one_thread():
    """One torch thread for the test, then the thread count as it was: tiny models' ops are too small to
    share, and two threads beside a busy process run them tens of times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_inputs(model, batch: int = 3, length: int = 7, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random token ids for a tiny model, with a padded last row (exercises attention masks)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.config.vocab_size, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    mask[-1, -2:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def tiny_lab(name: str = "tiny-llama"):
    """A fresh Workbench on a tiny random zoo model."""
    from workbench import Workbench, zoo

    z = zoo.load(name)
    return Workbench(z.model, z.tokenizer, name=name, fingerprint=z.fingerprint)


def output_of(out) -> torch.Tensor:
    """Logits of a causal LM, last hidden state of an encoder."""
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M-Instruct (cached conversion; skipped when its package is absent)."""
    from workbench import zoo
    from workbench.errors import MissingPackageError

    try:
        return zoo.load("smollm2-135m")
    except MissingPackageError as e:
        pytest.skip(str(e))


def assert_rows_generate_alone(lab, inputs: dict, rows: list, mixed, **generate_kwargs) -> None:
    """Each row of a mixed-batch ``generate`` (``mixed``) equals that row generated alone with its adapter:
    the same tokens, and every step's logits to 1e-5."""
    for i, r in enumerate(rows):
        with lab.using(r), torch.no_grad():
            alone = lab.model.generate(**{k: v[i:i + 1] for k, v in inputs.items()}, **generate_kwargs)
        assert torch.equal(mixed.sequences[i], alone.sequences[0])
        for step_mixed, step_alone in zip(mixed.logits, alone.logits, strict=True):
            torch.testing.assert_close(step_mixed[i:i + 1], step_alone, atol=1e-5, rtol=0)
