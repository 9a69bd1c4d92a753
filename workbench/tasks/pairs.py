"""Pair sub-tasks: two classes of a real choice task (topic, language) as a binary task of its own.

    cs = pair_task(tasks.load("topic")["topic"], "Computers", "Sports")
    cs.name                      # 'topic_computers_sports'
    cs.description               # 'classify a quote as being about computers or sports'
    cs.train[0].choices          # ('Computers', 'Sports'): the question names the two classes only

The examples are the parent task's examples whose target is one of the two classes (its seeded,
class-balanced split, so train and eval stay disjoint), with the question's first paragraph
rewritten to name the two classes. The description is one plain sentence of what the task asks,
written for the SG-LoRA text encoder (``PAIR_DESCRIPTIONS``). The metric is the loss of the answer
(the target's tokens), a continuous score that a handful of examples can already rank.

Reference: the generation lab's expert tasks (issue 19); SG-LoRA (Li et al., arXiv 2509.10535)
describes each expert task in words.
"""

from __future__ import annotations

from dataclasses import replace

from workbench.errors import WorkbenchError
from workbench.tasks.base import Example, Task

QUESTIONS = {
    "topic": "Which topic is this quote about: {a} or {b}? Answer with the topic only.",
    "language": "Which language is this text in: {a} or {b}? Answer with the language only.",
}
PAIR_DESCRIPTIONS = {
    "topic": "classify a quote as being about {a} or {b}",
    "language": "identify whether a sentence is written in {a} or {b}",
}
CASES = {"topic": str.lower, "language": str}  # topics are common nouns, languages proper names


def describe_pair(parent: str, a: str, b: str) -> str:
    """The sentence that describes the pair task (lower-case topic names, capitalized languages)."""
    if parent not in PAIR_DESCRIPTIONS:
        raise WorkbenchError(f"pair tasks are made from {sorted(PAIR_DESCRIPTIONS)}; got {parent!r}")
    case = CASES[parent]
    return PAIR_DESCRIPTIONS[parent].format(a=case(a), b=case(b))


def pair_task(task: Task, a: str, b: str, *, metric: str = "loss") -> Task:
    """The binary sub-task of ``task`` (``topic`` or ``language``) between classes ``a`` and ``b``.

    Args:
        task: the loaded parent task; a, b: two of its classes (targets), e.g. "Computers", "Sports".
        metric: the sub-task's metric (default the answer's loss; "accuracy" works as well).
    """
    if task.name not in QUESTIONS:
        raise WorkbenchError(f"pair tasks are made from {sorted(QUESTIONS)}; got task {task.name!r}")
    classes = sorted({e.target for e in task.train + task.eval})
    if a == b or a not in classes or b not in classes:
        raise WorkbenchError(
            f"choose two different classes of {task.name!r} from {classes}; got {a!r}, {b!r}"
        )
    question = QUESTIONS[task.name].format(a=a, b=b)

    def keep(examples: list[Example]) -> list[Example]:
        out = []
        for e in examples:
            if e.target in (a, b):
                _, _, body = e.prompt.partition("\n\n")
                out.append(Example(f"{question}\n\n{body}", e.target, (a, b)))
        return out

    return replace(
        task,
        name=f"{task.name}_{a.lower()}_{b.lower()}",
        description=describe_pair(task.name, a, b),
        metric=metric,
        train=keep(task.train),
        eval=keep(task.eval),
    )
