"""SpeechLanguageModel: the frozen Whisper tiny.en encoder → projector → a causal LM (SmolLM2), with
WavLLM's prompt-aware LoRA weight adapter and its two-stage curriculum.

    states = Whisper encoder on the first ``seconds`` of the clip       (B, 50·seconds, 384)  frozen
    pooled = mean over windows of ``pool`` frames                       (B, M, 384)
    speech = projector(pooled)                                          (B, M, d)

Prompt-aware adapter: ``slm.add_prompt_aware(name, r, alpha)`` puts a ``prompt-scale`` router (LoRA
whose α/r is replaced by a per-output-channel σ) on the LM's attention and builds its
``PromptScaler``; σ is computed from the base LM's states on the TEXT prompt alone (no speech, no
answer; ``JoinedBatch.prompt_ids``). ``slm.scale_mode`` chooses what the forward uses:
``"constant"`` (σ ≡ α/r, the plain LoRA of WavLLM's stage 1) or ``"prompt"`` (the scaler's σ).

Curriculum (``curriculum``): stage 1 trains the projector and the LoRA (σ ≡ α/r) on single-task
examples; stage 2 adds the combined-task examples and trains the scaler (and, unless ``fix_lora``,
the LoRA: WavLLM's ``second_stage_fix_lora``).

Reference: Hu et al., WavLLM (arXiv 2404.00656); code github microsoft/SpeechT5 @5d66cf5 (WavLLM/).
WavLLM's encoders are Whisper-large + WavLM with a Q-Former-like adapter; here one frozen Whisper
tiny.en and a mean-pool + MLP projector (a reconstruction at this project's scale).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from workbench.errors import WorkbenchError
from workbench.multimodal.joined import JoinedLM
from workbench.multimodal.training import Stage, train_stages
from workbench.multimodal.vlm import mlp_projector
from workbench.routing import PromptScaler, constant_scale, prompt_states
from workbench.zoo.whisper import encode_window, to_mono_16k

MODES = ("constant", "prompt")
MAX_SCALE = 3.0  # WavLLM clamps σ to [0, 3]


class SpeechLanguageModel(JoinedLM):
    """Clips + text prompts → text answers.

    Args:
        lab: a Workbench on the causal LM.
        whisper: a Whisper ZooModel (``zoo.load("whisper-tiny-en")``; ``tiny-whisper`` in tests).
        seconds: the audio window the encoder sees (clips are cut or zero-padded to it).
        pool: encoder frames averaged into one speech token (20 ms each: 4 → 80 ms per token).
        seed: seeds the projector.
    """

    modality = "audio"

    def __init__(self, lab, whisper, *, seconds: float = 3.0, pool: int = 4, seed: int = 0):
        d_audio = whisper.model.config.d_model
        super().__init__(lab, mlp_projector(d_audio, lab.model.config.hidden_size, seed))
        self.whisper = whisper
        self.encoder = whisper.model.model.encoder.eval().requires_grad_(False)
        window = 2 * whisper.model.config.max_source_positions * 160 / 16000
        if not 0 < seconds <= window:
            raise WorkbenchError(f"seconds must be in (0, {window:g}] (the encoder's window); got {seconds}")
        self.seconds, self.pool = seconds, pool
        self.scalers = torch.nn.ModuleDict()
        self.scale_mode = "constant"
        self._cache: dict[int, tuple[object, torch.Tensor]] = {}

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()
        return self

    @property
    def n_speech(self) -> int:
        """M, speech tokens per clip."""
        return int(round(self.seconds * 50)) // self.pool

    def speech_states(self, audios) -> torch.Tensor:
        """Pooled frozen encoder states (B, M, 384), cached per clip object (the encoder is frozen)."""
        out = []
        missing = [a for a in audios if id(a) not in self._cache]
        if missing:
            states = encode_window(self.whisper, [to_mono_16k(a, 16000) for a in missing], self.seconds)
            pooled = F.avg_pool1d(states.transpose(1, 2), self.pool).transpose(1, 2)  # (b, M, 384)
            for a, p in zip(missing, pooled, strict=True):
                self._cache[id(a)] = (a, p)  # keep the array alive so its id stays unique
        for a in audios:
            out.append(self._cache[id(a)][1])
        return torch.stack(out).to(self.device)

    def media_tokens(self, examples: list) -> torch.Tensor:
        if any(getattr(e, "audio", None) is None for e in examples):
            raise WorkbenchError("the speech-language model needs examples with audio")
        return self.projector(self.speech_states([e.audio for e in examples]))  # (B, M, d)

    # -- the prompt-aware adapter ------------------------------------------------------------------
    def add_prompt_aware(self, name: str, *, r: int = 8, alpha: float = 16.0, dropout: float = 0.1,
                         inner: int = 256, targets="attention", start_at_constant: bool = True,
                         seed: int = 0):
        """A prompt-scale LoRA on the LM and its PromptScaler (σ from the text prompt alone).

        With ``start_at_constant`` (a deviation: the authors' initialisation was not read) the
        scaler's output heads start near the constant α/r (weights × 0.01, bias α/r), so switching
        to prompt mode at stage 2 does not throw away what stage 1 learned. α/r must then lie within
        σ's clamp [0, 3]: WavLLM's code defaults r = 8, α = 32 give 4, beyond it; default α = 16 here.
        """
        if start_at_constant and alpha / r > MAX_SCALE:
            raise WorkbenchError(f"α/r = {alpha / r:g} exceeds σ's clamp {MAX_SCALE:g}; the prompt-aware "
                                 "scale could never reach the plain LoRA's (lower alpha)")
        routed = self.lab.add_router(name, "prompt-scale", targets, seed=seed, r=r, alpha=alpha,
                                     dropout=dropout)
        scaler = PromptScaler.for_routed(self.lab, name, inner=inner, max_scale=MAX_SCALE, seed=seed)
        if start_at_constant:  # σ ≈ α/r for every prompt at first: stage 2 starts from stage 1's LoRA
            with torch.no_grad():
                for head in scaler.W2.values():
                    head.weight.mul_(0.01)
                    head.bias.fill_(alpha / r)
        self.scalers[name] = scaler
        return routed

    def scale_for(self, name: str, batch) -> dict:
        """σ of router ``name`` for a batch: α/r (``constant`` mode) or the scaler's (``prompt``)."""
        if self.scale_mode not in MODES:
            raise WorkbenchError(f"scale_mode must be one of {MODES}; got {self.scale_mode!r}")
        if self.scale_mode == "constant":
            return constant_scale(self.lab.routers[name])
        H = prompt_states(self.lab, batch.prompt_ids, batch.prompt_mask)  # (B, Lp, d), adapters off
        return {"prompt_scale": self.scalers[name](H, batch.prompt_mask)}

    def routing_values(self, batch) -> dict:
        values = super().routing_values(batch)
        for name in self.lab.active.names:
            if name in self.scalers:
                values |= self.scale_for(name, batch)
        return values

    def curriculum(self, name: str, single: list, combined: list, *, steps: tuple[int, int] = (40, 40),
                   lr: float = 1e-3, fix_lora: bool = False) -> list[tuple[list, Stage, str]]:
        """WavLLM's two stages as (tasks, Stage, scale_mode) for ``run_curriculum``."""
        stage1 = Stage("single tasks", use=name, steps=steps[0], lr=lr)
        stage2 = Stage("combined tasks", use=name, steps=steps[1], lr=lr, adapters=not fix_lora,
                       extra=lambda: list(self.scalers[name].parameters()))
        return [(single, stage1, "constant"), (single + combined, stage2, "prompt")]


def run_curriculum(slm: SpeechLanguageModel, plan, *, batch_size: int = 8, seed: int = 0, progress=True):
    """Run (tasks, Stage, scale_mode) steps in order; the history has a ``stage`` column."""
    import pandas as pd

    frames = []
    for k, (tasks, stage, mode) in enumerate(plan):
        slm.scale_mode = mode
        frames.append(train_stages(slm, tasks, [stage], batch_size=batch_size, seed=seed + k,
                                   progress=progress))
    return pd.concat(frames, ignore_index=True)
