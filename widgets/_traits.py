"""Trait validation shared by the widgets that choose among a set of named adapters."""

from __future__ import annotations

import traitlets as t


def known_names(proposal, names: list[str]):
    """A ``@t.validate`` body: the proposed names (a list, or a dict's keys) must all be in ``names``."""
    unknown = [n for n in proposal["value"] if n not in names]
    if unknown:
        raise t.TraitError(f"{proposal['trait'].name}: unknown adapters {unknown}; known: {names}")
    return proposal["value"]
