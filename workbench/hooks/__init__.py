"""Recording: HookPoint marks a place, record() stores what passes, Cache holds it."""

from workbench.hooks.cache import Cache
from workbench.hooks.hook_point import HookPoint
from workbench.hooks.recorder import hook_points, match_hooks, record

__all__ = ["Cache", "HookPoint", "hook_points", "match_hooks", "record"]
