"""Tiny random models of eight architectures, built locally (no hub), for the peft matrix test.

Each builder makes the same weights for the same seed, so peft and the workbench get equal bases.
Hidden size 32, 2 layers; vocabulary 96.
"""

from __future__ import annotations

import torch

VOCAB = 96
COMMON = dict(vocab_size=VOCAB, num_hidden_layers=2, max_position_embeddings=64)


def _llama_like(cls_config, cls_model, **extra):
    def build():
        cfg = cls_config(hidden_size=32, intermediate_size=64, num_attention_heads=4,
                         num_key_value_heads=2, attn_implementation="eager", **COMMON, **extra)
        return cls_model(cfg)
    return build


def _builders() -> dict:
    import transformers as t

    return {
        "llama": _llama_like(t.LlamaConfig, t.LlamaForCausalLM, tie_word_embeddings=False),
        "qwen2": _llama_like(t.Qwen2Config, t.Qwen2ForCausalLM, tie_word_embeddings=False),
        "mistral": _llama_like(t.MistralConfig, t.MistralForCausalLM, tie_word_embeddings=False),
        "gemma": _llama_like(t.GemmaConfig, t.GemmaForCausalLM, head_dim=8),  # tied head
        "phi": lambda: t.PhiForCausalLM(t.PhiConfig(
            hidden_size=32, intermediate_size=64, num_attention_heads=4, attn_implementation="eager",
            **COMMON)),
        "opt": lambda: t.OPTForCausalLM(t.OPTConfig(
            hidden_size=32, ffn_dim=64, num_attention_heads=4, word_embed_proj_dim=32,
            vocab_size=VOCAB, num_hidden_layers=2, max_position_embeddings=64,
            attn_implementation="eager")),
        "gpt2": lambda: t.GPT2LMHeadModel(t.GPT2Config(
            n_embd=32, n_layer=2, n_head=4, n_inner=64, vocab_size=VOCAB, n_positions=64,
            bos_token_id=VOCAB - 1, eos_token_id=VOCAB - 1,
            attn_implementation="eager")),
        "bert": lambda: t.BertModel(t.BertConfig(
            hidden_size=32, intermediate_size=64, num_attention_heads=4, vocab_size=VOCAB,
            num_hidden_layers=2, max_position_embeddings=64, attn_implementation="eager")),
    }


ARCHS = ["llama", "qwen2", "mistral", "gemma", "phi", "opt", "gpt2", "bert"]
# Attention targets by suffix, and the embedding / head module names, per architecture.
QV = {"llama": ["q_proj", "v_proj"], "qwen2": ["q_proj", "v_proj"], "mistral": ["q_proj", "v_proj"],
      "gemma": ["q_proj", "v_proj"], "phi": ["q_proj", "v_proj"], "opt": ["q_proj", "v_proj"],
      "gpt2": ["c_attn"], "bert": ["query", "value"]}
MLP = {"llama": "down_proj", "qwen2": "down_proj", "mistral": "down_proj", "gemma": "down_proj",
       "phi": "fc2", "opt": "fc2", "gpt2": "c_fc", "bert": "intermediate.dense"}
EMBED = {"llama": "embed_tokens", "qwen2": "embed_tokens", "mistral": "embed_tokens",
         "gemma": "embed_tokens", "phi": "embed_tokens", "opt": "embed_tokens", "gpt2": "wte",
         "bert": "word_embeddings"}
HEAD = {a: ("lm_head" if a != "bert" else "pooler.dense") for a in ARCHS}


def build(arch: str, dtype: torch.dtype = torch.float32, device: str = "cpu") -> torch.nn.Module:
    """The tiny ``arch`` model with seed-0 weights (biases made non-zero so they matter), in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = _builders()[arch]()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("bias"):
                    p.normal_(0, 0.1)
    return model.to(device=device, dtype=dtype).eval()


def inputs(model, batch: int = 3, length: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    mask[-1, :2] = 0  # a padded row (left padding)
    dev = next(model.parameters()).device
    return {"input_ids": ids.to(dev), "attention_mask": mask.to(dev)}


def logits(model, x) -> torch.Tensor:
    with torch.no_grad():
        out = model(**x)
    return (out.logits if hasattr(out, "logits") else out.last_hidden_state).float()
