"""The composition lab's methods on the tiny SceneUNet (no trained weights): determinism, Composer's
reduction to plain LoRA sampling, region-restricted cross-attention by hand, TARA's token masks."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers.models.attention_processor import Attention

from workbench import Workbench
from workbench.composition import COMPOSERS, CompositionRequest, Concept, compose
from workbench.composition.attention import AttentionPlan, Term, planned
from workbench.composition.regions import box_masks, cell_masks, isolation_bias, region_bias
from workbench.errors import WorkbenchError
from workbench.zoo import diffusion as D

TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
T = 6
LEFT, RIGHT, FULL = (0, 0, 28, 28), (28, 0, 56, 28), (0, 0, 56, 28)


def _lab(seed: int = 0):
    torch.manual_seed(seed)
    model = D.SceneUNet(D.SceneUNet.CONFIGS["tiny"], text_dim=16).eval().requires_grad_(False)
    lab = Workbench(model, None, name="scene-unet-tiny")
    for k, name in enumerate(["cat", "dog"]):
        adapter = lab.new_adapter(name, r=2, targets=TARGETS, seed=k)
        g = torch.Generator().manual_seed(10 + k)
        for f in adapter.modules.values():  # a fresh LoRA has B = 0: give it an effect
            f.B.data.copy_(torch.randn(f.B.shape, generator=g) * 0.5)
    return lab


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def lab():
    return _lab()


def _text(B: int = 1):
    g = torch.Generator().manual_seed(1)
    states = torch.randn(B, T, 16, generator=g)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[:, -1] = False
    return states, mask


def _two(B: int = 1) -> CompositionRequest:
    states, mask = _text(B)
    return CompositionRequest(states, mask, [Concept("cat", [1], LEFT), Concept("dog", [3], RIGHT)])


QUICK = {"composer": {"reinit_steps": 1, "guidance_until": 1.0}, "clora": {"update_until": 1.0}}


@pytest.mark.parametrize("method", COMPOSERS.names())
def test_every_method_is_deterministic_for_a_seed(lab, method):
    request = _two()
    a = compose(lab, method, request, steps=2, seed=3, **QUICK.get(method, {}))
    b = compose(lab, method, request, steps=2, seed=3, **QUICK.get(method, {}))
    c = compose(lab, method, request, steps=2, seed=4, **QUICK.get(method, {}))
    assert a.images.shape == (1, 1, 28, 56)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert not lab.active and all(not layer.composition for layer in lab.layers.values())  # left as found
    assert all(type(m.processor).__name__ == "AttnProcessor2_0"
               for n, m in lab.model.named_modules() if n.endswith(("attn1", "attn2")))


def test_base_sampler_is_deterministic_for_a_seed(lab):
    states, mask = _text(2)
    a = D.ddim_sample(lab.model, states, mask, steps=3, seed=7)
    assert torch.equal(a, D.ddim_sample(lab.model, states, mask, steps=3, seed=7))
    assert not torch.equal(a, D.ddim_sample(lab.model, states, mask, steps=3, seed=8))


@pytest.mark.parametrize("parts", [
    {}, {"injection": False}, {"isolation": False}, {"reinit": False},
    {"reinit_steps": 3, "guidance_steps": 2}])
def test_composer_with_one_full_box_is_plain_lora_sampling(lab, parts):
    states, mask = _text(2)
    with lab.using("cat"):
        plain = D.ddim_sample(lab.model, states, mask, steps=4, seed=0)
    base = D.ddim_sample(lab.model, states, mask, steps=4, seed=0)
    assert not torch.allclose(plain, base, atol=1e-3)  # the LoRA matters, so equality below means something
    one = CompositionRequest(states, mask, [Concept("cat", [1, 2], FULL)])
    out = compose(lab, "composer", one, steps=4, seed=0, guidance_until=1.0, **parts).images
    assert torch.allclose(out, plain, atol=1e-6, rtol=0), (out - plain).abs().max()
    half = CompositionRequest(states, mask, [Concept("cat", [1, 2], LEFT)])
    restricted = compose(lab, "composer", half, steps=4, seed=0, **parts).images
    assert not torch.allclose(restricted, plain, atol=1e-4)


def _hand_attention():
    """One-head attention with identity projections on a 1×2 grid (a left and a right query)."""
    attn = Attention(query_dim=2, cross_attention_dim=2, heads=1, dim_head=2, bias=False, out_bias=False)
    for lin in (attn.to_q, attn.to_k, attn.to_v, attn.to_out[0]):
        lin.weight.data.copy_(torch.eye(2))
    return attn.eval()


def test_region_restricted_cross_attention_by_hand():
    """Tokens e0 (concept 0, left box), e1 (concept 1, right box), e2 (shared). The left query [1, 0] has
    logits [s, 0, 0] with s = 1/√2; e1 is masked before the softmax: p = [e^s, 0, 1] / (e^s + 1)."""
    attn = _hand_attention()
    hidden = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # (1, Q=2, 2): left, right query
    tokens = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]])  # (1, T=3, 2)
    boxes = box_masks([(0, 0, 1, 1), (1, 0, 2, 1)], canvas=(1, 2))
    calls: list = []
    plan = AttentionPlan((1, 2), region=(boxes, [[0], [1]]), record=calls)
    with torch.no_grad():
        recorded = planned_call(attn, plan, hidden, tokens)
        fast = planned_call(attn, AttentionPlan((1, 2), region=(boxes, [[0], [1]])), hidden, tokens)
    e = math.exp(1 / math.sqrt(2))
    left = torch.tensor([e, 0.0, 1.0]) / (e + 1)
    right = torch.tensor([0.0, e, 1.0]) / (e + 1)
    probs = calls[0][0]  # (Q, T)
    assert torch.allclose(probs, torch.stack([left, right]), atol=1e-6)
    assert probs[0, 1] == 0 and probs[1, 0] == 0  # exactly zero outside the token's box
    # the output is p @ V with identity projections, on both the recorded and the fused (SDPA) path
    want = torch.stack([left, right]) @ tokens[0]
    assert torch.allclose(recorded[0], want, atol=1e-6) and torch.allclose(fast[0], want, atol=1e-6)


def planned_call(attn, plan, hidden, tokens):
    attn.set_processor(_proc(plan))
    return attn(hidden, encoder_hidden_states=tokens)


def _proc(plan):
    from workbench.composition.attention import ConceptAttention

    return ConceptAttention(plan)


def test_region_and_isolation_biases():
    cells = cell_masks(box_masks([(0, 0, 2, 1), (2, 0, 4, 1)], (1, 4)), (1, 4))  # (2, 4): cells 0-1, 2-3
    bias = region_bias(cells, [[0], [2, 3]], tokens=5)
    inf = float("-inf")
    assert bias[:, 0].tolist() == [0, 0, inf, inf] and bias[:, 2].tolist() == [inf, inf, 0, 0]
    assert (bias[:, [1, 4]] == 0).all()
    iso = isolation_bias(cell_masks(box_masks([(0, 0, 2, 1)], (1, 4)), (1, 4)))  # one box over cells 0-1
    assert iso[0].tolist() == [0, 0, inf, inf] and (iso[2:] == 0).all()  # background queries unrestricted
    with pytest.raises(WorkbenchError, match="outside the caption"):
        region_bias(cells, [[0], [9]], tokens=5)
    with pytest.raises(WorkbenchError, match="outside"):
        box_masks([(0, 0, 60, 28)], (28, 56))


def test_tara_masks_only_cross_attention_keys_and_values():
    lab = _lab(1)
    nokv = lab.new_adapter("cat_nokv", r=2, targets=TARGETS, seed=5)
    for path, f in lab.adapters["cat"].modules.items():
        g = nokv.modules[path]
        g.A.data.copy_(f.A)
        g.B.data.copy_(f.B if not path.endswith(("attn2.to_k", "attn2.to_v")) else torch.zeros_like(f.B))
    states, mask = _text(2)
    x, t = torch.randn(2, 1, 28, 56, generator=torch.Generator().manual_seed(2)), torch.tensor([900, 900])
    comp = COMPOSERS.get("tara")()
    with torch.no_grad():
        outs = {}
        for name, tokens in [("off", []), ("on", list(range(T)))]:
            request = CompositionRequest(states, mask, [Concept("cat", tokens or [0], FULL)])
            plan = comp.plan(lab.model, request)
            if not tokens:
                plan.token_masks = {"cat": torch.zeros(2, T)}
            with lab.using("cat"), planned(lab.model, plan):
                outs[name] = lab.model(x, t, states, mask)
        with lab.using("cat_nokv"):
            no_kv = lab.model(x, t, states, mask)
        with lab.using("cat"):
            full = lab.model(x, t, states, mask)
    assert torch.allclose(outs["off"], no_kv, atol=1e-6)  # mask 0: keys/values of attn2 are the base's
    assert torch.allclose(outs["on"], full, atol=1e-6)  # mask 1 everywhere: the plain LoRA
    assert not torch.allclose(no_kv, full, atol=1e-4)


def test_composer_needs_attention_only_adapters_and_known_names(lab):
    request = _two()
    bad = CompositionRequest(request.states, request.mask, [Concept("bird", [1], LEFT)])
    with pytest.raises(WorkbenchError, match="not on this model"):
        compose(lab, "composer", bad, steps=1)
    with pytest.raises(WorkbenchError, match="no caption tokens"):
        unnamed = CompositionRequest(request.states, request.mask, [Concept("cat"), Concept("dog")])
        compose(lab, "clora", unnamed, steps=1)
    other = _lab(2)
    other.new_adapter("ff", r=2, targets=["ff.net.2"])
    ff = CompositionRequest(request.states, request.mask, [Concept("ff", [1], LEFT)])
    with pytest.raises(WorkbenchError, match="inside attention only"):
        compose(other, "composer", ff, steps=1)


def test_plan_terms_restrict_each_adapter_to_its_box(lab):
    """Injection's terms: with the dog LoRA weighted only on the right half, a forward equals the cat
    LoRA's on the left queries of every attention layer and the dog's on the right ones; checked through
    the outputs of one attention layer."""
    attn = dict(lab.model.named_modules())["unet.mid_block.attentions.0.transformer_blocks.0.attn1"]
    boxes = box_masks([LEFT, RIGHT], (28, 56)).float()
    hidden = torch.randn(1, 98, attn.to_q.in_features, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        both = planned_call(attn, AttentionPlan((14, 28), terms=[Term({"cat": 1.0}, boxes[0]),
                                                                 Term({"dog": 1.0}, boxes[1])]), hidden, None)
        cat = planned_call(attn, AttentionPlan((14, 28), terms=[Term({"cat": 1.0})]), hidden, None)
        dog = planned_call(attn, AttentionPlan((14, 28), terms=[Term({"dog": 1.0})]), hidden, None)
    attn.set_processor(D.attention.AttnProcessor())
    left = torch.zeros(7, 14, dtype=torch.bool)
    left[:, :7] = True
    left = left.flatten()
    assert torch.allclose(both[0, left], cat[0, left], atol=1e-6)
    assert torch.allclose(both[0, ~left], dog[0, ~left], atol=1e-6)


def test_composer_plan_and_reinit_follow_the_boxes(lab):
    """Injection weights each concept's term by its box (the base outside), and re-initialisation pastes
    each concept's own early trajectory (its LoRA alone, from the same noise) into its box."""
    from workbench.composition.methods.composer import LoRAComposer
    from workbench.composition.sampling import Sampler

    request = _two()
    composer = LoRAComposer(reinit_steps=2)
    plan = composer.plan(lab.model, request)
    left = box_masks([LEFT], (28, 56))[0].float()
    assert [dict(t.adapters) for t in plan.terms] == [{}, {"cat": 1.0}, {"dog": 1.0}]
    assert torch.equal(plan.terms[1].where, left) and torch.equal(plan.terms[2].where, 1 - left)
    assert not plan.terms[0].where.any()  # the two halves cover the canvas: no background
    sampler = Sampler(4)
    x = sampler.noise((1, 1, 28, 56), 0)
    with torch.no_grad():
        z = composer._reinit(lab.model, request, sampler, x, 2)
        for name, half in [("cat", slice(0, 28)), ("dog", slice(28, 56))]:
            own = x
            with lab.using(name):
                for t in sampler.timesteps[:2]:
                    own = sampler.step(lab.model(own, t.expand(1), request.states, request.mask), t, own)
            assert torch.allclose(z[..., half], own[..., half], atol=1e-6), name


def test_naive_is_the_lab_sum_and_switching_alternates(lab):
    states, mask = _text(1)
    request = CompositionRequest(states, mask, [Concept("cat"), Concept("dog")])
    with lab.using(["cat", "dog"]):
        summed = D.ddim_sample(lab.model, states, mask, steps=3, seed=1)
    assert torch.equal(compose(lab, "naive", request, steps=3, seed=1).images, summed)
    switching = COMPOSERS.get("switching")(every=2)
    assert [switching.active(i, ["cat", "dog"]) for i in range(5)] == ["cat", "cat", "dog", "dog", "cat"]
    result = compose(lab, "switching", request, steps=3, seed=1, every=1)
    assert [r["active"] for r in result.steps] == ["cat", "dog", "cat"]
    with lab.using("cat"):  # one concept: switching is plain sampling with it
        plain = D.ddim_sample(lab.model, states, mask, steps=3, seed=1)
    one = CompositionRequest(states, mask, [Concept("cat")])
    assert torch.equal(compose(lab, "switching", one, steps=3, seed=1).images, plain)


def test_composer_ignores_what_the_lab_uses_outside_attention():
    """Composer runs every layer outside its attention plans as the base, whatever lab.use says."""
    lab = _lab(3)
    ff = lab.new_adapter("ff", r=2, targets=["ff.net.2"])
    for f in ff.modules.values():
        f.B.data.normal_(0, 0.5)
    states, mask = _text(1)
    one = CompositionRequest(states, mask, [Concept("cat", [1], FULL)])
    quiet = compose(lab, "composer", one, steps=2, seed=0).images
    with lab.using("ff"):
        assert torch.equal(compose(lab, "composer", one, steps=2, seed=0).images, quiet)
        assert lab.active.names == {"ff"}
