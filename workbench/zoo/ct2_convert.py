"""Read a CTranslate2 model file and turn a Whisper one into transformers' WhisperForConditionalGeneration.

The CTranslate2 binary (version 6, what faster-whisper ships) is, in little-endian order::

    u32 version · str spec name · u32 revision · u32 n
    n × (str name · u8 ndim · ndim × u32 dim · u8 dtype · u32 nbytes · nbytes of data)
    u32 n_aliases · n_aliases × (str alias · str target)

where ``str`` is a u16 length (terminating NUL included), the bytes, then the NUL. The dtype ids are
CTranslate2's ``DataType`` enum (float32, int8, int16, int32, float16, bfloat16). Written from the
format as read in the file itself (no CTranslate2 code is used or copied).

Whisper's names map onto transformers' as follows (one encoder/decoder layer shown)::

    encoder/conv{1,2}/{weight,bias}                    model.encoder.conv{1,2}
    encoder/position_encodings/encodings               model.encoder.embed_positions.weight
    encoder/layer_i/self_attention/linear_0 (fused)    q_proj, k_proj, v_proj (k has no bias: drop it)
    encoder/layer_i/self_attention/linear_1            out_proj
    */layer_norm/{gamma,beta}                          *_layer_norm.{weight,bias}
    */ffn/linear_{0,1}                                 fc1, fc2
    decoder/layer_i/attention/linear_0                 encoder_attn.q_proj
    decoder/layer_i/attention/linear_1 (fused k, v)    encoder_attn.k_proj, v_proj
    decoder/layer_i/attention/linear_2                 encoder_attn.out_proj
    decoder/embeddings/weight                          model.decoder.embed_tokens.weight
    decoder/projection/weight (an alias)               proj_out.weight, tied to the embeddings

Scalars such as ``decoder/num_heads`` are read too; non-tensor facts (d_model, layer counts, vocab)
come from the tensor shapes.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import torch

from workbench.errors import WorkbenchError

DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}  # 5 = bfloat16, below
BFLOAT16 = 5


def read_ct2(path: str | Path) -> tuple[str, dict[str, np.ndarray], dict[str, str]]:
    """Parse a CTranslate2 ``model.bin``.

    Returns:
        (spec name such as ``"WhisperSpec"``, name -> array (bfloat16 arrives as float32), alias -> target).

    Raises:
        WorkbenchError: the file is not a version-6 CTranslate2 model or is truncated.
    """
    data = Path(path).read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        try:
            value = struct.unpack_from("<" + fmt, data, pos)[0]
        except struct.error:
            raise WorkbenchError(
                f"{path}: truncated CTranslate2 file (at byte {pos}); reinstall its package") from None
        pos += struct.calcsize(fmt)
        return value

    def text() -> str:
        nonlocal pos
        n = take("H")
        value = data[pos : pos + n - 1].decode("utf-8")
        pos += n
        return value

    version = take("I")
    if version != 6:
        raise WorkbenchError(f"{path}: CTranslate2 binary version {version}; this reader knows version 6")
    spec, _revision = text(), take("I")
    tensors: dict[str, np.ndarray] = {}
    for _ in range(take("I")):
        name = text()
        shape = tuple(take("I") for _ in range(take("B")))
        dtype, nbytes = take("B"), take("I")
        raw = data[pos : pos + nbytes]
        pos += nbytes
        if len(raw) != nbytes:
            raise WorkbenchError(f"{path}: truncated tensor {name!r}; reinstall its package")
        if dtype == BFLOAT16:
            bits = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
            tensors[name] = bits.view(np.float32).reshape(shape)
        elif dtype in DTYPES:
            tensors[name] = np.frombuffer(raw, dtype=DTYPES[dtype]).reshape(shape)
        else:
            raise WorkbenchError(f"{path}: tensor {name!r} has unknown CTranslate2 dtype id {dtype}")
    aliases = {text(): text() for _ in range(take("I"))}
    return spec, tensors, aliases


def _layer_count(tensors: dict[str, np.ndarray], side: str) -> int:
    found = {int(m.group(1)) for n in tensors if (m := re.match(rf"{side}/layer_(\d+)/", n))}
    return max(found) + 1 if found else 0


def whisper_config(tensors: dict[str, np.ndarray]):
    """A ``WhisperConfig`` read off the tensors of a CTranslate2 Whisper (English-only ids for tiny.en)."""
    from transformers import WhisperConfig

    vocab, d_model = tensors["decoder/embeddings/weight"].shape
    ffn = tensors["encoder/layer_0/ffn/linear_0/weight"].shape[0]
    english_only = vocab == 51864  # the multilingual models have 51865 tokens
    return WhisperConfig(
        vocab_size=int(vocab), num_mel_bins=int(tensors["encoder/conv1/weight"].shape[1]),
        d_model=int(d_model), encoder_layers=_layer_count(tensors, "encoder"),
        decoder_layers=_layer_count(tensors, "decoder"),
        encoder_attention_heads=int(tensors["encoder/num_heads"]),
        decoder_attention_heads=int(tensors["decoder/num_heads"]),
        encoder_ffn_dim=int(ffn), decoder_ffn_dim=int(ffn),
        max_source_positions=int(tensors["encoder/position_encodings/encodings"].shape[0]),
        max_target_positions=int(tensors["decoder/position_encodings/encodings"].shape[0]),
        decoder_start_token_id=50257, eos_token_id=50256, pad_token_id=50256, bos_token_id=50256,
        tie_word_embeddings=True,
        begin_suppress_tokens=[220, 50256],
        suppress_tokens=None,
        **({"forced_decoder_ids": None} if english_only else {}),
    )


def _attention(get, src: str, dst: str, fused: str) -> dict[str, np.ndarray]:
    """transformers' q/k/v/out tensors of one attention block."""
    out = {}
    if fused == "qkv":  # self-attention: linear_0 = [q; k; v], linear_1 = out
        w, b = get(f"{src}/linear_0/weight"), get(f"{src}/linear_0/bias")
        for i, name in enumerate(("q", "k", "v")):
            d = w.shape[0] // 3
            out[f"{dst}.{name}_proj.weight"] = w[i * d : (i + 1) * d]
            if name != "k":  # Whisper's key projection has no bias (CTranslate2 stores zeros)
                out[f"{dst}.{name}_proj.bias"] = b[i * d : (i + 1) * d]
        out_name = "linear_1"
    else:  # cross-attention: linear_0 = q, linear_1 = [k; v], linear_2 = out
        out[f"{dst}.q_proj.weight"] = get(f"{src}/linear_0/weight")
        out[f"{dst}.q_proj.bias"] = get(f"{src}/linear_0/bias")
        w, b = get(f"{src}/linear_1/weight"), get(f"{src}/linear_1/bias")
        d = w.shape[0] // 2
        out[f"{dst}.k_proj.weight"], out[f"{dst}.v_proj.weight"] = w[:d], w[d:]
        out[f"{dst}.v_proj.bias"] = b[d:]
        out_name = "linear_2"
    out[f"{dst}.out_proj.weight"] = get(f"{src}/{out_name}/weight")
    out[f"{dst}.out_proj.bias"] = get(f"{src}/{out_name}/bias")
    return out


def _norm(get, src: str, dst: str) -> dict[str, np.ndarray]:
    return {f"{dst}.weight": get(f"{src}/gamma"), f"{dst}.bias": get(f"{src}/beta")}


def whisper_state_dict(tensors: dict[str, np.ndarray], aliases: dict[str, str]) -> dict[str, torch.Tensor]:
    """transformers' WhisperForConditionalGeneration state dict (float32) from CTranslate2 tensors.

    Raises:
        WorkbenchError: a tensor the mapping needs is missing, or one is left unused.
    """
    used: set[str] = set()

    def get(name: str) -> np.ndarray:
        name = aliases.get(name, name)
        if name not in tensors:
            raise WorkbenchError(f"CTranslate2 Whisper has no tensor {name!r}; is it a WhisperSpec model?")
        used.add(name)
        return tensors[name]

    sd: dict[str, np.ndarray] = {}
    for side in ("encoder", "decoder"):
        m = f"model.{side}"
        sd |= _norm(get, f"{side}/layer_norm", f"{m}.layer_norm")
        for i in range(_layer_count(tensors, side)):
            src, dst = f"{side}/layer_{i}", f"{m}.layers.{i}"
            sd |= _attention(get, f"{src}/self_attention", f"{dst}.self_attn", "qkv")
            sd |= _norm(get, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
            if side == "decoder":
                sd |= _attention(get, f"{src}/attention", f"{dst}.encoder_attn", "q-kv")
                sd |= _norm(get, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm")
            for k in (0, 1):
                for p in ("weight", "bias"):
                    sd[f"{dst}.fc{k + 1}.{p}"] = get(f"{src}/ffn/linear_{k}/{p}")
            sd |= _norm(get, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm")
    for k in (1, 2):
        for p in ("weight", "bias"):
            sd[f"model.encoder.conv{k}.{p}"] = get(f"encoder/conv{k}/{p}")
    sd["model.encoder.embed_positions.weight"] = get("encoder/position_encodings/encodings")
    sd["model.decoder.embed_positions.weight"] = get("decoder/position_encodings/encodings")
    sd["model.decoder.embed_tokens.weight"] = get("decoder/embeddings/weight")
    if aliases.get("decoder/projection/weight", "decoder/embeddings/weight") != "decoder/embeddings/weight":
        raise WorkbenchError("this CTranslate2 Whisper has an untied output projection; not supported")
    left = {n for n, t in tensors.items() if t.ndim > 0 and t.dtype != np.int8} - used
    if left:
        raise WorkbenchError(f"CTranslate2 Whisper tensors not mapped to transformers: {sorted(left)[:5]}")
    return {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in sd.items()}


def convert_whisper(model_dir: str | Path, out: str | Path) -> None:
    """Write a transformers Whisper directory (model.safetensors, config, tokenizer, preprocessor) to ``out``.

    Args:
        model_dir: a CTranslate2 Whisper directory (``model.bin``, ``tokenizer.json``).
        out: an empty directory.
    """
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizerFast

    model_dir, out = Path(model_dir), Path(out)
    spec, tensors, aliases = read_ct2(model_dir / "model.bin")
    if spec != "WhisperSpec":
        raise WorkbenchError(f"{model_dir}/model.bin is a CTranslate2 {spec}, not a WhisperSpec model")
    config = whisper_config(tensors)
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    state = whisper_state_dict(tensors, aliases)
    state["proj_out.weight"] = state["model.decoder.embed_tokens.weight"]
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise WorkbenchError(f"Whisper conversion left missing {missing[:5]} / unexpected {unexpected[:5]}")
    model.tie_weights()
    model.save_pretrained(out)
    tokenizer = WhisperTokenizerFast(tokenizer_file=str(model_dir / "tokenizer.json"),
                                     unk_token="<|endoftext|>", bos_token="<|endoftext|>",
                                     eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    tokenizer.save_pretrained(out)
    WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(out)
