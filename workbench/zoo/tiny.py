"""Tiny random models for fast unit tests: a GQA Llama, a Gemma 3, a GPT-2 (Conv1D layers) and a BERT
encoder.

Each is built from a small config with a fixed seed inside ``torch.random.fork_rng``, so two loads
give identical weights (and fingerprints) and the caller's global random state is left untouched.
They have no tokenizer: feed them token ids below ``VOCAB``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from workbench.zoo.base import ZOO, ZooModel, finish

VOCAB = 256
HIDDEN = 64
LAYERS = 2
HEADS = 4
FFN = 128
POSITIONS = 128
SEED = 0


def _seeded(build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """Run ``build`` with the CPU generator seeded, restoring the global random state after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        return build()


@ZOO.register("tiny-llama", flags=("causal-lm", "random_weights"),
              reference="Touvron et al., LLaMA: Open and Efficient Foundation Language Models, 2023 "
                        "(the architecture)")
def tiny_llama() -> ZooModel:
    """A 2-layer Llama: hidden 64, 4 query heads sharing 2 key/value heads (GQA), untied head."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=FFN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=2,
        max_position_embeddings=POSITIONS,
        tie_word_embeddings=False,
        attn_implementation="eager",
    )
    return finish("tiny-llama", _seeded(lambda: LlamaForCausalLM(config)), None, "causal-lm")


@ZOO.register("tiny-gemma3", flags=("causal-lm", "random_weights"),
              reference="Gemma Team, Gemma 3 Technical Report, arXiv 2503.19786, 2025 (the architecture)")
def tiny_gemma3() -> ZooModel:
    """A 2-layer Gemma 3 text model shaped like gemma3-270m: one sliding-window and one full attention
    layer, 4 query heads sharing 1 key/value head, q/k norms, tied embeddings, gated GELU MLP."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=FFN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=1,
        head_dim=16,
        query_pre_attn_scalar=16,
        sliding_window=8,
        layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=POSITIONS,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=1,
        attn_implementation="eager",
    )
    return finish("tiny-gemma3", _seeded(lambda: Gemma3ForCausalLM(config)), None, "causal-lm")


@ZOO.register("tiny-gpt2", flags=("causal-lm", "random_weights"),
              reference="Radford et al., Language Models are Unsupervised Multitask Learners (GPT-2), 2019 "
                        "(the architecture)")
def tiny_gpt2() -> ZooModel:
    """A 2-layer GPT-2 (hidden 64, 4 heads): its projections are transformers' Conv1D, (in, out)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=VOCAB,
        n_positions=POSITIONS,
        n_embd=HIDDEN,
        n_layer=LAYERS,
        n_head=HEADS,
        n_inner=FFN,
        bos_token_id=VOCAB - 1,  # GPT-2's <|endoftext|> is the last id
        eos_token_id=VOCAB - 1,
        attn_implementation="eager",
    )
    return finish("tiny-gpt2", _seeded(lambda: GPT2LMHeadModel(config)), None, "causal-lm")


@ZOO.register("tiny-bert", flags=("encoder", "random_weights"),
              reference="Devlin et al., BERT: Pre-training of Deep Bidirectional Transformers, NAACL 2019 "
                        "(the architecture)")
def tiny_bert() -> ZooModel:
    """A 2-layer BERT encoder (hidden 64, 4 heads) with its pooler; outputs last_hidden_state."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=FFN,
        max_position_embeddings=POSITIONS,
        attn_implementation="eager",
    )
    return finish("tiny-bert", _seeded(lambda: BertModel(config)), None, "encoder")
