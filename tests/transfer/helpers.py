"""Text labs on the tiny zoo models for transfer tests: two different word-level tokenizers of 256 ids
(the tiny models' vocabulary), a ChatML one for tiny-llama and a Gemma-style one with the zoo's
completion template for tiny-gemma3, and a small fruit-colour task."""

from __future__ import annotations

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from tests.conftest import tiny_lab
from workbench.tasks import Example, Task
from workbench.zoo.gemma3 import COMPLETION, prepare_tokenizer

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
FRUITS = {"apple": "red", "banana": "yellow", "cherry": "red", "lime": "green", "plum": "purple",
          "grape": "green", "lemon": "yellow", "berry": "blue", "kiwi": "green", "mango": "orange"}
WORDS = sorted({*FRUITS, *FRUITS.values(), *(
    "what colour is the fruit yes no real input task answer question here are examples of inputs for a new "
    "write one same kind following system user assistant").split()})
VOCAB = 256


def word_tokenizer(specials: list[str], *, eos: str, pad: str, reverse: bool = False, **extra):
    """A word-level tokenizer of exactly ``VOCAB`` ids: specials, the task words, punctuation and filler
    words ``w0``, ``w1`` … (what a random tiny model mostly writes). ``reverse`` orders the words
    backwards, so the two labs' ids differ."""
    words = list(reversed(WORDS)) if reverse else WORDS
    tokens = specials + words + list(".,?!:()")
    tokens += [f"w{i}" for i in range(VOCAB - len(tokens))]
    core = Tokenizer(models.WordLevel({t: i for i, t in enumerate(tokens)}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", eos_token=eos, pad_token=pad,
                                  **extra)
    assert len(tok) == VOCAB
    return tok


def llama_lab():
    """tiny-llama with a ChatML word tokenizer (the source side)."""
    tok = word_tokenizer(["[UNK]", "<|im_start|>", "<|im_end|>"], eos="<|im_end|>", pad="<|im_end|>",
                         additional_special_tokens=["<|im_start|>"])
    tok.chat_template = CHATML
    lab = tiny_lab("tiny-llama")
    lab.tokenizer = tok
    return lab


def gemma_lab():
    """tiny-gemma3 with a Gemma-style word tokenizer (<pad> 0, <eos> 1, <bos> 2) and the completion
    template of ``workbench.zoo.gemma3`` (the target side: another family, another tokenizer)."""
    tok = word_tokenizer(["<pad>", "<eos>", "<bos>", "[UNK]"], eos="<eos>", pad="<pad>", bos_token="<bos>",
                         reverse=True)
    prepare_tokenizer(tok)
    assert tok.chat_template == COMPLETION
    lab = tiny_lab("tiny-gemma3")
    lab.tokenizer = tok
    return lab


def colour_task() -> Task:
    """What colour is a fruit: 6 train, 4 eval, exact match of a one-word answer."""
    rows = [Example(f"what colour is the {f}", c) for f, c in FRUITS.items()]
    return Task("colour", "fruit colour", "exact_match", train=rows[:6], eval=rows[6:], max_new_tokens=2,
                max_length=96)
