"""View: the one constructor convention of the live widgets.

A widget is built by a ``from_<source>`` classmethod named after what it reads (``from_lab``,
``from_adapters``, ``from_frame``, ``from_cache``, ``from_run``, ``from_trainer`` ...). ``__init__``
takes the synced traits as keywords and nothing else, so ``type(w)(**traits)`` rebuilds a view and the
dashboard and the docs can read every trait (each one carries ``help=``). What a view needs besides its
traits (frames, adapters, a model, a trainer) is attached by its ``from_*`` constructor before any user
trait is applied.
"""

from __future__ import annotations

import anywidget

from workbench.errors import WorkbenchError


class View(anywidget.AnyWidget):
    """An anywidget whose ``__init__`` takes synced traits as keywords only (see the module docstring)."""

    def __init__(self, *args, **traits) -> None:
        if args:
            name = type(self).__name__
            ways = " or ".join(f"{name}.{c}(...)" for c in constructors(type(self)))
            raise WorkbenchError(f"{name}(...) takes traits as keywords only; build one with {ways}")
        super().__init__(**traits)

    @classmethod
    def trait_docs(cls) -> dict[str, str]:
        """Synced trait -> its ``help=`` text, in declaration order (what the docs and the dashboard show)."""
        traits = cls.class_traits()
        return {n: traits[n].help for n in synced(cls)}

    def _apply(self, traits: dict) -> None:
        """Set user-given traits after the backing state is attached (validators and observers run)."""
        with self.hold_sync():
            for k, v in traits.items():
                setattr(self, k, v)


def constructors(cls: type) -> list[str]:
    """The names of the ``from_*`` classmethods of ``cls`` (its documented constructors)."""
    return sorted(n for n in dir(cls) if n.startswith("from_") and callable(getattr(cls, n)))


def synced(cls: type) -> list[str]:
    """The public synced traits ``cls`` adds to ``anywidget.AnyWidget`` (what the dashboard twins)."""
    base = set(anywidget.AnyWidget.class_trait_names())
    return [n for n in cls.class_trait_names(sync=True) if n not in base and not n.startswith("_")]
