"""What the lab's forward applies: ``use``, ``using`` and ``session`` (a mixin of ``Workbench``).

``session`` is the one place that sets a composition, a train/eval mode and trainable parameters for
a block and puts them back after it: training, evaluation and the views all go through it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Self

from torch import nn

from workbench.adapters import LoraLayer, composition_of, per_row
from workbench.errors import WorkbenchError
from workbench.routing import RoutedBlock


class Composing:
    """``use``, ``using`` and ``session`` of ``Workbench``."""

    def use(self, spec=None, *, rows: list[str | None] | None = None) -> Self:
        """Set what ``lab.model``'s forward applies.

        ``use(None)`` base only; ``use("a")``; ``use(["a", "b"])`` sum; ``use({"a": .7, "b": .3})``;
        ``use(rows=["a", None, "b"])`` one adapter per batch row (a mixed batch).
        """
        comp = composition_of(per_row(rows) if rows is not None else spec, [*self._adapters, *self._routers])
        merged = {n for layer in self.layers.values() for n in layer.merged} & comp.names
        if merged:
            raise WorkbenchError(
                f"{sorted(merged)} are merged into the base weights already; using them again would "
                "apply them twice. Call lab.unmerge() first"
            )
        self._composition = comp
        for module in self.model.modules():
            if isinstance(module, LoraLayer | RoutedBlock):
                module.composition = comp
        return self

    def using(self, spec=None, *, rows: list[str | None] | None = None):
        """``with lab.using("a"): ...`` applies ``a`` inside the block, then restores what was used."""
        return self.session(spec, rows=rows)

    @contextmanager
    def session(self, use=..., *, rows: list[str | None] | None = None, train: bool | None = None,
                trainable: Iterable[nn.Parameter] = (),
                module: nn.Module | None = None) -> Iterator[Self]:
        """Inside the block: apply ``use`` (as ``use()``; ``...`` keeps what is used), put ``module``
        (default ``lab.model``) in train (``train=True``) or eval (``False``) mode, and let ``trainable``
        require gradients. After it, what was used, the mode and each parameter's ``requires_grad``
        come back, and those parameters' ``.grad`` are cleared.
        """
        module = self.model if module is None else module
        before, was_training = self._composition, module.training
        params = list({id(p): p for p in trainable}.values())
        wanted = [p.requires_grad for p in params]
        change = use is not ... or rows is not None
        try:
            for p in params:
                p.requires_grad_(True)
            if change:
                self.use(None if use is ... else use, rows=rows)
            if train is not None:
                module.train(train)
            yield self
        finally:
            for p, w in zip(params, wanted, strict=True):
                p.requires_grad_(w)
                p.grad = None
            if train is not None:
                module.train(was_training)
            if change:
                self.use(before)
