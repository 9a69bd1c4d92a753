"""What an adapter's lineage says it was trained on: the one reading of ``lineage["tasks"]``.

Every trainer writes the names of the tasks it trained on to ``adapter.lineage["tasks"]``; a merge
writes its sources to ``adapter.lineage["merge"]["sources"]`` (names, not tasks). So::

    own_tasks(adapter)                  # ["arithmetic"]: what this adapter itself was trained on
    tasks_of(merged, lab.adapters)      # ["arithmetic", "topic"]: its own, then its sources'

Evaluation (which adapter owns a task), the dashboard and the JupyterLab sidebar (it reads the
``tasks`` field that ``workbench.session_info`` ships) all read it from here.
"""

from __future__ import annotations

from collections.abc import Mapping

from workbench.adapters.adapter import Adapter

MAX_DEPTH = 4  # merges of merges of ... followed this deep


def own_tasks(adapter: Adapter) -> list[str]:
    """The task names in ``adapter.lineage["tasks"]`` (strings only, in order, once each)."""
    found = adapter.lineage.get("tasks")
    if not isinstance(found, list | tuple):
        return []
    return list(dict.fromkeys(t for t in found if isinstance(t, str)))


def merge_sources(adapter: Adapter) -> list[str]:
    """The names of the adapters a merge was made of (``lineage["merge"]["sources"]``), else ``[]``."""
    merge = adapter.lineage.get("merge")
    sources = merge.get("sources") if isinstance(merge, Mapping) else None
    if not isinstance(sources, list | tuple):
        return []
    names = [s.get("name") if isinstance(s, Mapping) else s for s in sources]
    return [n for n in names if isinstance(n, str) and n]


def tasks_of(adapter: Adapter, others: Mapping[str, Adapter] | None = None, *, _depth: int = 0) -> list[str]:
    """The tasks ``adapter`` was trained on: its own, then (for a merge) its sources', once each.

    Args:
        adapter: the adapter asked about.
        others: name -> Adapter where a merge's sources are looked up (e.g. ``lab.adapters``); a source
            not found there adds nothing.

    Returns:
        Task names in order of first mention (``[]`` when the lineage names none).
    """
    out = dict.fromkeys(own_tasks(adapter))
    if others is not None and _depth < MAX_DEPTH:
        for name in merge_sources(adapter):
            if name in others and others[name] is not adapter:
                out.update(dict.fromkeys(tasks_of(others[name], others, _depth=_depth + 1)))
    return list(out)
