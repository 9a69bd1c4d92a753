"""Speech tasks: synthesis by espeak-ng and flite, held-out voices and sentences, the real clips."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.tasks import multimodal as tasks
from workbench.tasks.metrics import METRICS
from workbench.tasks.multimodal import MultimodalExample
from workbench.tasks.multimodal.metrics import mean_word_error_rate
from workbench.tasks.multimodal.speech import POCKETSPHINX, engines_available, real_clips, synthesize

needs_engines = pytest.mark.skipif(not engines_available(), reason="apt-get install espeak-ng flite")


@needs_engines
def test_synthesis_of_both_engines():
    a, b = synthesize("turn left", "alan", 150), synthesize("turn left", "slt", 150)
    for x in (a, b):
        assert x.dtype == np.float32 and 0.3 * 16000 < x.size < 3 * 16000 and np.abs(x).max() <= 1
    assert synthesize("turn left", "alan", 130).size > synthesize("turn left", "alan", 165).size  # speed
    assert synthesize("turn left", "slt", 130).size > synthesize("turn left", "slt", 165).size


@needs_engines
def test_labelled_tasks_hold_out_voices():
    t = tasks.load("speech-digits")["speech-digits"]
    train_voices = {e.meta["voice"] for e in t.train}
    eval_voices = {e.meta["voice"] for e in t.eval}
    assert eval_voices == {"carl", "rms"} and not train_voices & eval_voices
    assert all(e.target == e.meta["text"] and e.target in t.labels for e in t.eval)


@needs_engines
def test_voice_task_holds_out_sentences_and_combined_targets():
    v = tasks.load("speech-voice")["speech-voice"]
    assert not {e.meta["text"] for e in v.train} & {e.meta["text"] for e in v.eval}
    assert {e.target for e in v.train} == set(v.labels)
    c = tasks.load("speech-combined")["speech-combined"]
    e = c.eval[0]
    assert e.target == f"{e.meta['text']} | {e.meta['voice']}" and c.metric == "word_error_rate"


def test_word_error_rate_metric():
    audio = np.zeros(10, np.float32)
    exs = [MultimodalExample("q", "ten of clubs", audio=audio),
           MultimodalExample("q", "go forward", audio=audio)]
    assert mean_word_error_rate(["10 of clubs.", "go"], exs) == pytest.approx(0.25)
    assert not METRICS.get("word_error_rate").higher_is_better


@pytest.mark.skipif(not POCKETSPHINX.is_dir(), reason="apt-get install pocketsphinx-testdata")
def test_real_clips_have_references():
    clips = real_clips()
    assert len(clips) == 10 and all(p.is_file() for p, _ in clips)
    assert ("ten of clubs" in dict((p.name, w) for p, w in clips).values())
    t = tasks.load("speech-real")["speech-real"]
    assert not t.train and t.eval[0].audio.dtype == np.float32
