"""One file per routed mechanism; importing this package registers every one of them in ROUTERS."""

import importlib
import pkgutil

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")
