"""Caption token embeddings for cross-attention: MiniLM's last hidden states, one row per token.

    text = CaptionText.from_zoo()                       # all-MiniLM-L6-v2 from the zoo
    enc = text.encode(["a sneaker on the left and a bag on the right"])
    enc.states      # (N, T, 384): what the UNet's cross-attention reads (keys and values)
    enc.mask        # (N, T) bool: real tokens (padding gets no attention)
    text.token_ids("a sneaker on the left ...", (2, 9))  # token positions covering characters 2..9

The encoder is frozen and runs once per distinct caption (the scene captions are few), so training
reads the states from a table. Token positions include [CLS] at 0, so object words start at 2 or later.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from workbench.errors import WorkbenchError

MAX_TOKENS = 16  # the longest scene caption has 16 MiniLM tokens with [CLS] and [SEP]


@dataclass
class Encoded:
    """Encoded captions: ``states`` (N, T, D) float32, ``mask`` (N, T) bool (True at real tokens)."""

    states: torch.Tensor
    mask: torch.Tensor


class CaptionText:
    """A frozen token encoder and its tokenizer (MiniLM in practice, any BERT-like encoder in tests).

    Args:
        model: an encoder whose forward returns ``last_hidden_state`` (N, T, D).
        tokenizer: its fast tokenizer (offsets are needed to find object words).
        max_tokens: captions are padded or truncated to this many tokens.
    """

    def __init__(self, model: torch.nn.Module, tokenizer, max_tokens: int = MAX_TOKENS):
        self.model, self.tokenizer, self.max_tokens = model.eval(), tokenizer, max_tokens
        self.dim = int(model.config.hidden_size)

    @classmethod
    def from_zoo(cls, name: str = "minilm-l6") -> CaptionText:
        """The zoo's encoder ``name`` (all-MiniLM-L6-v2 by default, 384-d)."""
        from workbench.zoo.base import load

        zm = load(name)
        return cls(zm.model, zm.tokenizer)

    def _tokens(self, captions: list[str], offsets: bool = False):
        return self.tokenizer(list(captions), padding="max_length", truncation=True,
                              max_length=self.max_tokens, return_tensors="pt", return_offsets_mapping=offsets)

    @torch.no_grad()
    def encode(self, captions: list[str]) -> Encoded:
        """Token states of each caption (the empty caption "" gives [CLS] [SEP], the unconditional one)."""
        if isinstance(captions, str):
            raise WorkbenchError("CaptionText.encode takes a list of captions; wrap one caption in [...]")
        t = self._tokens(captions)
        out = self.model(input_ids=t["input_ids"], attention_mask=t["attention_mask"])
        return Encoded(out.last_hidden_state.float(), t["attention_mask"].bool())

    def token_ids(self, caption: str, span: tuple[int, int]) -> list[int]:
        """Token positions of ``caption`` whose characters overlap ``span`` = (start, end).

        Raises:
            WorkbenchError: when no token covers the span (it was truncated away, or is empty).
        """
        t = self._tokens([caption], offsets=True)
        a, b = span
        ids = [i for i, (s, e) in enumerate(t["offset_mapping"][0].tolist()) if e > s and s < b and e > a]
        if not ids:
            raise WorkbenchError(f"no token of {caption!r} covers characters {a}..{b}; is the caption longer "
                                 f"than {self.max_tokens} tokens?")
        return ids
