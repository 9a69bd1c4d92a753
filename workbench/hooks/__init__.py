"""Recording: HookPoint marks a place, record() stores what passes, Cache holds it.

RoutingRecord is the value a router hands to its ``hook_route`` point (recorded like any other).
"""

from workbench.hooks.cache import Cache
from workbench.hooks.hook_point import HookPoint
from workbench.hooks.recorder import hook_points, match_hooks, record
from workbench.hooks.routing_record import RoutingRecord

__all__ = ["Cache", "HookPoint", "RoutingRecord", "hook_points", "match_hooks", "record"]
