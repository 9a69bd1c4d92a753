"""TokenRouting: the prompt's tokens coloured by their dominant expert at a chosen module."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import anywidget
import numpy as np
import traitlets as t

from widgets._frontend import bundle, stylesheet
from workbench.analysis.routing import records
from workbench.errors import WorkbenchError


class TokenRouting(anywidget.AnyWidget):
    """Tokens of one prompt, each coloured by the expert with the largest gate weight; hover for weights.

    Takes a cache recorded with ``record="*.hook_route"`` and the prompt's tokens. A select in the view
    chooses the module (``module``); Python answers with that module's gate weights as a float32
    buffer (tokens × experts).

    Example::

        _, cache = lab.run(prompt, record="*.hook_route")
        TokenRouting(cache, lab.tokenizer.convert_ids_to_tokens(lab.encode(prompt)["input_ids"][0]))
    """

    _esm = bundle("token_routing")
    _css = stylesheet("token_routing")

    tokens = t.List(t.Unicode()).tag(sync=True)
    modules = t.List(t.Unicode()).tag(sync=True)
    module = t.Unicode().tag(sync=True)
    """The module shown, ``"<layer> · <module> · <router>"`` (the view's select sets it)."""
    weights = t.Dict().tag(sync=True)
    """{"values": float32 bytes (T, E), "shape": [T, E], "module": ...} of ``module``."""
    experts = t.List(t.Unicode()).tag(sync=True)
    """A label per expert (e.g. a bank router's adapter names); empty = "expert 0", "expert 1" ..."""

    def __init__(self, cache: Mapping, tokens: Sequence[str], *, row: int = 0,
                 experts: Sequence[str] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.show(cache, tokens, row=row)
        n = self._records[self.module].n_experts
        if experts is not None and len(experts) != n:
            raise WorkbenchError(f"TokenRouting: {len(experts)} expert labels for {n} experts")
        self.experts = [str(e) for e in experts or []]

    def show(self, cache: Mapping, tokens: Sequence[str], *, row: int = 0) -> None:
        """Show another run (the module chosen stays when the new run has it)."""
        found = {" · ".join(map(str, k)): rec for k, rec in records(cache).items()}
        first = next(iter(found.values()))
        if not 0 <= row < first.shape[0] or len(tokens) != first.shape[1]:
            raise WorkbenchError(
                f"TokenRouting: {len(tokens)} tokens, row {row}, for records of (batch, token) = "
                f"{tuple(first.shape[:2])}; pass the tokens of the prompt that was run"
            )
        self._records, self.row = found, row
        keep = self.module if self.module in found else next(iter(found))
        with self.hold_sync():
            self.tokens, self.modules = [str(x) for x in tokens], list(found)
            self.module = keep
            self._send_weights()

    @t.validate("module")
    def _check(self, proposal):
        if proposal["value"] not in self._records:
            raise t.TraitError(f"module must be one of {self.modules[:3]}…; got {proposal['value']!r}")
        return proposal["value"]

    @t.observe("module")
    def _send_weights(self, _change=None) -> None:
        w = self._records[self.module].weights[self.row].detach().float().cpu().numpy()
        w = np.ascontiguousarray(w, dtype=np.float32)
        self.weights = {"values": w.tobytes(), "shape": list(w.shape), "module": self.module}

    def dominant(self) -> list[int]:
        """The dominant expert of each token at ``module`` (what the colours show)."""
        w = np.frombuffer(self.weights["values"], dtype=np.float32).reshape(self.weights["shape"])
        return np.abs(w).argmax(-1).tolist()
