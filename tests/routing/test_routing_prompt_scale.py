"""Prompt-conditioned scale (WavLLM): σ from the prompt alone replaces α/r per output channel."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import output_of, tiny_inputs, tiny_lab
from workbench.errors import WorkbenchError
from workbench.routing import ROUTERS, routing_context
from workbench.routing.mechanisms.prompt_scale import constant_scale
from workbench.routing.prompt_scaler import PromptScaler, prompt_batch


def scaled_lab(**params):
    lab = tiny_lab()
    lab.add_router("wav", "prompt-scale", init="random", dropout=0.0, **params)
    return lab


def test_constant_sigma_is_the_plain_lora():
    lab = scaled_lab()  # r=8, α=32: σ ≡ 4
    x = tiny_inputs(lab.model)
    lab.new_adapter("plain", r=8, alpha=32.0, targets="attention")
    for path, router in lab.routers["wav"].modules.items():
        lab.layers[path].lora_A["plain"].data.copy_(router.A)
        lab.layers[path].lora_B["plain"].data.copy_(router.B)
    with lab.using("plain"):
        plain = output_of(lab.model(**x))
    lab.use("wav")
    ctx = constant_scale(lab.routers["wav"])
    assert set(ctx["prompt_scale"]) == {64, 32}  # GQA: q/o 64 wide, k/v 32
    with routing_context(**ctx):
        torch.testing.assert_close(output_of(lab.model(**x)), plain, rtol=0, atol=0)
    with routing_context(prompt_scale={w: s.expand(3, -1) for w, s in ctx["prompt_scale"].items()}):
        torch.testing.assert_close(output_of(lab.model(**x)), plain, rtol=0, atol=0)  # (B, out) too


def test_scale_lookup_by_path_width_or_tensor_and_its_errors():
    lab = scaled_lab(targets="q_proj")
    lab.use("wav")
    x = tiny_inputs(lab.model)
    path = next(iter(lab.routers["wav"].modules))
    with routing_context(prompt_scale={path: torch.zeros(3, 64), 64: torch.full((3, 64), 5.0)}):
        by_path = output_of(lab.model(**x))  # the path wins: layer 0 is off, layer 1 on
    with routing_context(prompt_scale=torch.full((3, 64), 5.0)):
        assert not torch.allclose(output_of(lab.model(**x)), by_path)
    with pytest.raises(WorkbenchError, match=r"\(3, 32\).*\(3, 64\)"):
        with routing_context(prompt_scale=torch.ones(3, 32)):
            lab.model(**x)
    with pytest.raises(WorkbenchError, match="width 64"):
        with routing_context(prompt_scale={32: torch.ones(3, 32)}):
            lab.model(**x)
    with pytest.raises(WorkbenchError, match="prompt_scale"):
        lab.model(**x)  # no context at all


def test_zero_B_is_the_base_and_the_record_shows_sigma():
    lab = tiny_lab()
    x = tiny_inputs(lab.model)
    base = output_of(lab.model(**x))
    lab.add_router("wav", "prompt-scale")  # init="lora": B = 0
    lab.use("wav")
    with routing_context(prompt_scale={64: torch.full((3, 64), 2.0), 32: torch.full((3, 32), 1.0)}):
        out, cache = lab.run(x, record="*.hook_route")
    torch.testing.assert_close(output_of(out), base, rtol=0, atol=0)
    shapes = sorted({tuple(rec.shape) for rec in cache.values()})
    assert shapes == [(3, 7, 32), (3, 7, 64)] and len(cache) == 8


def test_sigma_comes_from_the_prompt_alone_with_adapters_off():
    lab = scaled_lab()
    lab.new_adapter("other", r=4, init="random", targets="all-linear")
    scaler = PromptScaler.for_routed(lab, "wav", inner=16)
    assert scaler.widths == [32, 64]
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, 256, (2, 5), generator=g)
    answer = torch.randint(0, 256, (2, 4), generator=g)
    alone = scaler.context(lab, prompt)["prompt_scale"]
    with lab.using(["other", "wav"]):  # whatever the lab uses, σ reads the base
        full = scaler.context(lab, torch.cat([prompt, answer], 1), prompt_lengths=[5, 5])["prompt_scale"]
    assert lab.active.names == set()  # restored
    for w in (32, 64):
        assert alone[w].shape == (2, w)
        torch.testing.assert_close(full[w], alone[w], rtol=0, atol=0)
        assert (alone[w] >= 0).all() and (alone[w] <= 3).all()
    other = scaler.context(lab, torch.randint(0, 256, (2, 5), generator=g))["prompt_scale"]
    assert not torch.allclose(other[64], alone[64])


def test_sigma_is_clamped_to_three():
    scaler = PromptScaler(8, [4], inner=8)
    with torch.no_grad():
        scaler.W2["4"].bias.fill_(100.0)
    sigma = scaler(torch.randn(2, 3, 8))[4]
    assert torch.equal(sigma, torch.full((2, 4), 3.0))


def test_padding_does_not_change_sigma():
    scaler = PromptScaler(8, [4, 6], inner=8)
    H = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    garbage = H.clone()
    garbage[0, 3:] = 1e3  # whatever sits at padded positions
    sigma, pooling = scaler(H, mask, with_pooling=True)
    torch.testing.assert_close(scaler(garbage, mask)[4], sigma[4], rtol=0, atol=0)
    torch.testing.assert_close(scaler(H[:1, :3])[6][0], sigma[6][0])
    assert (pooling[4][0, 3:] == 0).all()
    torch.testing.assert_close(pooling[4].sum(-1), torch.ones(2))

    lab = scaled_lab()  # through the lab: a right-padded batch gives each prompt its own σ
    scaler = PromptScaler.for_routed(lab, "wav", inner=16)
    ids = torch.randint(0, 256, (2, 6), generator=torch.Generator().manual_seed(1))
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    batched = scaler.context(lab, ids, mask)["prompt_scale"][64]
    single = scaler.context(lab, ids[:1, :4])["prompt_scale"][64]
    torch.testing.assert_close(batched[:1], single, atol=1e-5, rtol=1e-5)


def test_prompt_batch_takes_the_first_real_tokens():
    ids = torch.tensor([[0, 0, 5, 6, 7], [1, 2, 3, 4, 9]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])  # left-padded first row
    out, m = prompt_batch(ids, mask, prompt_lengths=[2, 3])
    assert out.tolist() == [[5, 6, 0], [1, 2, 3]] and m.tolist() == [[1, 1, 0], [1, 1, 1]]
    with pytest.raises(WorkbenchError, match="prompt_lengths"):
        prompt_batch(ids, mask, prompt_lengths=[4, 3])


def test_gradients_reach_the_scaler_and_the_lora():
    lab = scaled_lab(targets="attention")
    lab.use("wav")
    scaler = PromptScaler.for_routed(lab, "wav", inner=16)
    routed = lab.routers["wav"]
    for p in routed.trainable():
        p.requires_grad_(True)
    ids = torch.randint(0, 256, (2, 8), generator=torch.Generator().manual_seed(2))
    ctx = scaler.context(lab, ids, prompt_lengths=[4, 5])
    with routing_context(**ctx):
        output_of(lab.model(input_ids=ids)).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in scaler.parameters() if p.dim() == 2)
    assert all(p.grad is not None for p in routed.trainable())
    frozen = ROUTERS.get("prompt-scale")(8, 8, generator=torch.Generator(), freeze_lora=True)
    assert frozen.trainable() == []  # WavLLM's second_stage_fix_lora


# -- the defining details, against hand computations ------------------------------------------------
def test_prompt_states_are_the_last_layer_before_the_final_norm_with_adapters_off():
    from workbench.routing.prompt_scaler import prompt_states

    lab = scaled_lab()
    lab.new_adapter("other", r=4, init="random", targets="all-linear")
    ids = torch.randint(0, 256, (2, 5), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    seen = []
    handle = lab.model.model.norm.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with lab.using(None), torch.no_grad():
        out = lab.model.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    after = out.hidden_states[-1]
    handle.remove()
    before = seen[-1]  # the final RMSNorm's input
    with lab.using(["other", "wav"]):
        H = prompt_states(lab, ids, mask)
    torch.testing.assert_close(H, before, rtol=0, atol=0)
    assert not torch.allclose(H, after)  # transformers' hidden_states[-1] is after the norm
    torch.testing.assert_close(lab.model.model.norm(H), after)


def test_sigma_is_clamped_relu_of_the_softmax_pooled_gelu_mlp():
    scaler = PromptScaler(3, [2], inner=4, seed=1)
    H = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(0)) * 3
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    W1, W2, wa = scaler.W1, scaler.W2["2"], scaler.w_a["2"]
    with torch.no_grad():
        for b in range(2):
            n = int(mask[b].sum())
            U = W2(torch.nn.functional.gelu(W1(H[b, :n])))  # (n, 2)
            a = torch.softmax(wa(U).squeeze(-1), 0)  # over the real prompt tokens
            expected = torch.clamp(torch.relu((a[:, None] * U).sum(0)), max=3.0)
            torch.testing.assert_close(scaler(H, mask)[2][b], expected)
        W2.bias.copy_(torch.tensor([-50.0, 50.0]))  # one channel below 0, one above 3
        torch.testing.assert_close(scaler(H, mask)[2], torch.tensor([[0.0, 3.0], [0.0, 3.0]]))


def test_sigma_scales_each_output_channel_of_each_sample_replacing_alpha_over_r():
    router = ROUTERS.get("prompt-scale")(3, 2, generator=torch.Generator().manual_seed(0), r=2, alpha=8.0,
                                         dropout=0.0, init="random")
    x = torch.randn(2, 3, 3, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([[1.0, 0.0], [0.5, 2.0]])  # per sample, per output channel
    with routing_context(prompt_scale=sigma):
        delta = router(x, None)
    plain = x @ router.A.detach().T @ router.B.detach().T  # B A x, no α/r
    torch.testing.assert_close(delta, plain * sigma[:, None, :])
