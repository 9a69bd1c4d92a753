"""Route lab: rank-wise experts, adapter mixtures and conditioned adapters behind one registry.

    lab.add_router("smora", "smora", r=64, k=8, targets="all-linear")
    lab.use("smora")
    out, cache = lab.run(prompts, record="*.hook_route")     # one RoutingRecord per module
    adapter = lab.export_router("smora", prompts)            # a static LoRA (exact where it can be)

Every mechanism is a ``Router`` (one file each) registered in ``ROUTERS``; its decisions come out as
``RoutingRecord``s, its auxiliary losses go through ``aux_loss``, and per-batch facts it needs (task
ids, token types, prompt scales) come from ``routing_context``.
"""

from workbench.hooks.routing_record import RoutingRecord
from workbench.routing.base import ROUTERS, Router
from workbench.routing.block import RoutedBlock
from workbench.routing.context import context_value, routing_context
from workbench.routing.dmoerm import DMoERM, pairwise_loss
from workbench.routing.export import export
from workbench.routing.freeze import freeze
from workbench.routing.losses import AUX_LOSSES, aux_loss
from workbench.routing.mechanisms.prompt_scale import constant_scale
from workbench.routing.prompt_scaler import PromptScaler, prompt_states
from workbench.routing.routed import Routed
from workbench.routing.static_form import EXPORTS, StaticForm

__all__ = [
    "AUX_LOSSES",
    "DMoERM",
    "EXPORTS",
    "PromptScaler",
    "ROUTERS",
    "Routed",
    "RoutedBlock",
    "Router",
    "RoutingRecord",
    "StaticForm",
    "aux_loss",
    "constant_scale",
    "context_value",
    "export",
    "freeze",
    "pairwise_loss",
    "prompt_states",
    "routing_context",
]
