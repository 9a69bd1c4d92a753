"""The vision-language model on tiny parts: sequence layout, MM-LoRA routing, QLadder, stages, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.multimodal.helpers import tiny_text_lab
from workbench import zoo
from workbench.errors import WorkbenchError
from workbench.multimodal import (
    QLadder,
    Stage,
    VisionLanguageModel,
    evaluate_joined,
    prepare_images,
    train_stages,
)
from workbench.tasks.multimodal import MultimodalExample, MultimodalTask


def image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((28, 28), dtype=np.float32)


def tiny_task(n: int = 6) -> MultimodalTask:
    names = ("dot", "bar")
    train = [MultimodalExample("What is this?", names[i % 2], image=image(i), answer=names[i % 2])
             for i in range(n)]
    return MultimodalTask(name="tiny-naming", description="random images", metric="label_accuracy",
                          train=train, eval=train[:4], max_new_tokens=4, modality="image", labels=names)


def tiny_vlm(**kw) -> VisionLanguageModel:
    return VisionLanguageModel(tiny_text_lab(kw.pop("positions", 512)), zoo.load("tiny-cnn").model,
                               image_size=32, **kw)


def test_sequence_layout_and_token_types():
    vlm = tiny_vlm(ladder_queries=3)
    task = tiny_task()
    assert vlm.n_visual == 4 * 4 + 3  # 32 px / stride 8 = 4×4 patches, plus 3 ladder tokens
    batch = vlm.build([(task, e) for e in task.train[:2]])
    types = batch.token_types
    assert (types.sum(1) == vlm.n_visual).all()
    first = types[0].nonzero()[:, 0]
    assert (first.diff() == 1).all()  # the media tokens are one contiguous span
    labelled = batch.labels[0] != -100
    assert not (labelled & (types[0] == 1)).any() and labelled.any()  # no loss on media or prompt
    answer = batch.labels[0][labelled].tolist()
    assert vlm.lab.tokenizer.decode(answer[:-1]) == task.train[0].target  # the target, then EOT


def test_all_language_mask_equals_the_language_lora():
    vlm = tiny_vlm()
    task = tiny_task()
    routed = vlm.add_mm_lora("mm", r_vision=2, r_language=4, dropout=0.0)
    plain = vlm.lab.new_adapter("lang", r=4, alpha=8.0, targets="all-linear")  # scale 2, as MM-LoRA's
    g = torch.Generator().manual_seed(1)
    for path, router in routed.modules.items():
        for branch in ("language", "vision"):
            router.B[branch].data.normal_(generator=g)  # non-zero updates in both branches
        vlm.lab.layers[path].lora_A["lang"].data.copy_(router.A["language"])
        vlm.lab.layers[path].lora_B["lang"].data.copy_(router.B["language"])
    assert set(plain.modules) == set(routed.modules)
    batch = vlm.build([(task, e) for e in task.train[:3]])
    batch.token_types.zero_()  # every token a language token
    with torch.no_grad():
        with vlm.lab.using("lang"):
            want = vlm(batch).logits
        with vlm.lab.using("mm"):
            got = vlm(batch).logits
            batch.token_types[:, :] = 1
            vision = vlm(batch).logits
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert not torch.allclose(vision, want)


def test_visual_tokens_take_the_vision_branch():
    vlm = tiny_vlm()
    task = tiny_task()
    routed = vlm.add_mm_lora("mm", r_vision=2, r_language=4, dropout=0.0)
    for router in routed.modules.values():
        router.B["vision"].data.fill_(0.1)  # language branch stays zero
    batch = vlm.build([(task, e) for e in task.train[:2]])
    with torch.no_grad():
        with vlm.lab.using(None):
            base = vlm(batch).logits
        with vlm.lab.using("mm"):
            routed_out = vlm(batch).logits
    first_visual = int(batch.token_types[0].nonzero()[0])
    torch.testing.assert_close(routed_out[:, :first_visual], base[:, :first_visual])  # before any image token
    assert not torch.allclose(routed_out[:, first_visual:], base[:, first_visual:])


def test_qladder_shape_and_every_stage_matters():
    channels = [8, 16, 32]
    ladder = QLadder(channels, queries=5, dim=16, heads=4, out_dim=24)
    maps = [torch.randn(2, c, s, s, requires_grad=True) for c, s in zip(channels, [16, 8, 4], strict=True)]
    out = ladder(maps)
    assert tuple(out.shape) == (2, 5, 24)
    out.square().sum().backward()
    for i, m in enumerate(maps):
        assert m.grad is not None and m.grad.abs().sum() > 0, f"stage {i} gets no gradient"
    with torch.no_grad():
        for i in range(len(maps)):
            moved = [m.detach().clone() for m in maps]
            moved[i] += torch.randn_like(moved[i])
            assert not torch.allclose(ladder(moved), out.detach()), f"output ignores stage {i}"


def test_qladder_records_attention_over_each_stage():
    from workbench.hooks import record

    vlm = tiny_vlm(ladder_queries=3)
    with record(vlm.ladder, "*.hook_attention") as cache:
        vlm.visual_tokens([image(0)])
    shapes = [tuple(cache[k].shape) for k in sorted(cache)]
    assert shapes == [(1, 4, 3, 256), (1, 4, 3, 64), (1, 4, 3, 16)]  # (B, heads, n, H·W) per stage
    assert torch.allclose(cache[sorted(cache)[0]].sum(-1), torch.ones(1, 4, 3))


def test_stages_train_what_they_say_and_answers_parse():
    vlm = tiny_vlm(ladder_queries=2)
    task = tiny_task()
    vlm.add_mm_lora("mm", r_vision=2, r_language=2, dropout=0.0)
    lm_before = {k: v.clone() for k, v in vlm.lm.state_dict().items() if "lora" not in k and ".A." not in k
                 and ".B." not in k}
    proj_before = [p.clone() for p in vlm.projector.parameters()]
    B_before = [r.B["vision"].clone() for r in vlm.lab.routers["mm"].modules.values()]
    history = train_stages(vlm, [task], [Stage("projector", use=None, steps=3, lr=1e-2),
                                         Stage("adapters", use="mm", steps=3, lr=1e-2)],
                           batch_size=2, progress=False)
    assert list(history.stage.unique()) == ["projector", "adapters"] and history.loss.notna().all()
    assert any(not torch.equal(a, b) for a, b in zip(proj_before, vlm.projector.parameters(), strict=True))
    assert any(not torch.equal(a, r.B["vision"]) for a, r in
               zip(B_before, vlm.lab.routers["mm"].modules.values(), strict=True))
    after = vlm.lm.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in lm_before.items())  # base weights untouched
    assert not any(p.requires_grad for p in vlm.encoder.parameters()) and vlm.lab.active.names == set()
    answers = vlm.answer(task, task.eval)
    assert len(answers) == 4 and all(isinstance(a, str) for a in answers)
    scores = evaluate_joined(vlm, [task], {"mm": "mm", "base": None})
    assert list(scores.columns) == ["adapter", "task", "metric", "value"] and len(scores) == 2
    assert scores.value.between(0, 1).all()


def test_prepare_images_conversions_and_errors():
    out = prepare_images([np.zeros((28, 28), np.uint8), np.ones((3, 40, 40), np.float32)], 32)
    assert tuple(out.shape) == (2, 3, 32, 32) and float(out[1].min()) == pytest.approx(1.0)
    assert tuple(prepare_images(np.zeros((10, 12, 3), np.uint8)[None], 32).shape) == (1, 3, 32, 32)
    with pytest.raises(WorkbenchError, match="4 channels"):
        prepare_images([np.zeros((4, 28, 28), np.float32)], 32)
    with pytest.raises(WorkbenchError, match=r"\[0, 1\]"):
        prepare_images([np.full((28, 28), 255.0, np.float32)], 32)
    with pytest.raises(WorkbenchError, match="multiple of 8"):
        prepare_images([np.zeros((28, 28), np.float32)], 30, multiple=8)


def test_bad_image_and_too_long_prompt_are_clear_errors():
    vlm = tiny_vlm(positions=64)
    task = tiny_task()
    with pytest.raises(WorkbenchError, match="channels"):
        vlm.visual_tokens([np.zeros((2, 28, 28), np.float32)])
    long = MultimodalExample("word " * 40, "dot", image=image(0), answer="dot")
    with pytest.raises(WorkbenchError, match="context is 64"):
        vlm.build([(task, long)])
    with pytest.raises(WorkbenchError, match="multiple of 8"):
        VisionLanguageModel(tiny_text_lab(), zoo.load("tiny-cnn").model, image_size=36)
