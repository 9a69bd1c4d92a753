"""TokenRouting: the prompt's tokens coloured by their dominant expert at a chosen module."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import traitlets as t

from widgets._frontend import bundle, stylesheet
from widgets._view import View
from workbench.analysis.token_gates import token_gates
from workbench.errors import WorkbenchError


class TokenRouting(View):
    """Tokens of one prompt, each coloured by the expert with the largest gate weight; hover for weights.

    Built from a cache recorded with ``record="*.hook_route"`` and the prompt's tokens (the gate weights
    are read by ``workbench.analysis.token_gates``). A select in the view chooses the module
    (``module``); Python answers with that module's gate weights as a float32 buffer (tokens × experts).

    Example::

        _, cache = lab.run(prompt, record="*.hook_route")
        tokens = lab.tokenizer.convert_ids_to_tokens(lab.encode(prompt)["input_ids"][0])
        TokenRouting.from_cache(cache, tokens)
    """

    _esm = bundle("token_routing")
    _css = stylesheet("token_routing")

    tokens = t.List(t.Unicode(), help="The prompt's tokens, in order.").tag(sync=True)
    modules = t.List(t.Unicode(), help="Every routed module of the run, '<layer> · <module> · "
                     "<router>'.").tag(sync=True)
    module = t.Unicode(help="The module shown, one of `modules` (the view's select sets it).").tag(sync=True)
    weights = t.Dict(help="{'values': float32 bytes (T, E), 'shape': [T, E], 'module': ...}: the gate "
                     "weights of `module`.").tag(sync=True)
    experts = t.List(t.Unicode(), help="A label per expert (e.g. a bank router's adapter names); empty: "
                     "'expert 0', 'expert 1' ...").tag(sync=True)

    row = 0  # the batch row shown
    _gates: dict[str, np.ndarray] = {}  # module label -> (T, E) gate weights of `row`

    @classmethod
    def from_cache(cls, cache: Mapping, tokens: Sequence[str], *, row: int = 0,
                   experts: Sequence[str] | None = None, **traits) -> TokenRouting:
        """Args:
            cache: a cache recorded with ``record="*.hook_route"``.
            tokens: the tokens of the prompt that was run (one per position).
            row: the batch row to show.
            experts: a label per expert; default: their indices.
        """
        w = cls(**traits)
        w.show(cache, tokens, row=row)
        n = w._gates[w.module].shape[1]
        if experts is not None and len(experts) != n:
            raise WorkbenchError(f"TokenRouting: {len(experts)} expert labels for {n} experts")
        w.experts = [str(e) for e in experts or []]
        return w

    def show(self, cache: Mapping, tokens: Sequence[str], *, row: int = 0) -> None:
        """Show another run (the module chosen stays when the new run has it)."""
        found = {" · ".join(map(str, k)): w for k, w in token_gates(cache, row).items()}  # (T, E) each
        first = next(iter(found.values()))
        if len(tokens) != first.shape[0]:
            raise WorkbenchError(
                f"TokenRouting: {len(tokens)} tokens for records of {first.shape[0]} tokens; "
                "pass the tokens of the prompt that was run"
            )
        self._gates, self.row = found, row
        keep = self.module if self.module in found else next(iter(found))
        with self.hold_sync():
            self.tokens, self.modules = [str(x) for x in tokens], list(found)
            self.module = keep
            self._send_weights()

    @t.validate("module")
    def _check(self, proposal):
        if proposal["value"] not in self._gates:
            raise t.TraitError(f"module must be one of {self.modules[:3]}…; got {proposal['value']!r}")
        return proposal["value"]

    @t.observe("module")
    def _send_weights(self, _change=None) -> None:
        w = self._gates[self.module]  # (T, E) float32
        self.weights = {"values": w.tobytes(), "shape": list(w.shape), "module": self.module}

    def dominant(self) -> list[int]:
        """The dominant expert of each token at ``module`` (what the colours show)."""
        w = np.frombuffer(self.weights["values"], dtype=np.float32).reshape(self.weights["shape"])
        return np.abs(w).argmax(-1).tolist()
