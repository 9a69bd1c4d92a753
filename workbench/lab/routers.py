"""The lab's routers: add a routed mechanism, take it out, save and load it (a mixin of ``Workbench``).

A router is used like an adapter (``lab.use("smora")``); it lives in the wrapped modules' ``routes``
(linear level) or in a ``RoutedBlock`` wrapping a whole block (block level).
"""

from __future__ import annotations

from pathlib import Path

import torch

from workbench.adapters import Adapter, LoraLayer, resolve_targets
from workbench.errors import WorkbenchError
from workbench.lab.checks import RESERVED, check_router_params, rollback
from workbench.routing import ROUTERS, Routed, RoutedBlock
from workbench.routing.block import resolve_blocks
from workbench.routing.export import export
from workbench.routing.files import REPLAY, read_config, read_training, read_weights, write_routed


class RouterShelf:
    """``add_router``, ``remove_router``, ``export_router``, ``as_adapters``, ``save_router``, ``load_router``
    of ``Workbench``."""

    last_export: dict | None = None  # the report of the last ``export_router`` (``routing.export``)

    def add_router(self, name: str, mechanism: str, targets: str | list[str] | None = None, *,
                   seed: int = 0, **params) -> Routed:
        """Add a routed mechanism (``workbench.routing.ROUTERS``) on ``targets``; ``use(name)`` applies it.

        Example:
            >>> lab.add_router("smora", "smora", r=64, k=8, targets="all-linear")

        Args:
            mechanism: a registered router name; ``params`` go to its constructor.
            targets: linear targets (presets, suffixes, regexes) for linear-level routers, block-name
                suffixes (``"mlp"``) for block-level ones; default: the mechanism's own.
            seed: seeds every random initialisation (one generator per module, in model order).
        """
        if name in self._adapters or name in self._routers or name in RESERVED:
            raise WorkbenchError(f"the name {name!r} is taken in this lab (or reserved); pick another")
        if not isinstance(name, str) or not name.isidentifier():
            raise WorkbenchError(f"router name {name!r} is not a Python identifier; "
                                 "use letters, digits and _")
        cls = ROUTERS.get(mechanism)
        ROUTERS.check(mechanism, params)  # unknown names, bounds, choices, required ones: before any work
        check_router_params(mechanism, params, ROUTERS.info(mechanism).params)  # nested numbers, ints
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise WorkbenchError(f"seed must be a whole number, got {seed!r}")
        with rollback(self):
            return self._add_router(name, mechanism, cls, targets, seed, params)

    def _add_router(self, name, mechanism, cls, targets, seed, params) -> Routed:
        targets = cls.targets_for(self, **params) if targets is None else targets
        paths = (resolve_blocks(self.model, targets) if cls.level == "block"
                 else resolve_targets(self.model, targets))
        routed = Routed(name, mechanism, {"targets": targets, "seed": seed, **params})
        for i, path in enumerate(paths):  # build every router before touching the model
            module = self.model.get_submodule(path) if cls.level == "block" else self._wrap(path)
            router = cls.build(path=path, module=module, lab=self,
                               generator=torch.Generator().manual_seed(seed * 1_000_003 + i), **params)
            router.owner = name
            routed.modules[path] = router.to(self.device).train(self.model.training)
        for path, router in routed.modules.items():
            holder = self._wrap(path, RoutedBlock) if cls.level == "block" else self.layers[path]
            holder.routes[name] = router
        self._routers[name] = routed
        return routed

    def remove_router(self, name: str) -> Routed:
        """Take a router out of every module (blocks it alone wrapped are unwrapped) and return it."""
        if name not in self._routers:
            raise WorkbenchError(f"no router {name!r} in this lab; it has: {list(self._routers) or '(none)'}")
        if name in self._composition.names:
            self.use(None)
        for path, module in list(self.model.named_modules()):
            if isinstance(module, LoraLayer | RoutedBlock) and name in module.routes:
                del module.routes[name]
                if isinstance(module, RoutedBlock) and not len(module.routes):
                    self._set_module(path, module.unwrap())
        return self._routers.pop(name)

    def export_router(self, name: str, prompts=None, *, adapter_name: str | None = None, context=None,
                      batch_size: int = 8, add: bool = True) -> Adapter:
        """A router as one static LoRA adapter (``workbench.routing.export``): exact where its configuration
        makes the update input-independent, else at its decisions averaged over ``prompts``.

        Example:
            >>> a = lab.export_router("smora", ["Hello", "2 + 3 ="])
            >>> a.lineage["distance"]["rel_logit_error"]     # measured on the prompts
            >>> lab.save_adapter(a, "out/smora_static")      # a PEFT directory

        Args:
            prompts: texts or a dict of tensors: the tokens to average over and to measure the distance
                on (needed unless the export is exact).
            adapter_name: the adapter's name (default ``<name>_export``).
            context: the routing context the router reads (token types, masks, σ, context vectors): a
                dict, or a function batch -> dict.
            add: keep the adapter in the lab (False: measured in the lab, then taken out).

        Returns:
            The adapter; its lineage holds ``exact`` and ``distance`` (``rel_logit_error``, ``kl``,
            ``top1_agreement``, ``tokens``) and the lab keeps the whole report in ``last_export``.
        """
        with rollback(self):
            adapter, self.last_export = export(self, name, prompts, name=adapter_name, context=context,
                                               batch_size=batch_size)
        if not add:
            self.remove_adapter(adapter.name)
        return adapter

    def as_adapters(self, names, prompts=None, *, context=None) -> dict[str, Adapter]:
        """Name -> Adapter for the analyses (angles, spectra, interference): adapters as they are, routers
        through ``export_router`` (not kept in the lab; exact where they can be, else averaged over
        ``prompts``).

        Example:
            >>> wb.analysis.angles(lab.as_adapters(["arith", "topic", "smora"], prompts=texts))
        """
        names = [names] if isinstance(names, str) else list(names)
        unknown = [n for n in names if n not in self._adapters and n not in self._routers]
        if unknown:
            raise WorkbenchError(f"{unknown} are neither adapters nor routers of this lab; it has adapters "
                                 f"{list(self._adapters) or '(none)'} and routers "
                                 f"{list(self._routers) or '(none)'}")
        out = {}
        for n in names:
            if n in self._routers:
                taken = {*self._adapters, *self._routers}
                tmp = next(f"{n}_export{i or ''}" for i in range(len(taken) + 1)
                           if f"{n}_export{i or ''}" not in taken)
                exported = self.export_router(n, prompts, adapter_name=tmp, context=context, add=False)
                exported.name = n
                out[n] = exported
            else:
                out[n] = self._adapters[n]
        return out

    def save_router(self, name: str, path: str | Path, *, overwrite: bool = False, trainer=None) -> Path:
        """Write a router (its mechanism, parameters and weights, and its training history) atomically.

        Args:
            trainer: the ``MultiTaskTrainer`` (or anything with ``optimizer``, ``scheduler``,
                ``step_index``, ``history``) training it: its optimizer state, schedule and step are
                saved too, so ``load_router`` gives them back (``routed.training_state``) to resume.
        """
        if name not in self._routers:
            raise WorkbenchError(f"no router {name!r} in this lab; it has: {list(self._routers) or '(none)'}")
        routed = self._routers[name]
        if trainer is not None:
            if not getattr(trainer, "name", name) == name or not hasattr(trainer, "optimizer"):
                raise WorkbenchError(f"trainer= must be the trainer of router {name!r} (with an optimizer)")
            routed.history = trainer.history
        return write_routed(routed, path, base_fingerprint=self.fingerprint, overwrite=overwrite,
                            optimizer=getattr(trainer, "optimizer", None),
                            scheduler=getattr(trainer, "scheduler", None),
                            step=getattr(trainer, "step_index", None))

    def load_router(self, path: str | Path, name: str | None = None, *, check_base: bool = True) -> Routed:
        """Add a router saved by ``save_router`` (a bank router needs its adapters in the lab first)."""
        config = read_config(path)
        if not isinstance(config.get("mechanism"), str) or not isinstance(config.get("params"), dict):
            raise WorkbenchError(f"{path}: router.json needs \"mechanism\" (a string) and \"params\" (an "
                                 "object); the file is damaged: save the router again")
        if check_base and config.get("base_fingerprint") not in (None, self.fingerprint):
            raise WorkbenchError(
                f"router {path} was trained on a base with fingerprint {config['base_fingerprint']}, "
                f"but this lab's base is {self.fingerprint}; load it on its own base (or check_base=False)"
            )
        params = dict(config["params"])
        params.pop("training", None)
        replays = {k: params.pop(k) for k in list(params) if k in REPLAY}  # gained after building
        weights = read_weights(path)
        history, training_state = read_training(path)
        with rollback(self):
            routed = self.add_router(name or config.get("name"), config["mechanism"], **params)
            for key, value in replays.items():
                REPLAY[key](routed, value)
            try:
                routed.load_state_dict(weights)
            except (RuntimeError, KeyError, ValueError) as e:
                raise WorkbenchError(
                    f"{path}: the saved weights do not fit {config['mechanism']} ({e})") from None
        if "training" in config["params"]:
            routed.params["training"] = config["params"]["training"]
        routed.history, routed.training_state = history, training_state
        return routed
