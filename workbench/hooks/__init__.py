"""Recording: HookPoint marks a place, record() stores what passes, Cache holds it; hooks() attaches
plain forward hooks by module-path pattern for the length of a block.

RoutingRecord is the value a router hands to its ``hook_route`` point (recorded like any other).
"""

from workbench.hooks.attach import hooks, match_modules, module_paths
from workbench.hooks.cache import Cache
from workbench.hooks.hook_point import HookPoint
from workbench.hooks.recorder import hook_points, match_hooks, record
from workbench.hooks.routing_record import RoutingRecord

__all__ = [
    "Cache",
    "HookPoint",
    "RoutingRecord",
    "hook_points",
    "hooks",
    "match_hooks",
    "match_modules",
    "module_paths",
    "record",
]
