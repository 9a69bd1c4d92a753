"""The bank of a router over the lab's own adapters (MeteoRA, Arrow): named, distinct, held, plain LoRA."""

from __future__ import annotations

from workbench.errors import WorkbenchError


def plain_bank(lab, bank, what: str) -> list:
    """The lab's adapters named in ``bank``, in order, checked: a list, no repeats, each held, each plain.

    Args:
        bank: adapter names.
        what: how the errors name the bank, e.g. ``"MeteoRA bank"`` or ``"arrow bank"``.

    Raises:
        WorkbenchError: naming the problem and the fix.
    """
    if not bank or isinstance(bank, str):
        raise WorkbenchError(f"a {what} is a list of the lab's adapter names: pass bank=[names], e.g. "
                             f"bank={list(lab.adapters)[:3] or ['a', 'b']}")
    if len(set(bank)) != len(bank):
        raise WorkbenchError(f"{what} {list(bank)} names an adapter twice; list each adapter once")
    missing = [n for n in bank if n not in lab.adapters]
    if missing:
        raise WorkbenchError(f"{what} names {missing}, which this lab does not hold; it has "
                             f"{list(lab.adapters) or '(no adapters)'}: add or load them first")
    adapters = [lab.adapters[n] for n in bank]
    for a in adapters:
        a.require_plain(f"a {what}")
    return adapters
