"""What the lab checks before it changes anything, and how it undoes a call that failed midway.

    with rollback(lab):            # a failure inside leaves the lab exactly as it was
        lab.new_adapter(...); fit(...)

``rollback`` removes the adapters and routers the block added, unwraps the modules it wrapped, puts
back what ``use`` applied and the values of the tensors it was asked to keep.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from numbers import Real

import torch
from torch import nn

from workbench.adapters import Adapter, LoraLayer
from workbench.adapters.layer import out_in
from workbench.errors import WorkbenchError
from workbench.registry import Param
from workbench.routing import RoutedBlock


def finite(value, what: str, *, fix: str = "give a finite number") -> float:
    """``float(value)``, refusing anything that is not a finite real number (NaN, inf, strings)."""
    if isinstance(value, bool) or not isinstance(value, Real | torch.Tensor):
        raise WorkbenchError(f"{what} must be a number; got {value!r} ({type(value).__name__}): {fix}")
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise WorkbenchError(f"{what} must be one number; got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    v = float(value)
    if not math.isfinite(v):
        raise WorkbenchError(f"{what} is {v}; it must be a finite number: {fix}")
    return v


def check_model(model, where: str = "Workbench") -> None:
    """A model must be an ``nn.Module``; a name string means the caller wanted ``from_zoo``."""
    if isinstance(model, str | bytes) or hasattr(model, "__fspath__"):
        raise WorkbenchError(
            f"{where}(model=...) takes a model object, got the name {str(model)!r}: use "
            f"Workbench.from_zoo({str(model)!r}) for a zoo model, or load it first "
            "(AutoModelForCausalLM.from_pretrained(...)) and pass the model and its tokenizer"
        )
    if not isinstance(model, nn.Module):
        raise WorkbenchError(
            f"{where}(model=...) takes a torch nn.Module (a transformers model), got "
            f"{type(model).__name__}; load the model first and pass it"
        )


# -- adapters of one lab -------------------------------------------------------------------------------
_OWNER = "_workbench_lab"  # attribute on an Adapter: a weak reference to the lab that holds it


def mark_owner(adapter, lab):
    """Record (or, with ``lab=None``, clear) which lab holds ``adapter``; returns the adapter."""
    setattr(adapter, _OWNER, None if lab is None else weakref.ref(lab))
    return adapter


def check_addable(lab, adapter) -> None:
    """An ``Adapter`` that no other live lab holds (a lab's layers own its factors: sharing one object
    between two labs would make both train and merge the same tensors)."""
    if not isinstance(adapter, Adapter):
        raise WorkbenchError(f"add_adapter takes an Adapter, got {type(adapter).__name__} {adapter!r:.60}; "
                             "to read a folder use lab.load_adapter(path)")
    ref = getattr(adapter, _OWNER, None)
    owner = ref() if ref is not None else None
    if owner is not None and owner is not lab:
        raise WorkbenchError(
            f"adapter {adapter.name!r} belongs to another lab ({owner.name}); add a copy: "
            f"lab.add_adapter(adapter.copy())"
        )


RESERVED = {"base"}  # names no adapter or router may take


def check_fits(adapter: Adapter, modules: dict[str, nn.Module], base_name: str) -> None:
    """Every module the adapter targets exists in the model with the shape of its update."""
    for path, f in adapter.modules.items():
        if path not in modules:
            near = [n for n in modules if n.split(".")[-1] == path.split(".")[-1]][:3]
            raise WorkbenchError(
                f"adapter {adapter.name!r} targets module {path!r}, which this model "
                f"({base_name}) does not have as a linear layer; similar: {near or list(modules)[:3]}"
            )
        out_f, in_f = out_in(modules[path])
        if (f.out_features, f.in_features) != (out_f, in_f):
            raise WorkbenchError(
                f"adapter {adapter.name!r} module {path!r}: ΔW would be "
                f"(out={f.out_features}, in={f.in_features}) but the model's layer is "
                f"(out={out_f}, in={in_f}); it was made for another base model"
            )


# -- routers -----------------------------------------------------------------------------------------
def check_router_params(mechanism: str, params: Mapping, declared: Mapping[str, Param]) -> None:
    """What the contract's scalar checks (``ROUTERS.check``) do not see: numbers nested in list or dict
    parameters are finite, and a whole-number parameter (an int default bounded below) gets an int."""
    for key, value in params.items():
        p = declared[key]
        may_be_infinite = isinstance(p.default, float) and math.isinf(p.default)
        for v in _numbers(value):
            if math.isnan(v) or (math.isinf(v) and not may_be_infinite):
                raise WorkbenchError(f"router {mechanism!r}: {key}={value!r} is not finite; "
                                     "give a finite number")
        whole = isinstance(p.default, int) and not isinstance(p.default, bool) and p.low is not None
        if whole and value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise WorkbenchError(f"router {mechanism!r}: {key}={value!r} must be a whole number "
                                 f"of at least {p.low:g}")


def _numbers(value) -> Iterator[float]:
    if isinstance(value, bool):
        return
    if isinstance(value, Real):
        yield float(value)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _numbers(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _numbers(v)


# -- undoing a failed call -----------------------------------------------------------------------------
@contextmanager
def rollback(lab, keep: Iterable[torch.Tensor] = ()) -> Iterator[None]:
    """Run a block that changes ``lab``; if it raises, put the lab back as it was and re-raise.

    Args:
        keep: tensors the block may change in place (a router's or adapter's weights being trained):
            their values are restored too.
    """
    adapters, routers = dict(lab._adapters), dict(lab._routers)
    wrapped = {p for p, m in lab.model.named_modules() if isinstance(m, LoraLayer | RoutedBlock)}
    composition, last_merge, training = lab._composition, lab.last_merge, lab.model.training
    saved = [(t, t.detach().clone()) for t in keep]
    try:
        yield
    except BaseException:
        for name in [n for n in lab._routers if n not in routers]:
            _quietly(lab.remove_router, name)
        for name in [n for n in lab._adapters if n not in adapters]:
            _quietly(lab.remove_adapter, name)
        new = [(p, m) for p, m in lab.model.named_modules()
               if isinstance(m, LoraLayer | RoutedBlock) and p not in wrapped]
        for path, module in sorted(new, key=lambda pm: -pm[0].count(".")):  # innermost first
            if isinstance(module, LoraLayer) and not module.names and not len(module.routes):
                lab._set_module(path, module.base_layer)
            elif isinstance(module, RoutedBlock) and not len(module.routes):
                lab._set_module(path, module.unwrap())
        with torch.no_grad():
            for t, value in saved:
                t.copy_(value)
        lab.last_merge = last_merge
        _quietly(lab.use, composition)
        lab.model.train(training)
        raise


def _quietly(fn, *args) -> None:
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 -- undoing as much as possible; the original error is raised
        pass
