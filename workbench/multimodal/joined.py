"""JoinedLM: a frozen media encoder → projector → a causal LM in a Workbench, with adapters on the LM.

Every example becomes one sequence of embeddings, laid out by the LM's chat template::

    [system + "<|im_start|>user\\n"] [M media tokens] ["\\n" + prompt + assistant header] [target + EOT]
     text (embedded)               media (projected)    text (embedded)                   labels here

``token_types`` (B, T) marks the media positions 1 (language 0); it goes into the routing context
for mask-routed LoRA (MM-LoRA). Subclasses give ``media_tokens(examples) -> (B, M, d)`` and may add
routing values (``routing_values``: the speech model adds WavLLM's prompt scale). The base never
sees the media: its forward is the LM's, on ``inputs_embeds``.

Limits: a sequence longer than the LM's context (``max_position_embeddings``) is an error naming
both lengths (the fix: a shorter prompt); nothing is cut silently.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from workbench.errors import WorkbenchError
from workbench.routing import routing_context
from workbench.tasks.base import Example, Task
from workbench.tasks.encoding import IGNORE_INDEX, chat_prompt, end_of_turn_id, pad_id

MARK = "\x00MEDIA\x00"  # where the media tokens go in the chat text (never tokenized)
VISION, LANGUAGE = 1, 0


@dataclass
class JoinedBatch:
    """One batch of joined sequences (right-padded for training, left-padded for generation).

    Attributes:
        embeds: (B, T, d) input embeddings.
        attention_mask: (B, T) 1 for real positions.
        labels: (B, T) target ids, -100 elsewhere (None for generation).
        token_types: (B, T) 1 at media positions, 0 at text and padding.
        position_ids: (B, T) positions counted from each row's first real position.
        prompt_ids: (B, Lp) the text-only prompt of each row (no media, no answer), right-padded.
        prompt_mask: (B, Lp) its real tokens.
    """

    embeds: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor | None
    token_types: torch.Tensor
    position_ids: torch.Tensor
    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor


class JoinedLM(nn.Module):
    """Base of the vision- and speech-language models.

    Args:
        lab: a ``Workbench`` on a causal LM with a tokenizer (its adapters and routers are the LM's).
        projector: maps the encoder's tokens (B, M, C) to the LM's width (B, M, d).
    """

    def __init__(self, lab, projector: nn.Module):
        super().__init__()
        if lab.tokenizer is None:
            raise WorkbenchError("a joined model needs a lab with a tokenizer (the LM's prompts are text)")
        self.lab, self.projector = lab, projector
        self.lm = lab.model  # registered as a submodule: hook points and parameters are reachable

    # -- subclass interface ------------------------------------------------------------------------
    def media_tokens(self, examples: list) -> torch.Tensor:
        """(B, M, d) media tokens of the examples, in the LM's width."""
        raise NotImplementedError

    def routing_values(self, batch: JoinedBatch) -> dict:
        """Routing-context values for a forward over ``batch`` (token types; more in subclasses)."""
        return {"token_types": batch.token_types, "attention_mask": batch.attention_mask}

    def trainable_front(self) -> list[nn.Parameter]:
        """The front end's trainable parameters (projector, ladder ...): what stage 1 trains."""
        return list(self.projector.parameters())

    # -- building sequences ------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.lab.device

    def _pieces(self, task: Task, example) -> tuple[list[int], list[int], list[int]]:
        tok = self.lab.tokenizer
        text = chat_prompt(tok, task, Example(MARK + "\n" + example.prompt, example.target))
        before, after = text.split(MARK)
        ids = [tok(part, add_special_tokens=False)["input_ids"] for part in (before, after)]
        answer = tok(example.target, add_special_tokens=False)["input_ids"] + [end_of_turn_id(tok)]
        return list(ids[0]), list(ids[1]), list(answer)

    def build(self, items: list[tuple[Task, object]], *, with_target: bool = True) -> JoinedBatch:
        """Embed (task, example) pairs into one batch (right padding with targets, left without)."""
        if not items:
            raise WorkbenchError("no examples to build a batch from")
        media = self.media_tokens([e for _, e in items])  # (B, M, d)
        tok, limit = self.lab.tokenizer, self._context()
        pid = pad_id(tok)
        emb = self.lm.get_input_embeddings()
        rows, prompts = [], []
        for (task, example), m in zip(items, media, strict=True):
            before, after, answer = self._pieces(task, example)
            answer = answer if with_target else []
            total = len(before) + m.shape[0] + len(after) + len(answer)
            if total > limit:
                raise WorkbenchError(
                    f"task {task.name!r}: the sequence needs {total} positions ({len(before) + len(after)} "
                    f"prompt tokens, {m.shape[0]} media tokens, {len(answer)} answer tokens) but the "
                    f"language model's context is {limit}; shorten the prompt"
                )
            ids = torch.tensor(before + after + answer, device=self.device)
            text = emb(ids)  # (L, d)
            n0 = len(before)
            seq = torch.cat([text[:n0], m.to(text.dtype), text[n0:]])  # (L + M, d)
            types = torch.cat([torch.zeros(n0), torch.ones(m.shape[0]), torch.zeros(len(ids) - n0)])
            labels = [IGNORE_INDEX] * (n0 + m.shape[0] + len(after)) + answer
            rows.append((seq, types.long(), torch.tensor(labels)))
            prompts.append(before + after)
        return self._pad(rows, prompts, pid, left=not with_target, with_labels=with_target)

    def _context(self) -> int:
        return int(getattr(self.lm.config, "max_position_embeddings", 1 << 30))

    def _pad(self, rows, prompts, pid: int, *, left: bool, with_labels: bool) -> JoinedBatch:
        B, T, d = len(rows), max(r[0].shape[0] for r in rows), rows[0][0].shape[1]
        embeds = rows[0][0].new_zeros(B, T, d)
        mask = torch.zeros(B, T, dtype=torch.long, device=self.device)
        types = torch.zeros(B, T, dtype=torch.long, device=self.device)
        labels = torch.full((B, T), IGNORE_INDEX, dtype=torch.long, device=self.device)
        for i, (seq, ty, lab) in enumerate(rows):
            n = seq.shape[0]
            span = slice(T - n, T) if left else slice(0, n)
            embeds[i, span], mask[i, span], types[i, span], labels[i, span] = seq, 1, ty.to(self.device), \
                lab.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        Lp = max(len(p) for p in prompts)
        prompt_ids = torch.full((B, Lp), pid, dtype=torch.long, device=self.device)
        prompt_mask = torch.zeros(B, Lp, dtype=torch.long, device=self.device)
        for i, p in enumerate(prompts):
            prompt_ids[i, : len(p)], prompt_mask[i, : len(p)] = torch.tensor(p, device=self.device), 1
        return JoinedBatch(embeds, mask, labels if with_labels else None, types, positions, prompt_ids,
                           prompt_mask)

    # -- running -----------------------------------------------------------------------------------
    def forward(self, batch: JoinedBatch, **kwargs):
        """The LM's output on a built batch, inside the routing context the batch needs."""
        with routing_context(**self.routing_values(batch)):
            return self.lm(inputs_embeds=batch.embeds, attention_mask=batch.attention_mask,
                           position_ids=batch.position_ids, labels=batch.labels, **kwargs)

    def loss(self, items: list[tuple[Task, object]]) -> torch.Tensor:
        """Mean cross-entropy over the answer tokens of the pairs."""
        return self(self.build(items)).loss

    @torch.no_grad()
    def answer(self, task: Task, examples: list, *, batch_size: int = 8,
               max_new_tokens: int | None = None) -> list[str]:
        """Greedy answers (text after the assistant header, special tokens skipped), in order."""
        with self.lab.session(train=False, module=self):  # eval mode, the training flag restored after
            return [text for start in range(0, len(examples), batch_size)
                    for text in self._generate(task, examples[start : start + batch_size],
                                               max_new_tokens or task.max_new_tokens)]

    def _generate(self, task: Task, examples: list, max_new_tokens: int) -> list[str]:
        tok = self.lab.tokenizer
        eot = end_of_turn_id(tok)
        batch = self.build([(task, e) for e in examples], with_target=False)
        values = self.routing_values(batch)
        emb = self.lm.get_input_embeddings()
        B = batch.embeds.shape[0]
        mask, position = batch.attention_mask, batch.position_ids[:, -1:]
        done = torch.zeros(B, dtype=torch.bool, device=self.device)
        out: list[list[int]] = [[] for _ in range(B)]
        cache, inputs, types, positions = None, batch.embeds, batch.token_types, batch.position_ids
        for _ in range(max_new_tokens):
            now = {"token_types": types, "attention_mask": mask[:, -inputs.shape[1]:]}  # this step's tokens
            with routing_context(**(values | now)):
                step = self.lm(inputs_embeds=inputs, attention_mask=mask, position_ids=positions,
                               cache=cache, use_cache=True, logits_to_keep=1)
            token = step.logits[:, -1].argmax(-1)  # (B,)
            for i in range(B):
                if not done[i]:
                    if int(token[i]) == eot:
                        done[i] = True
                    else:
                        out[i].append(int(token[i]))
            if done.all():
                break
            cache = step.cache
            inputs = emb(token)[:, None]  # (B, 1, d)
            types = torch.zeros(B, 1, dtype=torch.long, device=self.device)
            position = position + 1
            positions = position
            mask = torch.cat([mask, torch.ones(B, 1, dtype=mask.dtype, device=self.device)], 1)
        return [tok.decode(ids, skip_special_tokens=True).strip() for ids in out]
