"""hooks(model, {pattern: fn}): forward hooks by module-path pattern, removed whatever happens."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import output_of, tiny_inputs, tiny_lab
from workbench.errors import WorkbenchError
from workbench.hooks import hooks, match_modules, module_paths


def _hook_counts(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_glob_pattern_sees_every_matching_module_with_its_path():
    lab = tiny_lab()
    seen: dict[str, tuple] = {}

    def take(path, _module, _args, out):  # returns None: the output passes unchanged
        seen[path] = out.shape

    with hooks(lab.model, {"*.self_attn.q_proj": take}) as paths:
        lab.model(**tiny_inputs(lab.model))
    expected = [n for n, _ in lab.model.named_modules() if n.endswith(".self_attn.q_proj")]
    assert paths == expected and list(seen) == expected
    assert all(shape[:2] == (3, 7) for shape in seen.values())  # (B, T, out)


def test_pre_hooks_see_the_input_and_an_exact_path_matches_only_itself():
    lab = tiny_lab()
    path = next(n for n, _ in lab.model.named_modules() if n.endswith(".mlp.down_proj"))
    got = []
    with hooks(lab.model, {path: lambda p, m, args: got.append((p, args[0].shape[-1], m.in_features))},
               pre=True):
        lab.model(**tiny_inputs(lab.model))
    assert got == [(path, got[0][2], got[0][2])]  # the input has the module's in_features


def test_a_returned_value_replaces_the_output_as_in_torch():
    lab = tiny_lab()
    x = tiny_inputs(lab.model)
    with torch.no_grad():
        plain = output_of(lab.model(**x))
        with hooks(lab.model, {"*.mlp.down_proj": lambda _p, _m, _a, out: torch.zeros_like(out)}):
            zeroed = output_of(lab.model(**x))
        again = output_of(lab.model(**x))
    assert not torch.equal(plain, zeroed)
    assert torch.equal(plain, again)


def test_hooks_are_removed_after_an_error_and_bad_patterns_register_nothing():
    lab = tiny_lab()
    before = _hook_counts(lab.model)

    def boom(_p, _m, _a, _out):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"), hooks(lab.model, {"*.mlp.*": boom}):
        lab.model(**tiny_inputs(lab.model))
    assert _hook_counts(lab.model) == before
    with pytest.raises(WorkbenchError, match="matches no module"):
        with hooks(lab.model, {"*.mlp.*": boom, "no.such.*": boom}):
            pass
    assert _hook_counts(lab.model) == before


def test_match_modules_accepts_a_regex():
    lab = tiny_lab()
    found = match_modules(lab.model, r".*\.layers\.0\.self_attn\.[qk]_proj")
    assert [p.rsplit(".", 1)[1] for p in found] == ["q_proj", "k_proj"]


def test_module_paths_names_held_modules_and_refuses_strangers():
    lab = tiny_lab()
    mlp = lab.model.get_submodule("model.layers.1.mlp")
    paths = module_paths(lab.model, [mlp, mlp.down_proj])
    assert paths == ["model.layers.1.mlp", "model.layers.1.mlp.down_proj"]
    with pytest.raises(WorkbenchError, match="not a submodule"):
        module_paths(lab.model, [torch.nn.Linear(2, 2)])
