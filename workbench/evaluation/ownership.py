"""Which adapter owns a task: the one whose lineage says it was trained on it (else the one named so).

"Owner" is what a merge is compared with on a task: the solo adapter that was trained for it. Only an
adapter's own lineage counts (``own_tasks``), not its merge sources': a merge owns no task.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from workbench.adapters import Adapter
from workbench.adapters.lineage import own_tasks


def owner(task: str, adapters: Mapping[str, Adapter], among: Iterable[str] | None = None) -> str | None:
    """The first adapter (of ``among``, default all of ``adapters``) trained on ``task``, if any.

    When no lineage names the task, the adapter named like the task owns it (adapters loaded from plain
    PEFT directories carry no lineage; the ready adapters are named after their tasks).

    Args:
        task: a task name.
        adapters: name -> Adapter (``lab.adapters``).
        among: the names to choose from, in order of preference.
    """
    names = [n for n in (adapters if among is None else among) if n in adapters]
    for n in names:
        if task in own_tasks(adapters[n]):
            return n
    return task if task in names else None


def owners(tasks: Iterable[str], adapters: Mapping[str, Adapter],
           among: Iterable[str] | None = None) -> dict[str, str | None]:
    """``{task: owner(task, adapters, among)}`` for each task, in order."""
    among = None if among is None else list(among)
    return {t: owner(t, adapters, among) for t in tasks}
