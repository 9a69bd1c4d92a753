"""Bad input to merge: a clear WorkbenchError naming the problem and the fix, before any work."""

from __future__ import annotations

import pytest

from tests.merging.helpers import shapes, sources
from workbench import WorkbenchError
from workbench.adapters import new_adapter
from workbench.merging import MERGES, merge, method_params


def test_unknown_method_lists_the_registered_ones():
    a, b = sources((4, 4))
    with pytest.raises(WorkbenchError, match="unknown merge method 'tie'.*task_arithmetic") as e:
        merge([a, b], "tie")
    assert all(n in str(e.value) for n in MERGES.names())
    with pytest.raises(WorkbenchError, match="unknown merge method"):
        method_params("nope")


@pytest.mark.parametrize("weights", [[1.0], [1.0, 1.0, 1.0], 1.0])
def test_weights_of_the_wrong_length(weights):
    a, b = sources((4, 4))
    with pytest.raises(WorkbenchError, match="one weight per adapter"):
        merge([a, b], "ties", weights)


def test_non_finite_weights():
    a, b = sources((4, 4))
    with pytest.raises(WorkbenchError, match="non-finite"):
        merge([a, b], "svd", [1.0, float("nan")])


@pytest.mark.parametrize("method", [m for m in MERGES.names() if "density" in MERGES.get(m).params])
@pytest.mark.parametrize("density", [0.0, -0.1, 1.5, "0.5"])
def test_density_outside_zero_one(method, density):
    a, b = sources((4, 4))
    with pytest.raises(WorkbenchError, match=r"outside \(0, 1\]"):
        merge([a, b], method, density=density)


def test_unknown_parameter_names_the_methods_parameters():
    a, b = sources((4, 4))
    with pytest.raises(WorkbenchError, match="no parameter 'densty'.*density=0.2"):
        merge([a, b], "ties", densty=0.3)
    with pytest.raises(WorkbenchError, match="no parameter 'rank'"):
        merge([a, b], "cat", rank=4)


@pytest.mark.parametrize("rank", [0, -2, 2.5, True])
def test_bad_rank(rank):
    a, b = sources((4, 4))
    with pytest.raises(WorkbenchError, match="positive int"):
        merge([a, b], "svd", rank=rank)


def test_bad_choice():
    a, b = sources((4, 4))
    with pytest.raises(WorkbenchError, match="majority_sign_method.*total"):
        merge([a, b], "ties", majority_sign_method="mean")


@pytest.mark.parametrize("method", ["task_arithmetic", "ties", "dare_linear", "dare_ties", "magnitude_prune"])
def test_peft_compat_needs_equal_ranks(method):
    a, b = sources((4, 6))
    with pytest.raises(WorkbenchError, match="equal ranks.*ranks \\[4, 6\\].*peft_compat=False"):
        merge([a, b], method, peft_compat=True)
    merge([a, b], method)  # ΔW space takes any ranks


def test_different_base_models():
    a, b = sources((4, 4))
    b.base_fingerprint = "sha256:0000000000000000"
    with pytest.raises(WorkbenchError, match="different base models.*one base"):
        merge([a, b], "svd")


def test_mismatched_shapes_name_the_module_and_both_shapes():
    a, b = sources((4, 4))
    path = next(iter(b.modules))
    odd = new_adapter("b", {path: (32, 64)}, r=4, init="random")
    with pytest.raises(WorkbenchError, match=rf"{path}.*\(64, 64\).*\(32, 64\)"):
        merge([a, odd], "cat", targets="union")


def test_mismatched_targets_say_union_or_intersection():
    (a,) = sources((4,))
    mlp = new_adapter("m", shapes("mlp"), r=4, init="random", base_fingerprint=a.base_fingerprint)
    with pytest.raises(WorkbenchError, match="share no module.*targets='union'"):
        merge([a, mlp], "svd")
    partial = new_adapter("p", dict(list(shapes("attention").items())[:3]), r=4, init="random")
    with pytest.raises(WorkbenchError, match=r"target different modules.*missing from \['p'\].*intersection"):
        merge([a, partial], "ties")
    assert len(merge([a, partial], "ties", targets="intersection").adapter.modules) == 3
    assert len(merge([a, mlp], "cat", targets="union").adapter.modules) == len(a.modules) + len(mlp.modules)
    with pytest.raises(WorkbenchError, match="targets='every'.*union"):
        merge([a, partial], "ties", targets="every")


def test_duplicate_source_names_and_non_adapters():
    a, b = sources((4, 4))
    with pytest.raises(WorkbenchError, match="two sources are named 'a'"):
        merge([a, a], "svd")
    with pytest.raises(WorkbenchError, match="lab.merge"):
        merge(["a", "b"], "svd")
    with pytest.raises(WorkbenchError, match="at least one"):
        merge([], "svd")


def test_method_specific_parameter_checks():
    a, b = sources((4, 4))
    with pytest.raises(WorkbenchError, match="epsilon"):
        merge([a, b], "della", density=0.1, epsilon=0.2)
    with pytest.raises(WorkbenchError, match="gamma"):
        merge([a, b], "breadcrumbs", gamma=1.5)
    with pytest.raises(WorkbenchError, match="drop rank"):
        merge([a, b], "ties", peft_compat=True, rank=3)


def test_cat_learned_says_what_it_needs():
    from tests.merging.soup_data import soup_inputs

    a, b = sources((4, 4))
    with pytest.raises(WorkbenchError, match="needs lab=.*tasks"):
        merge([a, b], "cat_learned")
    lab = soup_inputs()["lab"]
    with pytest.raises(WorkbenchError, match="pass tasks=.*features="):
        merge([a, b], "cat_learned", lab=lab)
    with pytest.raises(WorkbenchError, match="not a Workbench"):
        merge([a, b], "cat_learned", lab="lab", features=[{}])
    other = [x.copy() for x in (a, b)]
    for x in other:
        x.base_fingerprint = "sha256:1111111111111111"
    with pytest.raises(WorkbenchError, match="another base"):
        merge(other, "cat_learned", lab=lab, features=soup_inputs()["features"], progress=False)
