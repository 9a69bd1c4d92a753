"""MeteoRA: a gate per module over a frozen bank of the lab's adapters (top-k, temperature, gate CE)."""

from __future__ import annotations

import types

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import output_of, tiny_inputs, tiny_lab
from workbench import zoo
from workbench.adapters import new_adapter
from workbench.errors import WorkbenchError
from workbench.routing import aux_loss, routing_context
from workbench.routing.mechanisms.meteora import MeteoRA, meteora_gate


def bank_lab(names=("a", "b"), ranks=(2, 4)):
    """A tiny-llama lab with random adapters on attention (different ranks, alphas and scaling rules)."""
    lab = tiny_lab()
    for i, (name, r) in enumerate(zip(names, ranks, strict=True)):
        a = new_adapter(name, lab.shapes("attention"), r=r, alpha=3.0 + i, init="random", seed=10 + i,
                        scaling="rslora" if i == 1 else "standard")
        for f in a.modules.values():
            f.B.mul_(20)  # big enough that adapters differ clearly in the logits
        lab.add_adapter(a)
    return lab


def add_meteora(lab, name="m", bank=("a", "b"), **params):
    return lab.add_router(name, "meteora", targets=MeteoRA.targets_for(lab, bank=list(bank)),
                          bank=list(bank), **params)


def force_gate(routed, j: int, big: float = 1e4) -> None:
    """One-hot huge gate logits toward bank adapter j at every token (a linear gate without bias
    cannot favour one adapter for every input, so the logits themselves are replaced)."""
    for r in routed.modules.values():
        r.gate_logits = lambda x, r=r: big * F.one_hot(torch.full(x.shape[:-1], j), len(r.bank)).float()


@pytest.mark.parametrize(("k", "reference_path", "j"),
                         [(1, False, 0), (2, False, 1), (2, True, 0), (1, True, 1)])
def test_one_hot_gate_equals_the_adapter_and_peft(k, reference_path, j, tmp_path):
    from peft import PeftModel

    lab = bank_lab()
    x = tiny_inputs(lab.model)
    routed = add_meteora(lab, k=k, reference_path=reference_path)
    force_gate(routed, j)
    name = ["a", "b"][j]
    with lab.using("m"):
        ours = output_of(lab.run(x)[0])
    with lab.using(name):
        plain = output_of(lab.run(x)[0])
    with lab.using(["a", "b"][1 - j]):
        other = output_of(lab.run(x)[0])
    assert (plain - other).abs().max() > 1e-2, "the two adapters must differ for this to test anything"
    torch.testing.assert_close(ours, plain, atol=1e-5, rtol=0)
    lab.save_adapter(name, tmp_path / name)
    peft_model = PeftModel.from_pretrained(zoo.load("tiny-llama").model, tmp_path / name).eval()
    with torch.no_grad():
        theirs = output_of(peft_model(**x))
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("reference_path", [False, True])
def test_exactly_k_adapters_per_token_and_weights_sum_to_one(reference_path):
    lab = bank_lab(("a", "b", "c"), (2, 3, 2))
    add_meteora(lab, bank=("a", "b", "c"), k=2, reference_path=reference_path, T=3.0)
    lab.use("m")
    _, cache = lab.run(tiny_inputs(lab.model), record="*.hook_route")
    assert len(cache) == 8  # q, k, v, o in two layers
    for rec in cache.values():
        assert rec.shape == (3, 7, 3) and rec.selected.shape == (3, 7, 2)
        assert ((rec.weights > 0).sum(-1) == 2).all() and (rec.active.sum(-1) == 2).all()
        torch.testing.assert_close(rec.weights.sum(-1), torch.ones(3, 7))


def test_gate_paths_follow_the_code():
    lab = bank_lab(("a", "b", "c"), (2, 2, 2))
    router = next(iter(add_meteora(lab, bank=("a", "b", "c"), k=2, T=2.0).modules.values()))
    logits = torch.tensor([[3.0, 1.0, 2.0]])
    w, idx = router.gates(logits)  # accelerated: softmax of the top-k logits / T
    torch.testing.assert_close(w[0, [0, 2]], torch.tensor([3.0, 2.0]).div(2).softmax(-1))
    assert w[0, 1] == 0 and sorted(idx[0].tolist()) == [0, 2]
    router.reference_path = True  # softmax over all, top-k, renormalise (no temperature)
    w_ref, _ = router.gates(logits)
    p = logits.softmax(-1)[0]
    torch.testing.assert_close(w_ref[0, [0, 2]], p[[0, 2]] / p[[0, 2]].sum())
    router.k = 1
    assert router.gates(logits)[0].tolist() == [[1.0, 0.0, 0.0]]


def test_forward_is_the_weighted_sum_of_bank_updates():
    lab = bank_lab()
    router = next(iter(add_meteora(lab, k=2).modules.values()))
    path = next(iter(lab.routers["m"].modules))
    x = torch.randn(2, 5, 64)
    w, _ = router.gates(router.gate_logits(x))
    want = sum(w[..., j, None] * (x @ lab.adapters[n].delta(path).T) for j, n in enumerate(["a", "b"]))
    torch.testing.assert_close(router(x, None), want, atol=1e-5, rtol=1e-5)


def test_default_targets_and_bad_banks_are_clear_errors():
    lab = bank_lab()
    assert MeteoRA.targets_for(lab, bank=["a", "b"]) == list(lab.shapes("attention"))
    routed = lab.add_router("m", "meteora", bank=["a", "b"])  # by default: where the bank has factors
    assert list(routed.modules) == list(lab.shapes("attention"))
    lab.remove_router("m")
    with pytest.raises(WorkbenchError, match="targets_for"):  # a module the bank does not cover
        lab.add_router("m", "meteora", bank=["a", "b"], targets="all-linear")
    lab.new_adapter("q_only", r=2, targets="q_proj")
    with pytest.raises(WorkbenchError, match=r"same modules.*only in 'a'.*k_proj"):
        add_meteora(lab, bank=("a", "q_only"))
    with pytest.raises(WorkbenchError, match="does not hold"):
        add_meteora(lab, bank=("a", "zzz"))
    with pytest.raises(WorkbenchError, match="bank="):
        lab.add_router("m", "meteora", targets="q_proj")
    with pytest.raises(WorkbenchError, match="k <= 2"):
        add_meteora(lab, k=3)
    assert not lab.routers


def test_a_bank_over_all_linear_routes_by_default():
    lab = tiny_lab()
    lab.new_adapter("a", r=2, targets="all-linear", init="random")
    lab.new_adapter("b", r=2, targets="all-linear", init="random", seed=1)
    routed = lab.add_router("m", "meteora", bank=["a", "b"], k=1)
    assert list(routed.modules) == list(lab.adapters["a"].modules)


def test_gate_loss_labels_each_real_token_with_its_task():
    lab = bank_lab()
    router = next(iter(add_meteora(lab, task_to_adapter={7: 1, 3: 0}).modules.values()))
    router.train()
    x = torch.randn(2, 4, 64)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    with routing_context(task=torch.tensor([7, 3]), attention_mask=mask):
        router(x, None)
    term = router.pending_aux[0]
    assert term.loss == "meteora_gate" and term.coef == 50.0
    assert term.payload["labels"].tolist() == [[1, 1, 1, 1], [0, 0, -100, -100]]
    logits = term.payload["logits"]
    want = F.cross_entropy(logits[:, :-1].reshape(-1, 2), term.payload["labels"][:, 1:].reshape(-1),
                           ignore_index=-100)  # shifted by one, like LM labels
    torch.testing.assert_close(meteora_gate([term.payload]), want)
    with routing_context(task=torch.tensor([5, 3])), pytest.raises(WorkbenchError, match="task_to_adapter"):
        router(x, None)
    with pytest.raises(WorkbenchError, match="'task'"):
        router(x, None)  # training without task ids
    router.eval()
    router(x, None)  # eval needs no context


def test_gate_ce_decreases_when_the_task_is_linearly_decodable():
    torch.manual_seed(0)
    factors = [(torch.randn(2, 64), torch.randn(64, 2), 1.0) for _ in range(2)]
    router = MeteoRA(64, 64, generator=torch.Generator().manual_seed(0), bank=["a", "b"], factors=factors,
                     k=1)
    router.owner = "m"
    router.train()
    direction = torch.randn(64)
    opt = torch.optim.Adam(router.trainable(), lr=0.05)
    losses, accuracy = [], []
    for _ in range(30):
        task = torch.randint(0, 2, (8,))
        x = torch.randn(8, 6, 64) + 2.0 * (2 * task[:, None, None] - 1) * direction
        with routing_context(task=task):
            router(x, None)
        loss, parts = aux_loss(router)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(parts["m/meteora_gate"] / 50)
        accuracy.append(float((router.gate_logits(x).argmax(-1) == task[:, None]).float().mean()))
    assert losses[-1] < 0.5 * losses[0] and accuracy[-1] > 0.95


def test_a_training_step_moves_the_gate_only():
    from workbench.training import fit

    lab = bank_lab()
    lab.tokenizer = types.SimpleNamespace(pad_token_id=0)  # fit only reads the pad id
    routed = add_meteora(lab)
    bank = {n: {p: (f.A.clone(), f.B.clone()) for p, f in lab.adapters[n].modules.items()} for n in "ab"}
    copies = {p: (r.A.clone(), r.B.clone()) for p, r in routed.modules.items()}
    gates = {p: r.gate.detach().clone() for p, r in routed.modules.items()}
    params = routed.trainable()
    assert params == [r.gate for r in routed.modules.values()]  # train_loras=False: the gate only
    feats = [{"input_ids": [1, 2, 3, 4, 5], "labels": [-100, 2, 3, 4, 5], "task": i % 2} for i in range(4)]
    history = fit(lab, params, feats, use="m", label="m", steps=2, lr=1e-2, batch_size=4, seed=0,
                  progress=False)
    assert "aux/m/meteora_gate" in history.columns and history["aux"].gt(0).all()
    for p, r in routed.modules.items():
        assert not torch.equal(r.gate, gates[p])
        assert torch.equal(r.A, copies[p][0]) and torch.equal(r.B, copies[p][1])
    for n, factors in bank.items():
        for p, (A, B) in factors.items():
            f = lab.adapters[n].modules[p]
            assert torch.equal(f.A, A) and torch.equal(f.B, B) and not f.A.requires_grad


def test_train_loras_makes_trainable_copies():
    lab = bank_lab()
    routed = add_meteora(lab, train_loras=True)
    router = next(iter(routed.modules.values()))
    assert {id(p) for p in router.trainable()} == {id(router.gate), id(router.A), id(router.B)}
    frozen = next(iter(add_meteora(lab, "m2").modules.values()))
    assert "A" in router.state_dict() and "A" not in frozen.state_dict()  # the frozen bank is not state
