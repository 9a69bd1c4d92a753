"""Held-out prompts of loaded tasks, chat-formatted: what the experiments record routing on."""

from __future__ import annotations

from workbench.tasks import chat_prompt


def held_out_prompts(lab, loaded: dict, n: int) -> dict[str, list[str]]:
    """The first ``n`` held-out prompts of each task (``{name: Task}``), as the model sees them."""
    return {name: [chat_prompt(lab.tokenizer, t, ex) for ex in t.eval[:max(1, n)]]
            for name, t in loaded.items()}
