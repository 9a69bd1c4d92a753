"""Speech tasks: speech synthesized by espeak-ng and flite (many voices and speeds), and the real
human clips of Debian's ``pocketsphinx-testdata`` for evaluation.

Registered tasks (``workbench.tasks.multimodal.load``):
    ``speech-digits``      "Which digit is spoken?" → the digit's word (label_accuracy)
    ``speech-commands``    "Which command is spoken?" → the command (label_accuracy)
    ``speech-voice``       "Who is speaking?" → the voice's name (label_accuracy), 6 voices
    ``speech-transcribe``  "Transcribe the clip." → the words (word_error_rate)
    ``speech-combined``    two instructions in one prompt (WavLLM's combined tasks): "Transcribe the clip,
                           then name the voice." → "<words> | <voice>" (word_error_rate on the whole)
    ``speech-real``        transcription of real human clips (cards, go-forward, librivox); eval only

Train and eval use disjoint (voice, speed, text) combinations: the digits and commands tasks keep two
voices for evaluation only; voice identification keeps some sentences for evaluation only.
Synthesis runs once per clip and is cached in memory (about 20 ms per clip).

Reference: the eSpeak NG (github.com/espeak-ng/espeak-ng) and Flite (Black & Lenzo, "Flite: a small fast
run-time synthesis engine", ISCA SSW 2001) synthesizers; the real clips are CMU Sphinx's test data
(Debian ``pocketsphinx-testdata``).
"""

from __future__ import annotations

import functools
import io
import random
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from workbench.errors import MissingPackageError, WorkbenchError
from workbench.tasks.base import SPLIT_BOUNDS, SPLIT_DOCS
from workbench.tasks.multimodal.base import MM_TASKS, MultimodalExample, MultimodalTask
from workbench.zoo.whisper import normalize_words, read_audio, to_mono_16k

POCKETSPHINX = Path("/usr/share/pocketsphinx/test/data")
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
COMMANDS = ("go forward", "go back", "turn left", "turn right", "stop", "lights on", "lights off",
            "open the door")
SENTENCES = ("the cat sat on the mat", "please open the window", "it is cold today", "we will meet at noon",
             "the train is late again", "put the book on the table", "i like green apples",
             "call me in the morning", "the sky is very blue", "turn the music down",
             "my phone is on the desk",
             "she reads a long letter")
ESPEAK_VOICES = {"alan": "en-gb", "mary": "en-us+f2", "sam": "en-us", "fiona": "en-gb-scotland+f3",
                 "carl": "en-029"}
FLITE_VOICES = {"kal": "kal", "slt": "slt", "awb": "awb", "rms": "rms"}
VOICE_TASK = ("alan", "mary", "sam", "fiona", "slt", "awb")  # the six voices speech-voice tells apart
SPEEDS = (130, 165)
SYSTEM = "You listen to a clip and answer briefly."


def engines_available() -> bool:
    return shutil.which("espeak-ng") is not None and shutil.which("flite") is not None


def _need_engines() -> None:
    if not engines_available():
        raise MissingPackageError("speech synthesis needs espeak-ng and flite; run "
                                  "`sudo apt-get install espeak-ng flite`")


def _wav_bytes(data: bytes) -> np.ndarray:
    with wave.open(io.BytesIO(data), "rb") as f:
        pcm = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
        return to_mono_16k(pcm, f.getframerate())


@functools.cache
def synthesize(text: str, voice: str, speed: int = 150) -> np.ndarray:
    """A 16 kHz clip of ``text`` said by ``voice`` (an ESPEAK_VOICES or FLITE_VOICES name)."""
    _need_engines()
    if voice in ESPEAK_VOICES:
        out = subprocess.run(["espeak-ng", "-v", ESPEAK_VOICES[voice], "-s", str(speed), "--stdout", text],
                             capture_output=True, check=True).stdout
        return _wav_bytes(out)
    if voice in FLITE_VOICES:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "clip.wav"
            stretch = f"{150 / speed:.3f}"  # flite's duration stretch: > 1 is slower
            subprocess.run(["flite", "-voice", FLITE_VOICES[voice], "--setf", f"duration_stretch={stretch}",
                            "-t", text, "-o", str(path)], capture_output=True, check=True)
            return read_audio(path)
    raise WorkbenchError(f"unknown voice {voice!r}; choose one of {sorted(ESPEAK_VOICES | FLITE_VOICES)}")


def _example(prompt: str, target: str, text: str, voice: str, speed: int, answer=None) -> MultimodalExample:
    return MultimodalExample(prompt, target, audio=synthesize(text, voice, speed),
                             answer=target if answer is None else answer,
                             meta={"text": text, "voice": voice, "speed": speed})


def _split_by_voice(items: list, eval_voices: set, n_train: int, n_eval: int, seed: int, name: str):
    rng = random.Random(f"{name}:{seed}")
    train = [i for i in items if i[1] not in eval_voices]
    held = [i for i in items if i[1] in eval_voices]
    rng.shuffle(train)
    rng.shuffle(held)
    if n_train > len(train) or n_eval > len(held):
        raise WorkbenchError(f"task {name!r} has {len(train)} train / {len(held)} eval clips; lower "
                             f"n_train={n_train} or n_eval={n_eval}")
    return train[:n_train], held[:n_eval]


def _split_by_sentence(name: str, seed: int, n_train: int, n_eval: int) -> tuple[list, list]:
    """(text, voice, speed) clips of the six task voices, split so that 3 sentences are only in eval."""
    rng = random.Random(f"{name}:{seed}")
    texts = list(SENTENCES)
    rng.shuffle(texts)
    groups = (texts[3:], texts[:3])  # (train sentences, held-out sentences)
    splits = [[(t, v, s) for t in group for v in VOICE_TASK for s in SPEEDS] for group in groups]
    for split in splits:
        rng.shuffle(split)
    if n_train > len(splits[0]) or n_eval > len(splits[1]):
        raise WorkbenchError(f"task {name!r} has {len(splits[0])} train / {len(splits[1])} eval clips; lower "
                             f"n_train={n_train} or n_eval={n_eval}")
    return splits[0][:n_train], splits[1][:n_eval]


def _labelled(name: str, words: tuple[str, ...], question: str, seed: int, n_train: int, n_eval: int):
    _need_engines()
    voices = list(ESPEAK_VOICES) + list(FLITE_VOICES)
    items = [(w, v, s) for w in words for v in voices for s in SPEEDS]
    train, eval_ = _split_by_voice(items, {"carl", "rms"}, n_train, n_eval, seed, name)
    make = [[_example(question, w, w, v, s) for w, v, s in split] for split in (train, eval_)]
    return MultimodalTask(name=name, description=f"{question} (espeak-ng + flite voices; 2 voices held out)",
                          metric="label_accuracy", train=make[0], eval=make[1], system=SYSTEM,
                          max_new_tokens=5, max_length=160, modality="audio", labels=words)


@MM_TASKS.register("speech-digits", bounds=SPLIT_BOUNDS, docs=SPLIT_DOCS)
def speech_digits(seed: int = 0, n_train: int = 120, n_eval: int = 40) -> MultimodalTask:
    """Spoken digit recognition; eval voices (carl, rms) never appear in training."""
    return _labelled("speech-digits", DIGITS, "Which digit is spoken? Answer with the word.", seed, n_train,
                     n_eval)


@MM_TASKS.register("speech-commands", bounds=SPLIT_BOUNDS, docs=SPLIT_DOCS)
def speech_commands(seed: int = 0, n_train: int = 100, n_eval: int = 32) -> MultimodalTask:
    """Spoken command recognition (8 commands); eval voices never appear in training."""
    return _labelled("speech-commands", COMMANDS, "Which command is spoken?", seed, n_train, n_eval)


@MM_TASKS.register("speech-voice", bounds=SPLIT_BOUNDS, docs=SPLIT_DOCS)
def speech_voice(seed: int = 0, n_train: int = 96, n_eval: int = 36) -> MultimodalTask:
    """Voice identification among six voices; eval sentences never appear in training."""
    _need_engines()
    question = "Who is speaking? Answer with the name."
    splits = _split_by_sentence("speech-voice", seed, n_train, n_eval)
    make = [[_example(question, v, t, v, s) for t, v, s in split] for split in splits]
    return MultimodalTask(name="speech-voice", description="name the voice among six (3 sentences held out)",
                          metric="label_accuracy", train=make[0], eval=make[1], system=SYSTEM,
                          max_new_tokens=4, max_length=160, modality="audio", labels=VOICE_TASK)


@MM_TASKS.register("speech-transcribe", bounds=SPLIT_BOUNDS, docs=SPLIT_DOCS)
def speech_transcribe(seed: int = 0, n_train: int = 96, n_eval: int = 24) -> MultimodalTask:
    """Transcription of short sentences; two voices held out for evaluation."""
    _need_engines()
    voices = list(ESPEAK_VOICES) + list(FLITE_VOICES)
    items = [(t, v, s) for t in SENTENCES for v in voices for s in SPEEDS]
    train, eval_ = _split_by_voice(items, {"carl", "rms"}, n_train, n_eval, seed, "speech-transcribe")
    q = "Transcribe the clip."
    make = [[_example(q, t, t, v, s) for t, v, s in split] for split in (train, eval_)]
    return MultimodalTask(name="speech-transcribe", description="transcribe synthetic sentences",
                          metric="word_error_rate", train=make[0], eval=make[1], system=SYSTEM,
                          max_new_tokens=16, max_length=192, modality="audio")


@MM_TASKS.register("speech-combined", bounds=SPLIT_BOUNDS, docs=SPLIT_DOCS)
def speech_combined(seed: int = 0, n_train: int = 72, n_eval: int = 24) -> MultimodalTask:
    """Two instructions at once (transcribe, then name the voice): WavLLM's combined-task prompts."""
    _need_engines()
    q = "Transcribe the clip, then name the voice after a bar."
    splits = _split_by_sentence("speech-combined", seed, n_train, n_eval)
    make = [[_example(q, f"{t} | {v}", t, v, s) for t, v, s in split] for split in splits]
    return MultimodalTask(name="speech-combined", description="transcribe and name the voice in one answer",
                          metric="word_error_rate", train=make[0], eval=make[1], system=SYSTEM,
                          max_new_tokens=20, max_length=192, modality="audio", labels=VOICE_TASK)


def real_clips() -> list[tuple[Path, str]]:
    """(wav path, reference words) of pocketsphinx-testdata's real human clips (cards, librivox)."""
    if not POCKETSPHINX.is_dir():
        raise MissingPackageError("the real speech clips come with Debian's pocketsphinx-testdata; run "
                                  "`sudo apt-get install pocketsphinx-testdata`")
    clips = []
    for folder, listing in (("cards", "cards.transcription"), ("librivox", "transcription")):
        for line in (POCKETSPHINX / folder / listing).read_text().splitlines():
            if "(" in line:
                words = line.split("</s>")[0].replace("<s>", "").strip()
                clips.append((POCKETSPHINX / folder / f"{line.rsplit('(', 1)[1].strip(' )')}.wav", words))
    return clips


@MM_TASKS.register("speech-real", bounds=SPLIT_BOUNDS, docs=SPLIT_DOCS)
def speech_real(seed: int = 0, n_train: int = 0, n_eval: int = 10) -> MultimodalTask:
    """Transcription of the real human clips (evaluation only; n_train must be 0)."""
    if n_train:
        raise WorkbenchError("speech-real is for evaluation only: its 10 clips are too few to train on")
    clips = real_clips()[:n_eval]
    eval_ = [MultimodalExample("Transcribe the clip.", words, audio=read_audio(path), answer=words,
                               meta={"file": path.name}) for path, words in clips]
    return MultimodalTask(name="speech-real", description="real human speech from pocketsphinx-testdata",
                          metric="word_error_rate", train=[], eval=eval_, system=SYSTEM, max_new_tokens=32,
                          max_length=256, modality="audio")


__all__ = ["normalize_words", "real_clips", "synthesize"]
