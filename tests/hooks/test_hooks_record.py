"""record(model, patterns): the cache fills as each hook fires, so it holds values during a run and
keeps what was recorded before a forward raised."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_inputs, tiny_lab
from workbench.hooks import hooks, record

Q = "model.layers.{}.self_attn.q_proj"


def _hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _lab_with_adapter():
    lab = tiny_lab()  # two decoder layers
    lab.new_adapter("a", r=3, init="random", seed=0)
    lab.use("a")
    return lab


def test_a_forward_that_raises_midway_leaves_what_was_recorded_so_far():
    lab = _lab_with_adapter()
    pattern = "*.self_attn.q_proj.hook_rank.a"
    n_hooks = _hook_count(lab.model)

    def stop(_path, _module, _args):
        raise RuntimeError("stopped in layer 1")

    with pytest.raises(RuntimeError, match="stopped in layer 1"), \
            hooks(lab.model, {"model.layers.1": stop}, pre=True), \
            record(lab.model, pattern) as cache:
        lab.model(**tiny_inputs(lab.model))
    assert list(cache) == [f"{Q.format(0)}.hook_rank.a"]  # layer 0 ran, layer 1 never did
    assert cache[f"{Q.format(0)}.hook_rank.a"].shape == (3, 7, 3)  # (B, T, r)
    _, full = lab.run(tiny_inputs(lab.model), record=pattern)
    assert list(full) == [f"{Q.format(i)}.hook_rank.a" for i in (0, 1)]
    torch.testing.assert_close(cache[f"{Q.format(0)}.hook_rank.a"], full[f"{Q.format(0)}.hook_rank.a"])
    assert _hook_count(lab.model) == n_hooks  # both hook sets removed


def test_the_cache_holds_each_value_as_soon_as_it_is_produced():
    lab = _lab_with_adapter()
    seen_in_layer_1: list[list[str]] = []
    with record(lab.model, "*.self_attn.q_proj.hook_in") as cache:
        take = lambda _p, _m, _args: seen_in_layer_1.append(list(cache))  # noqa: E731
        with hooks(lab.model, {"model.layers.1": take}, pre=True):
            lab.model(**tiny_inputs(lab.model))
        assert len(cache) == 2  # readable inside the block
    assert seen_in_layer_1 == [[f"{Q.format(0)}.hook_in"]]


def test_a_point_that_fires_again_after_a_read_keeps_joining_along_tokens():
    lab = _lab_with_adapter()
    key = f"{Q.format(0)}.hook_rank.a"
    x1, x2 = tiny_inputs(lab.model, seed=1), tiny_inputs(lab.model, seed=2)
    with record(lab.model, key) as cache:
        lab.model(**x1)
        first = cache[key].clone()  # (3, 7, 3), read between forwards
        lab.model(**x2)
        lab.model(**x1)
    assert cache[key].shape == (3, 21, 3)
    _, only2 = lab.run(x2, record=key)
    torch.testing.assert_close(cache[key], torch.cat([first, only2[key], first], dim=1))
