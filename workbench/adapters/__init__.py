"""Adapters: the factored update, the layer that applies it, targets, and PEFT files."""

from workbench.adapters.adapter import SCALINGS, Adapter, LoraFactors
from workbench.adapters.composition import Composition, composition_of, per_row
from workbench.adapters.init import INITS, new_adapter
from workbench.adapters.layer import LoraLayer
from workbench.adapters.peft_format import read_peft, write_peft
from workbench.adapters.targets import PRESETS, linear_modules, resolve_targets

__all__ = [
    "INITS",
    "PRESETS",
    "SCALINGS",
    "Adapter",
    "Composition",
    "LoraFactors",
    "LoraLayer",
    "composition_of",
    "linear_modules",
    "new_adapter",
    "per_row",
    "read_peft",
    "resolve_targets",
    "write_peft",
]
