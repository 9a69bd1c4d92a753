"""The speech-language model on tiny parts: WavLLM's prompt-aware scale, the curriculum, bad audio."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.multimodal.helpers import tiny_text_lab
from workbench import zoo
from workbench.errors import WorkbenchError
from workbench.multimodal import SpeechLanguageModel, evaluate_joined, run_curriculum
from workbench.tasks.multimodal import MultimodalExample, MultimodalTask


def clip(seed: int, n: int = 12000) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(n) * 0.1).astype(np.float32)


def tiny_task(name="tiny-speech", prompt="Which word?", n: int = 6) -> MultimodalTask:
    words = ("yes", "no")
    train = [MultimodalExample(prompt, words[i % 2], audio=clip(i), answer=words[i % 2]) for i in range(n)]
    return MultimodalTask(name=name, description="noise clips", metric="label_accuracy", train=train,
                          eval=train[:4], max_new_tokens=3, modality="audio", labels=words)


def tiny_slm() -> SpeechLanguageModel:
    return SpeechLanguageModel(tiny_text_lab(), zoo.load("tiny-whisper"), seconds=1.0, pool=5)


def test_speech_tokens_and_cache():
    slm = tiny_slm()
    assert slm.n_speech == 10
    task = tiny_task()
    batch = slm.build([(task, e) for e in task.train[:2]])
    assert (batch.token_types.sum(1) == 10).all()
    states = slm.speech_states([task.train[0].audio])
    assert tuple(states.shape) == (1, 10, 64) and len(slm._cache) == 2  # cached per clip
    assert torch.equal(slm.speech_states([task.train[0].audio]), states)


def test_prompt_scale_fixed_at_alpha_over_r_equals_plain_lora():
    slm = tiny_slm()
    task = tiny_task()
    routed = slm.add_prompt_aware("wav", r=4, alpha=8.0, dropout=0.0, start_at_constant=False)
    slm.lab.new_adapter("plain", r=4, alpha=8.0, targets="attention")
    g = torch.Generator().manual_seed(0)
    for path, router in routed.modules.items():
        router.B.data.normal_(generator=g)
        slm.lab.layers[path].lora_A["plain"].data.copy_(router.A)
        slm.lab.layers[path].lora_B["plain"].data.copy_(router.B)
    batch = slm.build([(task, e) for e in task.train[:3]])
    with torch.no_grad():
        with slm.lab.using("plain"):
            want = slm(batch).logits
        slm.scale_mode = "constant"
        with slm.lab.using("wav"):
            got = slm(batch).logits
            slm.scale_mode = "prompt"
            prompted = slm(batch).logits
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert not torch.allclose(prompted, want)


def test_sigma_starts_at_alpha_over_r_and_refuses_an_unreachable_constant():
    slm = tiny_slm()
    slm.add_prompt_aware("wav", r=4, alpha=8.0)
    slm.scale_mode = "prompt"
    task = tiny_task()
    with torch.no_grad():
        sigma = slm.scale_for("wav", slm.build([(task, task.train[0])]))["prompt_scale"]
    for s in sigma.values():
        torch.testing.assert_close(s, torch.full_like(s, 2.0), atol=0.05, rtol=0)
    with pytest.raises(WorkbenchError, match="clamp"):
        slm.add_prompt_aware("wav4", r=8, alpha=32.0)  # α/r = 4 > 3
    assert "wav4" not in slm.lab.routers  # refused before anything was added


def test_sigma_comes_from_the_text_prompt_alone():
    slm = tiny_slm()
    slm.add_prompt_aware("wav", r=4, alpha=8.0, start_at_constant=False)
    slm.scale_mode = "prompt"
    a, b = tiny_task(), tiny_task(prompt="Say which of the two words it is, please.")
    same_prompt = slm.build([(a, a.train[0]), (a, a.train[1])])  # different audio and answers
    with torch.no_grad():
        sigma = slm.scale_for("wav", same_prompt)["prompt_scale"]
        other = slm.scale_for("wav", slm.build([(b, b.train[0])]))["prompt_scale"]
    for width, s in sigma.items():
        torch.testing.assert_close(s[0], s[1])  # the clip does not reach σ
        assert s.min() >= 0 and s.max() <= 3  # clipped ReLU
        assert not torch.allclose(other[width][0], s[0])  # the prompt does


def test_curriculum_trains_lora_then_scaler():
    slm = tiny_slm()
    single, combined = tiny_task(), tiny_task("tiny-combined", "Which word, and say it twice?")
    routed = slm.add_prompt_aware("wav", r=2, alpha=4.0, dropout=0.0)
    scaler = [p.clone() for p in slm.scalers["wav"].parameters()]
    B0 = [r.B.clone() for r in routed.modules.values()]
    plan = slm.curriculum("wav", [single], [combined], steps=(2, 2), lr=1e-2)
    history = run_curriculum(slm, plan[:1], batch_size=2, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(scaler, slm.scalers["wav"].parameters(), strict=True))
    assert any(not torch.equal(a, r.B) for a, r in zip(B0, routed.modules.values(), strict=True))
    history = run_curriculum(slm, plan[1:], batch_size=2, progress=False)
    assert list(history.stage) == ["combined tasks"] * 2 and slm.scale_mode == "prompt"
    assert any(not torch.equal(a, b) for a, b in zip(scaler, slm.scalers["wav"].parameters(), strict=True))
    scores = evaluate_joined(slm, [single], {"wav": "wav"})
    assert 0 <= scores.value.item() <= 1


def test_bad_audio_is_a_clear_error():
    slm = tiny_slm()
    task = tiny_task()
    empty = MultimodalExample("Which word?", "yes", audio=np.zeros(0, np.float32), answer="yes")
    with pytest.raises(WorkbenchError, match="empty"):
        slm.build([(task, empty)])
    with pytest.raises(WorkbenchError, match="NaN"):
        slm.speech_states([np.full(100, np.nan, np.float32)])
    with pytest.raises(WorkbenchError, match="window"):
        SpeechLanguageModel(tiny_text_lab(), zoo.load("tiny-whisper"), seconds=5.0)
