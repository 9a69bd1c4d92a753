"""Batched scoring equals the per-example path: shared prefix, left padding, greedy decoding with a cache.

Tiny random Llama and GPT-2 in float32; every comparison is against plain unpadded forwards or
``generate`` of one example at a time (the per-example path), for each metric kind: multiple-choice
accuracy, exact match (generation) and target loss.
"""

from __future__ import annotations

import copy

import pytest
import torch

from workbench import zoo
from workbench.tasks import METRICS, Example, Task, batching, encode_for_training
from workbench.tasks.encoding import prompt_ids
from workbench.tasks.metrics import first_token_ids, normalize_answer

CHOICES = ("apple", "banana", "cherry")
PROMPTS = [  # different lengths; all share the chat header
    "which fruit is red ?",
    "what is one plus two plus three plus four plus five plus six ?",
    "answer A",
    "which colour is a banana : red , green or blue ?",
    "what fruit",
    "one two three four five six one two three four five six one two three four five six",
]
TARGETS = ["red", "ten", "A", "yellow banana", "a", "six"]


@pytest.fixture(autouse=True)
def share_any_prefix(monkeypatch):
    """Short toy prompts: share even a prefix that saves few tokens, so the shared path is exercised."""
    monkeypatch.setattr(batching, "MIN_SAVED", 1)


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-gpt2"])
def model(request):
    return copy.deepcopy(zoo.load(request.param).model).eval()


def task(metric: str, examples, **kw) -> Task:
    return Task("toy", "toy task", metric, train=[], eval=list(examples), **{"max_new_tokens": 6, **kw})


def single(model, ids: list[int]) -> torch.Tensor:
    """Logits (T, V) of one unpadded sequence."""
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


def generate_one(model, ids: list[int], eos: int, pad: int, n: int) -> list[int]:
    """``generate`` on one unpadded prompt. The mask is explicit: without it ``generate`` takes every
    ``pad`` id in the prompt (here ``<|im_end|>``, also the end of each chat turn) for padding."""
    ids = torch.tensor([ids])
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                             do_sample=False, pad_token_id=pad, eos_token_id=eos)
    return out[0, ids.shape[1]:].tolist()


def test_plan_shares_a_prefix_keeps_what_must_be_computed_and_groups_truncated_rows_apart():
    seqs = [[1, 2, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5, 9], [1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 9], [8, 2, 3, 4, 5]]
    plan = batching.plan_batches(seqs, 16, keep=1)
    rows = sorted(i for _, batch in plan for i in batch)
    assert rows == [0, 1, 2, 3]
    prefixes = {tuple(b): p for p, b in plan}
    assert all(p == [1, 2, 3, 4, 5] for p, b in plan if 0 in b or 1 in b or 2 in b)
    assert [p for p, b in plan if 3 in b] == [[]]  # another first token: no shared prefix
    # the last `keep` tokens stay out of the prefix: row 1 has 6 tokens, so keep=3 leaves 3
    assert all(len(p) <= 3 for p, b in batching.plan_batches(seqs[:2], 16, keep=3))
    assert all(len(b) == 1 for _, b in batching.plan_batches(seqs, 1))  # batch size 1
    assert all(p == [] for p, _ in batching.plan_batches(seqs, 16, share=False))
    long = [s for s in prefixes if len(s) > 1]
    assert all(len(b) <= 16 for b in long)


def test_padding_share_closes_batches_of_very_different_lengths():
    seqs = [[1] * 5, [1] * 6, [1] * 40, [1] * 41]
    batches = [b for _, b in batching.plan_batches(seqs, 16, share=False)]
    assert batches == [[0, 1], [2, 3]]


@pytest.mark.parametrize("share", [True, False])
def test_padded_rows_give_the_logits_of_the_unpadded_rows(model, tiny_tokenizer, share):
    probe = task("accuracy", [Example(p, CHOICES[0], CHOICES) for p in PROMPTS])
    seqs = [prompt_ids(tiny_tokenizer, probe, e) for e in probe.eval]
    plan = batching.plan_batches(seqs, 16, keep=1, share=share)
    assert share == any(p for p, _ in plan)
    pad = tiny_tokenizer.pad_token_id
    with torch.no_grad():
        for prefix, batch in plan:
            cache = batching.prefix_cache(model, prefix, torch.device("cpu"))
            out, _ = batching.forward_rows(model, prefix, cache, [seqs[i][len(prefix):] for i in batch], pad,
                                           torch.device("cpu"))
            for row, i in enumerate(batch):
                n = len(seqs[i]) - len(prefix)
                want = single(model, seqs[i])[len(prefix):]  # (n, V)
                torch.testing.assert_close(out.logits[row, -n:], want, rtol=1e-5, atol=1e-5)
            if cache is not None:  # the prefix cache is not changed by a batch that used it
                assert cache.get_seq_length() == len(prefix)


def test_greedy_equals_generate_per_example_with_eos_at_different_steps(model, tiny_tokenizer):
    probe = task("exact_match", [Example(p, "x") for p in PROMPTS])
    seqs = [prompt_ids(tiny_tokenizer, probe, e) for e in probe.eval]
    pad, n = tiny_tokenizer.pad_token_id, 6
    free = [generate_one(model, s, eos=model.config.vocab_size - 1, pad=pad, n=n) for s in seqs]
    # an end-of-turn id that rows produce first at different steps (or never)
    def first(row, t):
        return row.index(t) if t in row else None

    eos = max({t for row in free for t in row}, key=lambda t: len({first(row, t) for row in free}))
    reference = [generate_one(model, s, eos=eos, pad=pad, n=n) for s in seqs]
    stops = {first(row, eos) for row in reference}
    if model.config.model_type == "llama":  # tiny GPT-2 answers every toy prompt alike: one stop step
        assert len(stops) >= 2  # rows stop at different steps (or never)
    for size in (1, 2, 16):
        got = {}
        with torch.no_grad():
            for prefix, batch in batching.plan_batches(seqs, size, keep=1):
                cache = batching.prefix_cache(model, prefix, torch.device("cpu"))
                rows = [seqs[i][len(prefix):] for i in batch]
                new = batching.greedy(model, prefix, cache, rows, pad_id=pad, eos_id=eos, max_new_tokens=n,
                                      device=torch.device("cpu"))
                for row, i in enumerate(batch):
                    got[i] = new[row].tolist()
        for i, want in enumerate(reference):
            ended = want[: want.index(eos) + 1] if eos in want else want
            assert got[i][: len(ended)] == ended
            assert all(t == pad for t in got[i][len(ended):])  # after the end: padding only


@pytest.mark.parametrize("size", [1, 2, 16])
@pytest.mark.parametrize("share", [True, False])
def test_each_metric_kind_equals_the_per_example_path(model, tiny_tokenizer, size, share):
    # multiple choice: the target is each prompt's argmax choice for half of the rows, argmin otherwise
    ids = first_token_ids(tiny_tokenizer, CHOICES)
    probe = task("accuracy", [Example(p, CHOICES[0], CHOICES) for p in PROMPTS])
    picks = []
    for k, e in enumerate(probe.eval):
        scores = single(model, prompt_ids(tiny_tokenizer, probe, e))[-1, ids]
        picks.append(Example(e.prompt, CHOICES[int(scores.argmax() if k % 2 else scores.argmin())], CHOICES))
    # exact match: half of the targets are the per-example greedy answer
    gen = task("exact_match", [Example(p, "x") for p in PROMPTS])
    eos, pad = tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id
    answers = []
    for k, e in enumerate(gen.eval):
        out = generate_one(model, prompt_ids(tiny_tokenizer, gen, e), eos=eos, pad=pad, n=6)
        text = normalize_answer(tiny_tokenizer.decode(out, skip_special_tokens=True))
        answers.append(Example(e.prompt, text if k % 2 == 0 else "zzz"))
    # loss: the token-weighted mean NLL of one example at a time
    losses = task("loss", [Example(p, t) for p, t in zip(PROMPTS, TARGETS, strict=True)])
    total = count = 0
    for f in encode_for_training(tiny_tokenizer, losses, losses.eval):
        labels = torch.tensor([f["labels"]])
        with torch.no_grad():
            out = model(torch.tensor([f["input_ids"]]), labels=labels)
        k = int((labels[:, 1:] != -100).sum())
        total, count = total + float(out.loss) * k, count + k
    with batching.configured(prefix=share, progress=False):
        acc = METRICS.get("accuracy").fn(model, tiny_tokenizer, task("accuracy", picks), picks,
                                         batch_size=size)
        em = METRICS.get("exact_match").fn(model, tiny_tokenizer, task("exact_match", answers), answers,
                                           batch_size=size)
        nll = METRICS.get("loss").fn(model, tiny_tokenizer, losses, losses.eval, batch_size=size)
    assert acc == 3 / 6
    assert em == sum(a.target != "zzz" for a in answers) / 6
    assert nll == pytest.approx(total / count, rel=1e-5)


def test_left_truncated_prompts_are_scored_whole_without_the_shared_prefix(model, tiny_tokenizer):
    examples = [Example(p, t) for p, t in zip(PROMPTS, TARGETS, strict=True)]
    short = task("loss", examples, max_length=20)  # the longer prompts lose their chat header
    features = encode_for_training(tiny_tokenizer, short, examples)
    assert len({f["input_ids"][0] for f in features}) > 1
    total = count = 0
    for f in features:
        labels = torch.tensor([f["labels"]])
        with torch.no_grad():
            out = model(torch.tensor([f["input_ids"]]), labels=labels)
        k = int((labels[:, 1:] != -100).sum())
        total, count = total + float(out.loss) * k, count + k
    got = METRICS.get("loss").fn(model, tiny_tokenizer, short, examples, batch_size=4)
    assert got == pytest.approx(total / count, rel=1e-5)


def test_configured_is_scoped_to_its_block():
    assert batching.settings().prefix and batching.settings().progress
    with batching.configured(progress=False):
        with batching.configured(prefix=False):
            assert batching.settings() == batching.Settings(prefix=False, progress=False)
        assert batching.settings() == batching.Settings(prefix=True, progress=False)
    assert batching.settings() == batching.Settings()
