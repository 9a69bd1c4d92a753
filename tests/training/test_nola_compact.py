"""NOLA's compact form (seeds + coefficients): saved, reloaded into a fresh lab, bit-exact."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_lab
from tests.training.helpers import two_tasks
from workbench.errors import WorkbenchError
from workbench.training import MultiTaskTrainer
from workbench.training.nola import load_compact, save_compact


def test_nola_compact_form_reloads_bit_exactly_in_a_fresh_lab(tmp_path):
    lab = tiny_lab()
    lab.new_adapter("n", r=4, alpha=8, targets="attention", seed=3)
    tr = MultiTaskTrainer(lab, "n", two_tasks(), steps=3, lr=5e-2, batch_size=4, optimizer="nola",
                          optimizer_options={"k": 16, "l": 8, "seed": 5}, progress=False)
    tr.run()
    trained = tr.adapter
    assert any(f.B.abs().max() > 0 for f in trained.modules.values())
    with pytest.raises(WorkbenchError, match="init_seed"):  # the trainer's seed (0) did not make A0
        save_compact(tr.optimizer, trained, tr.modules, tmp_path / "n.pt")
    size = save_compact(tr.optimizer, trained, tr.modules, tmp_path / "n.pt", init_seed=3)
    assert size < 4 * sum(f.A.numel() + f.B.numel() for f in trained.modules.values())  # < the fp32 factors
    fresh = tiny_lab()
    back = load_compact(fresh, "m", tmp_path / "n.pt")
    assert list(back.modules) == list(trained.modules)
    for path, f in trained.modules.items():  # bit for bit, not approximately
        assert torch.equal(back.modules[path].A, f.A.detach())
        assert torch.equal(back.modules[path].B, f.B.detach())
        assert back.scale(path) == trained.scale(path)
    x = torch.tensor([[1, 5, 7, 2, 9]])
    with torch.no_grad(), lab.using("n"):
        y = lab.model(x).logits
    with torch.no_grad(), fresh.using("m"):
        assert torch.equal(fresh.model(x).logits, y)


def test_load_compact_refuses_other_files(tmp_path):
    torch.save({"format": "something"}, tmp_path / "x.pt")
    with pytest.raises(WorkbenchError, match="not a compact NOLA file"):
        load_compact(tiny_lab(), "m", tmp_path / "x.pt")
