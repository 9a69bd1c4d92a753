"""PromptWhatIf: edit a prompt, watch a router's token routing change, and freeze it into an adapter."""

from __future__ import annotations

import ipywidgets as ipw

from widgets.token_routing import TokenRouting
from workbench.errors import WorkbenchError


class PromptWhatIf(ipw.VBox):
    """A prompt box, the router's TokenRouting view of it, and (for bank routers) a freeze button.

    Editing the prompt (on Enter / leaving the box, or "route") reruns the router through the engine
    (``lab.run`` with ``*.hook_route`` recorded) and redraws; "freeze" calls
    ``workbench.routing.freeze`` on the current prompt and prints its report.

    Example::

        PromptWhatIf.from_lab(lab, "meteora", "Translate 'good morning' to French, then add 17 and 25.")
    """

    @classmethod
    def from_lab(cls, lab, name: str, prompt: str = "Hello!") -> PromptWhatIf:
        """Args:
            lab: the ``Workbench`` holding the router.
            name: the router to watch (``lab.routers``).
            prompt: the first prompt routed.
        """
        return cls(lab=lab, name=name, prompt=prompt)

    def __init__(self, *, lab, name: str, prompt: str = "Hello!"):
        """Keywords only (``from_lab`` is the constructor to call): a box has children, not traits."""
        if name not in lab.routers:
            raise WorkbenchError(f"no router {name!r} in this lab; it has: {list(lab.routers) or '(none)'}")
        self.lab, self.name = lab, name
        self.prompt = ipw.Textarea(prompt, continuous_update=False, layout=ipw.Layout(width="100%"))
        self.route_button = ipw.Button(description="route", icon="play")
        routers = lab.routers[name].modules.values()
        self.freeze_button = ipw.Button(description="freeze", icon="snowflake-o",
                                        disabled=not lab.routers[name].has("freezable"))
        self.status = ipw.HTML()
        bank = getattr(next(iter(routers)), "bank", None)  # a bank router's experts are adapters
        self.view = TokenRouting.from_cache(*self._route(prompt), experts=bank)
        self.frozen: list = []
        self.prompt.observe(lambda _c: self.update(), "value")
        self.route_button.on_click(lambda _b: self.update())
        self.freeze_button.on_click(lambda _b: self.freeze())
        super().__init__([self.prompt, ipw.HBox([self.route_button, self.freeze_button]), self.view,
                          self.status])

    def _route(self, text: str):
        batch = self.lab.encode(text)
        with self.lab.using(self.name):
            _, cache = self.lab.run(batch, record=f"*.routes.{self.name}.hook_route")
        return cache, self.lab.tokenizer.convert_ids_to_tokens(batch["input_ids"][0])

    def update(self) -> None:
        """Route the prompt now in the box and redraw."""
        self.status.value = "routing…"
        self.view.show(*self._route(self.prompt.value))
        self.status.value = f"{len(self.view.tokens)} tokens routed by {self.name!r}"

    def freeze(self):
        """Freeze the average routing on this prompt into a new adapter; returns (adapter, report)."""
        from workbench.routing import freeze

        name = f"{self.name}_frozen_{len(self.frozen) + 1}"
        self.status.value = "freezing…"
        adapter, report = freeze(self.lab, self.name, [self.prompt.value], name=name)
        self.frozen.append(adapter)
        self.status.value = (f"added adapter <b>{name}</b>: top-1 agreement with the routed model "
                             f"{report['top1_agreement']:.2f}, relative logit error "
                             f"{report['rel_logit_error']:.3f}, KL {report['kl']:.4f}")
        return adapter, report
