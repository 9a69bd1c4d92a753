"""The discriminator: a LoRA on the source model that answers "is this a real input of the task?".

Its training data is a binary choice ``Task`` built from text alone: each input (a real one, or one the
synthesizer wrote) becomes the question ``QUESTION`` with the choices ``("yes", "no")`` and the target
"yes" for real, "no" for synthetic, in the task's own prompt format (system prompt, template). It trains
through the project's one loop (``lab.train_lora``: the answer token's loss, the prompt masked) and is
scored as the ``accuracy`` metric scores a choice: the first token of each choice after the prompt.
``real_probability`` turns the two first-token logits into ``p(real) = softmax(l_yes, l_no)[0]``.

The classes are balanced by repeating the smaller one (cyclically, after a seeded shuffle), so a
discriminator that answers one class always is not the easy optimum.

Reference: Wang et al., "Trans-LoRA: towards data-free Transferable Parameter Efficient Finetuning",
NeurIPS 2024 (arXiv 2405.17258): a discriminator LoRA on the source model, a prompted yes/no
classifier trained on real vs synthetic samples. Deviations: one round (the paper can alternate
generation and discriminator training); the question wording is ours; class balance by repetition.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

from workbench.errors import WorkbenchError
from workbench.tasks import Example, Task
from workbench.tasks.batching import forward_rows
from workbench.tasks.encoding import pad_id, prompt_ids
from workbench.tasks.metrics import first_token_ids

CHOICES = ("yes", "no")
"""(real, synthetic): the discriminator's answers; their first tokens must differ for the tokenizer."""
QUESTION = "Is the following a real input of the task{about}? Answer yes or no.\n\n{text}"


def question(task: Task, text: str) -> str:
    """The discriminator's prompt about ``text``."""
    about = f" ({task.description})" if task.description else ""
    return QUESTION.format(about=about, text=text)


def _texts(items: Sequence[Example | str]) -> list[str]:
    return [e.prompt if isinstance(e, Example) else str(e) for e in items]


def discriminator_task(task: Task, real: Sequence[Example | str], synthetic: Sequence[Example | str], *,
                       choices: tuple[str, str] = CHOICES, seed: int = 0) -> Task:
    """The binary task "real or synthetic?" on inputs of ``task`` (accuracy metric, two choices).

    Args:
        real, synthetic: inputs (Examples: their ``prompt``; or strings).
        choices: (answer for real, answer for synthetic).
        seed: the shuffle (and which examples of the smaller class repeat).

    Raises:
        WorkbenchError: a class is empty, or the two choices are the same.
    """
    real, synthetic = _texts(real), _texts(synthetic)
    if not real or not synthetic:
        raise WorkbenchError(f"the discriminator needs real and synthetic inputs; got {len(real)} real and "
                             f"{len(synthetic)} synthetic: give task.train examples and synthesize some")
    if len(choices) != 2 or choices[0] == choices[1]:
        raise WorkbenchError(f"choices={choices!r} must be two different answers (real, synthetic)")
    rng = random.Random(f"discriminator:{seed}")
    rng.shuffle(real)
    rng.shuffle(synthetic)
    size = max(len(real), len(synthetic))
    rows = [Example(question(task, real[i % len(real)]), choices[0], choices) for i in range(size)]
    rows += [Example(question(task, synthetic[i % len(synthetic)]), choices[1], choices) for i in range(size)]
    rng.shuffle(rows)
    return Task(f"{task.name}_discriminator", f"real or synthetic inputs of {task.name}", "accuracy",
                train=rows, eval=rows, system=task.system, max_new_tokens=1, max_length=task.max_length)


def train_discriminator(lab, name: str, task: Task, real: Sequence[Example | str],
                        synthetic: Sequence[Example | str], *, choices: tuple[str, str] = CHOICES,
                        seed: int = 0, **train_kwargs):
    """Train the discriminator LoRA ``name`` on ``lab`` through the one loop (``lab.train_lora``).

    ``train_kwargs`` go to ``train_lora`` (``r``, ``steps``, ``lr``, ``targets``, ``progress`` ...).
    Returns its ``TrainResult``; the adapter's lineage gains ``discriminator: {n_real, n_synthetic,
    choices}``.
    """
    first_token_ids(lab.tokenizer, choices)  # refuses choices this tokenizer cannot tell apart, first
    dtask = discriminator_task(task, real, synthetic, choices=choices, seed=seed)
    result = lab.train_lora(name, dtask, seed=seed, **train_kwargs)
    result.adapter.lineage["discriminator"] = {"task": task.name, "n_real": len(real),
                                               "n_synthetic": len(synthetic), "choices": list(choices)}
    return result


@torch.no_grad()
def real_probability(lab, discriminator: str | None, task: Task, inputs: Sequence[Example | str], *,
                     choices: tuple[str, str] = CHOICES, batch_size: int = 16) -> torch.Tensor:
    """``p(real)`` of each input under ``lab`` using ``discriminator``: the softmax of the two choices'
    first-token logits after the discriminator's prompt, taken at the real answer. (N,) float32."""
    texts = _texts(inputs)
    if not texts:
        return torch.zeros(0)
    tok = lab.tokenizer
    ids = first_token_ids(tok, choices)
    fmt = discriminator_task(task, texts[:1], texts[:1], choices=choices)  # the prompt format
    prompts = [prompt_ids(tok, fmt, Example(question(task, t), choices[0], choices)) for t in texts]
    out = []
    model, was = lab.model, lab.model.training
    with lab.using(discriminator):
        model.eval()
        try:
            for s in range(0, len(prompts), batch_size):
                rows = prompts[s:s + batch_size]
                o, _ = forward_rows(model, [], None, rows, pad_id(tok), lab.device, keep=1)
                logits = o.logits[:, -1, ids].float()  # (B, 2)
                out.append(logits.softmax(-1)[:, 0].cpu())
        finally:
            model.train(was)
    return torch.cat(out)  # (N,)
