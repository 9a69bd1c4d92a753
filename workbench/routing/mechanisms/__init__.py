"""One file per routed mechanism; ``ROUTERS`` imports every module here on its first lookup.

Adding a mechanism is adding a file with a ``@ROUTERS.register(name, ...)`` Router subclass (see
``workbench.routing.base``); nothing here names the files.
"""
