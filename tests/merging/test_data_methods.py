"""RegMean and Fisher merging: the statistics measured on a tiny model against an independent
computation, RegMean against the least-squares solution of a planted regression, Fisher merging
against its dense formula, and the errors that name the missing statistics."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_lab
from tests.merging.helpers import delta, rel, sources
from tests.merging.stats_data import planted_statistics
from workbench.errors import WorkbenchError
from workbench.merging import merge
from workbench.merging.statistics import MergeStatistics, merge_statistics

PATH = "model.layers.0.self_attn.q_proj"


def _features(n=4, length=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(0, 256, (length,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [-100] * 4 + ids[4:]})  # a masked "prompt", then the answer
    return out


@pytest.fixture(scope="module")
def lab_and_stats():
    lab = tiny_lab()
    for i, n in enumerate("ab"):
        lab.new_adapter(n, r=2 + i, targets="attention", seed=i, init="random")
    data = {"a": _features(seed=1), "b": _features(seed=2)}
    return lab, data, merge_statistics(lab, ["a", "b"], data, examples=4)


def _independent(lab, name, features):
    """Gram by a plain pre-hook, Fisher by autograd on the base weight itself (not the output hooks)."""
    layer = lab.model.get_submodule(PATH)
    W = layer.base_layer.weight
    xs = []
    handle = layer.register_forward_pre_hook(lambda m, args: xs.append(args[0].detach()[0].double()))
    fisher = torch.zeros(W.shape, dtype=torch.float64)
    W.requires_grad_(True)
    try:
        with lab.using(name):
            lab.model.eval()
            for f in features:
                ids, labels = torch.tensor([f["input_ids"]]), torch.tensor([f["labels"]])
                logp = torch.log_softmax(lab.model(input_ids=ids).logits[0, :-1].float(), -1)
                real = labels[0, 1:] != -100
                ll = logp[real].gather(1, labels[0, 1:][real][:, None]).sum()
                (g,) = torch.autograd.grad(ll, [W])
                fisher += g.double() ** 2
    finally:
        W.requires_grad_(False)
        handle.remove()
    X = torch.cat(xs)  # (tokens, in)
    return X.T @ X / X.shape[0], fisher / len(features)


def test_statistics_match_an_independent_computation(lab_and_stats):
    lab, data, stats = lab_and_stats
    for name in "ab":
        gram, fisher = _independent(lab, name, data[name])
        assert rel(stats.grams[name][PATH], gram) < 1e-5
        assert rel(stats.fishers[name][PATH], fisher) < 1e-4
        assert stats.examples[name] == 4 and stats.tokens[name] == 36
        assert set(stats.grams[name]) == set(lab.adapters[name].modules)
    assert "gram+fisher" in stats.name


def test_statistics_leave_the_lab_as_it_was(lab_and_stats):
    lab, data, _ = lab_and_stats
    before = {n: p.requires_grad for n, p in lab.model.named_parameters()}
    lab.model.train()
    merge_statistics(lab, ["a"], data, kinds=("gram",), examples=2)
    assert lab.model.training and lab.active.names == set()
    assert before == {n: p.requires_grad for n, p in lab.model.named_parameters()}


def test_lab_merges_with_measured_statistics_and_refuses_without(lab_and_stats):
    lab, _, stats = lab_and_stats
    names = list(lab.adapters)
    for method in ("regmean", "fisher"):
        out = lab.merge(["a", "b"], method, statistics=stats, name=f"m_{method}")
        assert out.lineage["merge"]["params"]["statistics"].startswith("statistics(gram+fisher")
    before = list(lab.adapters)
    with pytest.raises(WorkbenchError, match="'regmean' needs statistics=.*merge_statistics"):
        lab.merge(["a", "b"], "regmean")
    only_gram = MergeStatistics(grams=stats.grams, fingerprints=stats.fingerprints)
    with pytest.raises(WorkbenchError,
                       match="fisher needs fisher statistics of every source.*kinds=\\('fisher',\\)"):
        lab.merge(["a", "b"], "fisher", statistics=only_gram)
    assert list(lab.adapters) == before and set(names) < set(before)


def test_statistics_of_another_adapter_of_the_same_name_are_refused():
    a, b = sources((4, 4), seed=40)
    stats = planted_statistics([a, b])
    changed = a.copy()
    changed.modules[PATH].B.mul_(2.0)
    with pytest.raises(WorkbenchError, match="statistics of 'a' were measured with another adapter"):
        merge([changed, b], "regmean", statistics=stats)
    with pytest.raises(WorkbenchError, match="not a MergeStatistics"):
        merge([a, b], "fisher", statistics={"a": {}})


# -- RegMean against a planted regression ------------------------------------------------------------
def test_regmean_is_the_least_squares_merge_of_a_planted_regression():
    """Source i maps its inputs Xᵢ to Yᵢ = Xᵢ(W₀ + ΔWᵢ)ᵀ; the single W best fitting both, by lstsq on the
    stacked data, minus W₀ is RegMean's ΔW' (α = 1), whatever W₀."""
    adapters = sources((3, 5), seed=41)
    g = torch.Generator().manual_seed(0)
    n, grams = 300, {}
    W0 = torch.randn(64, 64, generator=g, dtype=torch.float64)
    Xs, Ys = [], []
    for k, a in enumerate(adapters):
        mix = torch.randn(64, 64, generator=g, dtype=torch.float64) * (0.2 + k)  # different input spreads
        X = torch.randn(n, 64, generator=g, dtype=torch.float64) @ mix  # (n, in)
        Xs.append(X)
        Ys.append(X @ (W0 + delta(a, PATH)).T)  # (n, out)
        grams[a.name] = {p: X.T @ X / n for p in a.modules}
    W = torch.linalg.lstsq(torch.cat(Xs), torch.cat(Ys)).solution.T  # (out, in)
    stats = MergeStatistics.planted(adapters, grams=grams)
    out = merge(adapters, "regmean", statistics=stats, alpha=1.0).adapter
    assert rel(out.delta(PATH), W - W0) < 1e-5
    plain = merge(adapters, "task_arithmetic", [0.5, 0.5]).adapter
    assert rel(plain.delta(PATH), W - W0) > 0.05  # not simply the mean


def test_regmean_with_diagonal_grams_is_a_per_column_weighted_mean():
    adapters = sources((3, 5), seed=42)
    g = torch.Generator().manual_seed(1)
    d = {a.name: {p: torch.diag(torch.rand(64, generator=g, dtype=torch.float64) + 0.1) for p in a.modules}
         for a in adapters}
    stats = MergeStatistics.planted(adapters, grams=d)
    out = merge(adapters, "regmean", [1.0, -0.5], statistics=stats).adapter
    ga, gb = d["a"][PATH].diagonal(), d["b"][PATH].diagonal()
    expected = (delta(adapters[0], PATH) * ga - 0.5 * delta(adapters[1], PATH) * gb) / (ga + gb)
    assert rel(out.delta(PATH), expected) < 1e-5


def test_fisher_merge_is_the_fisher_weighted_mean():
    adapters = sources((3, 4, 5), seed=43)
    weights = [1.0, 0.5, -0.8]
    stats = planted_statistics(adapters)
    out = merge(adapters, "fisher", weights, statistics=stats, rank=64, min_fisher=0.01).adapter
    for path in adapters[0].modules:
        F = [stats.fishers[a.name][path] + 0.01 for a in adapters]
        expected = sum(f * w * delta(a, path) for f, w, a in zip(F, weights, adapters, strict=True)) / sum(F)
        assert rel(out.delta(path), expected) < 1e-5


def test_statistics_on_a_lab_task_encode_its_training_examples():
    from tests.tasks.helpers import build_tokenizer
    from workbench import Workbench, zoo
    from workbench.tasks import Example, Task, encode_for_training

    z = zoo.load("tiny-llama")
    lab = Workbench(z.model, build_tokenizer(), name="tiny-llama", fingerprint=z.fingerprint)
    ex = [Example("what is one plus two ?", "three", ("three", "four")),
          Example("what is two plus two ?", "four", ("three", "four")),
          Example("what is one plus three ?", "four", ("three", "four"))]
    task = Task("sums", "toy sums", "accuracy", ex, ex[:1], max_length=40)
    lab.new_adapter("a", r=2, seed=0, init="random")
    lab.new_adapter("b", r=3, seed=1, init="random")
    stats = merge_statistics(lab, ["a", "b"], task, examples=8)
    assert stats.examples == {"a": 3, "b": 3}
    gram, fisher = _independent(lab, "a", encode_for_training(lab.tokenizer, task, ex))
    assert rel(stats.grams["a"][PATH], gram) < 1e-5 and rel(stats.fishers["a"][PATH], fisher) < 1e-4
    merged = lab.merge(["a", "b"], "regmean", statistics=stats)
    assert merged.lineage["merge"]["method"] == "regmean"


def test_regmean_alpha_shrinks_only_the_off_diagonal_grams():
    """RegMean's α (Jin et al. §3.3): G̃ = α·G + (1 − α)·diag(G), then ΔW' = (Σ wᵢΔWᵢG̃ᵢ)(ΣG̃ᵢ)⁻¹. With
    α = 0.5 the off-diagonal entries are halved by hand here (G̃ written entry by entry)."""
    adapters = sources((3, 5), seed=44)
    stats = planted_statistics(adapters)
    weights = [1.0, -0.7]
    out = merge(adapters, "regmean", weights, statistics=stats, alpha=0.5).adapter
    for path in adapters[0].modules:
        shrunk = []
        for a in adapters:
            G = stats.grams[a.name][path]
            off = torch.ones_like(G) - torch.eye(G.shape[0], dtype=G.dtype)
            shrunk.append(G * (0.5 * off + torch.eye(G.shape[0], dtype=G.dtype)))  # off-diagonal halved
        num = sum(w * delta(a, path) @ S for w, a, S in zip(weights, adapters, shrunk, strict=True))
        assert rel(out.delta(path), num @ torch.linalg.inv(sum(shrunk))) < 1e-5
        exact = merge(adapters, "regmean", weights, statistics=stats, alpha=1.0).adapter
        assert rel(exact.delta(path), out.delta(path)) > 1e-3  # α matters


def test_fisher_entries_no_source_is_sensitive_to_are_zero_without_min_fisher():
    """With ε = 0 an entry where every Fisher is 0 has no weighted mean: it is 0 (not 0/0), the others
    the Fisher-weighted mean; with ε > 0 the same entry is the plain mean."""
    adapters = sources((3, 4), seed=45)
    stats = planted_statistics(adapters)
    for a in adapters:
        stats.fishers[a.name][PATH][2, :] = 0.0  # output row 2: no source is sensitive to it
    weights = [1.0, 0.5]
    out = merge(adapters, "fisher", weights, statistics=stats, rank=64, min_fisher=0.0).adapter.delta(PATH)
    F = [stats.fishers[a.name][PATH] for a in adapters]
    expected = sum(f * w * delta(a, PATH) for f, w, a in zip(F, weights, adapters, strict=True))
    expected[3:] /= sum(F)[3:]
    expected[:2] /= sum(F)[:2]
    assert torch.isfinite(out).all() and out[2].abs().max() < 1e-6
    assert rel(out, expected) < 1e-5
    eps = merge(adapters, "fisher", weights, statistics=stats, rank=64, min_fisher=1e-3).adapter.delta(PATH)
    plain = (delta(adapters[0], PATH)[2:3] + 0.5 * delta(adapters[1], PATH)[2:3]) / 2
    assert rel(eps[2:3], plain) < 1e-5
