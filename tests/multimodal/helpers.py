"""Tiny parts for multimodal unit tests: a byte-level tokenizer and a tiny Llama that fits it."""

from __future__ import annotations

import torch


def byte_tokenizer():
    """A byte-level tokenizer (256 byte tokens + <|im_start|>, <|im_end|>); no chat template (ChatML)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {c: i for i, c in enumerate(sorted(alphabet))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|im_end|>",
                                  additional_special_tokens=["<|im_start|>"])
    tok.padding_side = "right"
    return tok


def tiny_text_lab(positions: int = 512):
    """A Workbench on a 2-layer random Llama (hidden 64, GQA) with the byte tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from workbench import Workbench

    tok = byte_tokenizer()
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=positions,
                         tie_word_embeddings=False, attn_implementation="eager")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config).eval().requires_grad_(False)
    return Workbench(model, tok, name="tiny-text")
