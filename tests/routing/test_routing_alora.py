"""ALoRA (reconstructed): causal multi-head attention over the LoRA representation z = A x."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import output_of, tiny_inputs, tiny_lab
from workbench.errors import WorkbenchError
from workbench.routing import ROUTERS, routing_context


def make(**kw):
    return ROUTERS.get("alora")(16, 12, generator=torch.Generator().manual_seed(0), init="random", **kw)


def test_causal_later_tokens_do_not_change_earlier_outputs():
    router = make(r=8, heads=2)
    x = torch.randn(2, 6, 16)
    changed = x.clone()
    changed[:, 4:] = torch.randn(2, 2, 16)
    one, two = router(x, None), router(changed, None)
    torch.testing.assert_close(one[:, :4], two[:, :4], rtol=0, atol=0)
    assert not torch.allclose(one[:, 4:], two[:, 4:])
    early = x.clone()
    early[:, 1] = 0.0
    assert not torch.allclose(router(early, None)[:, 3], one[:, 3])  # it does read earlier tokens


def test_padding_keys_are_masked():
    router = make(r=8, heads=4)
    x = torch.randn(2, 5, 16)
    real = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])  # left-padded first row
    noisy = x.clone()
    noisy[0, :2] = torch.randn(2, 16)
    with routing_context(attention_mask=real):
        one, two = router(x, None), router(noisy, None)
    torch.testing.assert_close(one[0, 2:], two[0, 2:], rtol=0, atol=0)
    assert torch.isfinite(one).all()
    with pytest.raises(WorkbenchError, match="use_cache=False"):
        with routing_context(attention_mask=torch.ones(2, 6)):
            router(x[:, :1], None)  # a cached generation step
    with pytest.raises(WorkbenchError, match=r"\(2, 4\).*\(2, 5\)"):
        with routing_context(attention_mask=torch.ones(2, 4)):
            router(x, None)


def test_heads_must_divide_r():
    with pytest.raises(WorkbenchError, match="heads dividing r"):
        make(r=8, heads=3)


def test_records_attention_over_source_tokens():
    router = make(r=8, heads=2)
    seen = {}
    router.hook_route.register_forward_hook(lambda m, i, o: seen.setdefault("rec", o))
    router.hook_attn.register_forward_hook(lambda m, i, o: seen.setdefault("attn", o))
    router(torch.randn(2, 4, 16), None)
    rec, attn = seen["rec"], seen["attn"]
    assert rec.shape == (2, 4, 4) and attn.shape == (2, 2, 4, 4)
    torch.testing.assert_close(rec.weights.sum(-1), torch.ones(2, 4))
    assert (rec.weights.triu(1) == 0).all()  # nothing from the future


def test_zero_output_projection_is_the_plain_lora():
    lab = tiny_lab()
    x = tiny_inputs(lab.model)
    lab.add_router("al", "alora", targets="attention", r=4, alpha=8.0, heads=2, init="random")
    lab.new_adapter("plain", r=4, alpha=8.0, targets="attention")
    for path, router in lab.routers["al"].modules.items():
        router.W_o.data.zero_()
        lab.layers[path].lora_A["plain"].data.copy_(router.A)
        lab.layers[path].lora_B["plain"].data.copy_(router.B)
    with lab.using("plain"):
        plain = output_of(lab.model(**x))
    with lab.using("al"):
        torch.testing.assert_close(output_of(lab.model(**x)), plain, rtol=0, atol=0)


def test_zero_B_is_the_base_and_gradients_reach_every_part():
    from workbench.training import fit

    lab = tiny_lab()
    x = tiny_inputs(lab.model)
    base = output_of(lab.model(**x))
    routed = lab.add_router("al", "alora", targets="attention")  # init="lora": B = 0
    with lab.using("al"):
        out, cache = lab.run(x, record="*.hook_route")
    torch.testing.assert_close(output_of(out), base, rtol=0, atol=0)
    assert len(cache) == 8 and all(rec.shape == (3, 7, 7) for rec in cache.values())
    before = {k: v.clone() for k, v in routed.state_dict().items()}
    feats = [{"input_ids": [1, 2, 3, 4, 5], "labels": [-100, 2, 3, 4, 5], "task": 0}] * 4
    fit(lab, routed.trainable(), feats, use="al", label="al", steps=3, lr=1e-2, batch_size=2, seed=0,
        progress=False)
    after = routed.state_dict()
    for part in ("A", "B", "W_q", "W_k", "W_v", "W_o"):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.endswith(f".{part}")), part


def test_update_is_s_times_B_of_z_plus_causal_attention_over_z_by_hand():
    import math

    router = ROUTERS.get("alora")(3, 2, generator=torch.Generator().manual_seed(1), init="random", r=4,
                                  heads=2, alpha=6.0)
    x = torch.randn(1, 3, 3, generator=torch.Generator().manual_seed(2))
    real = torch.tensor([[1, 1, 0]])  # the last token is padding
    with torch.no_grad(), routing_context(attention_mask=real):
        out = router(x, None)
        A, B = router.A, router.B
        z = x[0] @ A.T  # (T, r)
        q, k, v = (z @ W.T for W in (router.W_q, router.W_k, router.W_v))
        mixed = torch.zeros(3, 4)
        for t in range(3):
            for h in range(2):
                cols = slice(2 * h, 2 * h + 2)  # head h: its r/h = 2 columns
                keys = [u for u in range(t + 1) if real[0, u]] or [t]  # earlier real tokens (itself if none)
                if t not in keys and not real[0, t]:
                    keys = keys + [t]  # a padded query still sees itself (no empty row)
                logits = torch.stack([q[t, cols] @ k[u, cols] / math.sqrt(2) for u in keys])
                mixed[t, cols] = (logits.softmax(0)[:, None] * v[keys, cols]).sum(0)
        mixed = mixed @ router.W_o.T * real[0, :, None]  # padded queries: no attention output
        expected = (6.0 / 4) * (z + mixed) @ B.T  # s = α/r on the residual z + MHA(z)
    torch.testing.assert_close(out[0], expected)


def test_record_is_the_head_average_of_the_attention():
    router = make(r=8, heads=2)  # batch 2 and 2 heads: an average over the batch would have the same shape
    seen = {}
    router.hook_route.register_forward_hook(lambda m, i, o: seen.setdefault("rec", o))
    router.hook_attn.register_forward_hook(lambda m, i, o: seen.setdefault("attn", o))
    router(torch.randn(2, 2, 16, generator=torch.Generator().manual_seed(5)), None)
    attn = seen["attn"]  # (B, h, T, T)
    torch.testing.assert_close(seen["rec"].weights, (attn[:, 0] + attn[:, 1]) / 2)


def test_dropout_hits_the_lora_input_in_training_only():
    router, plain = make(r=8, heads=2, dropout=0.5), make(r=8, heads=2)
    x = torch.randn(2, 4, 16, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(router.eval()(x, None), plain(x, None))
    torch.manual_seed(0)
    assert not torch.allclose(router.train()(x, None), plain(x, None))
