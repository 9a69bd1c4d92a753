"""Workbench: one base model, many named adapters, and what its forward pass applies.

    lab = Workbench.from_zoo("smollm2-135m")
    lab.load_adapter("adapters/topic")
    lab.use({"topic": 0.7, "arithmetic": 0.3})     # lab.model's forward now applies that sum
    out, cache = lab.run("Hello", record=["*.hook_rank.*"])
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import torch
from torch import nn

from workbench import zoo
from workbench.adapters import (
    Adapter,
    Composition,
    LoraLayer,
    linear_modules,
    new_adapter,
    read_peft,
    resolve_targets,
    write_peft,
)
from workbench.adapters.base_copies import check_base_copies, check_not_tied
from workbench.adapters.layer import out_in
from workbench.adapters.param_layer import install_params
from workbench.adapters.peft_extras import peft_extras
from workbench.adapters.targets import adaptable_modules
from workbench.errors import WorkbenchError
from workbench.evaluation import evaluate
from workbench.hooks import Cache
from workbench.hooks import record as record_hooks  # `run` has a parameter named `record`
from workbench.lab.checks import (
    RESERVED,
    check_addable,
    check_fits,
    check_model,
    finite,
    mark_owner,
    rollback,
)
from workbench.lab.composing import Composing
from workbench.lab.extracting import Extracting
from workbench.lab.routers import RouterShelf
from workbench.lab.serving import Serving
from workbench.lab.tracking import Tracking
from workbench.merging import merge
from workbench.merging.base import get_method
from workbench.training import train_lora, train_multitask, train_router
from workbench.zoo import fingerprint as fingerprint_of


class Workbench(RouterShelf, Composing, Extracting, Tracking, Serving):
    """Wraps any transformers model (or any nn.Module with Linear/Conv1D layers) for adapter work.

    Args:
        model: the base model. Its linear modules are wrapped in place by ``LoraLayer`` when adapters
            target them; ``detach`` puts the originals back. Base weights change only inside
            ``merge_into_base``/``unmerge``, which restore them exactly.
        tokenizer: its tokenizer (needed for text inputs, training and evaluation).
        name: a label for the base (the zoo name when built by ``from_zoo``).
        fingerprint: the base weights' fingerprint (computed when not given).
    """

    def __init__(self, model: nn.Module, tokenizer=None, *, name: str | None = None,
                 fingerprint: str | None = None):
        check_model(model)
        self.model = model
        self.tokenizer = tokenizer
        self.name = name or getattr(getattr(model, "config", None), "name_or_path", None) \
            or type(model).__name__
        self.fingerprint = fingerprint or fingerprint_of(model)
        self._adapters: dict[str, Adapter] = {}
        self._routers: dict = {}  # name -> workbench.routing.Routed
        self._composition = Composition()
        self.last_merge = None  # the workbench.merging.MergeResult of the last ``merge`` call
        self.last_extract = None  # the workbench.merging.extract.ExtractResult of the last ``extract``

    @classmethod
    def from_zoo(cls, name: str) -> Workbench:
        """A lab on a zoo model: ``Workbench.from_zoo("smollm2-135m")``."""
        z = zoo.load(name)
        return cls(z.model, z.tokenizer, name=name, fingerprint=z.fingerprint)

    def __repr__(self) -> str:
        routers = f", routers={list(self._routers)}" if self._routers else ""
        return (f"Workbench({self.name!r}, adapters={list(self._adapters)}{routers}, "
                f"using={self.active!r})")

    # -- what is here ----------------------------------------------------------------------------
    @property
    def adapters(self) -> Mapping[str, Adapter]:
        """Name -> Adapter (read-only view; add with add_adapter/load_adapter/train_lora)."""
        return MappingProxyType(self._adapters)

    @property
    def routers(self) -> Mapping:
        """Name -> ``workbench.routing.Routed`` (read-only view; add with ``add_router``)."""
        return MappingProxyType(self._routers)

    @property
    def layers(self) -> dict[str, LoraLayer]:
        """Path -> LoraLayer for every wrapped module."""
        return {n: m for n, m in self.model.named_modules() if isinstance(m, LoraLayer)}

    @property
    def active(self) -> Composition:
        return self._composition

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def shapes(self, targets: str | list[str]) -> dict[str, tuple[int, int]]:
        """Path -> (out, in) of the modules ``targets`` resolves to."""
        modules = linear_modules(self.model)
        return {path: out_in(modules[path]) for path in resolve_targets(self.model, targets)}

    # -- wrapping --------------------------------------------------------------------------------
    def attach(self, targets: str | list[str]) -> list[str]:
        """Wrap the target modules (presets, suffixes or regexes) so they carry hook points."""
        paths = resolve_targets(self.model, targets)
        for p in paths:
            self._wrap(p)
        return paths

    def detach(self, targets: str | list[str] | None = None) -> list[str]:
        """Put original modules back: all of them (removing every adapter), or only ``targets``.

        With ``targets``, only modules that hold no adapter are unwrapped; one that still holds an
        adapter is an error naming it (remove the adapter first). Base weights are untouched.
        """
        layers = self.layers
        if targets is None:
            for name in list(self._routers):
                self.remove_router(name)
            for name in list(self._adapters):
                self.remove_adapter(name)
            paths = list(layers)
        else:
            paths = [p for p in resolve_targets(self.model, targets) if p in layers]
            busy = {p: layers[p].held + list(layers[p].routes) for p in paths
                    if layers[p].held or len(layers[p].routes)}
            if busy:
                path, names = next(iter(busy.items()))
                raise WorkbenchError(
                    f"module {path!r} still holds adapter(s) {names}; remove_adapter them first"
                )
        for path in paths:
            self._set_module(path, layers[path].base_layer)
        return paths

    def _wrap(self, path: str, wrapper: type = LoraLayer):
        """The module at ``path`` wrapped in ``wrapper`` (LoraLayer, or RoutedBlock for a block)."""
        m = self.model.get_submodule(path)
        if isinstance(m, wrapper):
            return m
        wrapped = wrapper(m, path)
        wrapped.composition = self._composition
        self._set_module(path, wrapped)
        return wrapped

    def _set_module(self, path: str, module: nn.Module) -> None:
        parent, _, child = path.rpartition(".")
        setattr(self.model.get_submodule(parent) if parent else self.model, child, module)

    # -- adapters --------------------------------------------------------------------------------
    def add_adapter(self, adapter: Adapter, *, check_base: bool = True) -> Adapter:
        """Add ``adapter`` to the lab (not yet used: call ``use``). Checks everything first.

        Raises:
            WorkbenchError: name taken, made for another base (fingerprint), unknown module or
                mismatched shapes. Nothing is changed when it raises.
        """
        check_addable(self, adapter)
        if adapter.name in self._adapters or adapter.name in self._routers or adapter.name in RESERVED:
            raise WorkbenchError(
                f"an adapter named {adapter.name!r} is already in this lab (or reserved); "
                "pass name=... to load it under another name"
            )
        if check_base and adapter.base_fingerprint and adapter.base_fingerprint != self.fingerprint:
            raise WorkbenchError(
                f"adapter {adapter.name!r} was made for a base with fingerprint "
                f"{adapter.base_fingerprint}, but this lab's base ({self.name}) is {self.fingerprint}; "
                "load it on its own base, or pass check_base=False if you know the shapes agree"
            )
        check_fits(adapter, adaptable_modules(self.model), self.name)
        check_base_copies(adapter, self.model)  # peft's saved copies of base weights must equal ours
        for path in adapter.modules:
            self._wrap(path).add(adapter)
        install_params(self.model, self._wrap, adapter)  # trained biases, modules_to_save, tokens
        if adapter.base_fingerprint is None:
            adapter.base_fingerprint = self.fingerprint
        mark_owner(adapter, self)
        self._adapters[adapter.name] = adapter
        self._record_added(adapter)
        return adapter

    def new_adapter(self, name: str, *, r: int = 8, alpha: float | None = None,
                    targets: str | list[str] = "attention", init: str = "lora",
                    scaling: str = "standard", seed: int = 0) -> Adapter:
        """Create and add a fresh adapter on ``targets`` (see ``workbench.adapters.INITS``)."""
        adapter = new_adapter(
            name, self.shapes(targets), r=r, alpha=alpha, scaling=scaling, init=init, seed=seed,
            base_fingerprint=self.fingerprint,
            lineage={"method": "new", "init": init, "seed": seed, "targets": targets},
        )
        with rollback(self):
            return self.add_adapter(adapter)

    def remove_adapter(self, name: str) -> Adapter:
        """Remove an adapter from every layer (unmerging it first if merged) and return it."""
        self._get(name)  # a clear error for unknown names
        if name in self._composition.names:
            self.use(None)
        for layer in self.layers.values():
            if name in layer.held:
                layer.remove(name)
        return mark_owner(self._adapters.pop(name), None)

    def _get(self, name_or_adapter: str | Adapter, *, own: bool = True) -> Adapter:
        """The adapter of this lab named so (or this Adapter, when ``own``: it must be this lab's)."""
        if isinstance(name_or_adapter, Adapter):
            a = name_or_adapter
            if own and self._adapters.get(a.name) is not a:
                raise WorkbenchError(
                    f"adapter {a.name!r} is not one of this lab's adapters (it belongs to another lab, "
                    f"or was never added); add it with lab.add_adapter(adapter.copy()) or pass a name "
                    f"of this lab: {list(self._adapters) or '(none)'}"
                )
            if not own and a.base_fingerprint not in (None, self.fingerprint):
                raise WorkbenchError(
                    f"adapter {a.name!r} was made on another base (fingerprint {a.base_fingerprint}, "
                    f"this lab's is {self.fingerprint}); save it from the lab it belongs to"
                )
            return a
        if not isinstance(name_or_adapter, str):
            raise WorkbenchError(f"give an adapter name (a string) or an Adapter; got {name_or_adapter!r}")
        try:
            return self._adapters[name_or_adapter]
        except KeyError:
            raise WorkbenchError(
                f"no adapter {name_or_adapter!r} in this lab; it has: {list(self._adapters) or '(none)'}"
            ) from None

    # -- merging adapters into a new one -----------------------------------------------------------
    def merge(self, names: list[str], method: str = "task_arithmetic", weights: list[float] | None = None,
              *, name: str | None = None, **params) -> Adapter:
        """Merge adapters of this lab into a new one (``workbench.merging.MERGES``) and add it.

        Example:
            >>> m = lab.merge(["arith", "topic"], method="ties", weights=[1, 1], density=0.2)

        ``params`` go to the method (``workbench.merging.method_params(method)``); a method that
        trains (``cat_learned``) gets this lab. The adapter's lineage holds the method, parameters,
        weights, seed, sources and total error; ``lab.last_merge`` keeps the whole ``MergeResult``
        (with the per-module error frame). The sources are not changed.
        """
        if isinstance(names, str):
            raise WorkbenchError(f"merge takes a list of adapter names, got the string {names!r}")
        if not isinstance(names, list | tuple) or not names:
            raise WorkbenchError(f"merge takes a non-empty list of adapter names, got {names!r}")
        sources = [self._get(n) for n in names]
        if name is not None and (name in self._adapters or name in self._routers or name in RESERVED):
            raise WorkbenchError(f"the name {name!r} is taken in this lab (or reserved); pick another")
        if "lab" in get_method(method).params and params.get("lab") is None:
            params["lab"] = self
        with rollback(self), self._recording_as("merged"):
            result = merge(sources, method, weights, name=name, **params)
            self.add_adapter(result.adapter)
            self.last_merge = result
        return result.adapter

    # -- merging into the base weights -------------------------------------------------------------
    def merge_into_base(self, name: str, weight: float = 1.0) -> None:
        """Fold ``weight``·ΔW of an adapter into the base weights (faster inference); exact to undo."""
        name = self._get(name).name
        weight = finite(weight, "merge_into_base weight", fix="e.g. weight=1.0")
        holding = [layer for layer in self.layers.values() if name in layer.held]
        for layer in holding:  # every check before the first change
            layer.check_merge(name)
            check_not_tied(self.model, layer)
        if name in self._composition.names:
            self.use(None)
        done = []
        try:
            for layer in holding:
                layer.merge(name, weight)
                done.append(layer)
        except BaseException:
            for layer in done:
                layer.unmerge(name)
            raise

    def unmerge(self, name: str | None = None) -> None:
        """Undo ``merge_into_base`` for one adapter (or all): the base weights come back exactly."""
        for layer in self.layers.values():
            for n in [name] if name else list(layer.merged):
                if n in layer.merged:
                    layer.unmerge(n)

    # -- files -----------------------------------------------------------------------------------
    def load_adapter(self, path: str | Path, name: str | None = None, *,
                     check_base: bool = True) -> Adapter:
        """Load a PEFT LoRA directory and add it to the lab, exactly as peft applies it.

        Exact: rank/alpha patterns, rsLoRA, DoRA, lora_bias, LoRA on embeddings and heads, trained
        biases, modules_to_save, trainable tokens. Refused by name with the fix: raw PiSSA/OLoRA/
        CorDA/LoftQ/LoRA-GA adapters, aLoRA, layer_replication and other variants
        (``workbench.adapters.peft_config``). A failed load leaves the lab as it was.
        """
        adapter = read_peft(path, name)
        with rollback(self), self._recording_as("loaded"):
            return self.add_adapter(adapter, check_base=check_base)

    def save_adapter(self, adapter: str | Adapter, path: str | Path, *,
                     overwrite: bool = False) -> Path:
        """Write an adapter as a PEFT directory that ``peft.PeftModel.from_pretrained`` loads."""
        adapter = self._get(adapter, own=False)
        layers = self.layers
        is_causal = type(self.model).__name__.endswith("ForCausalLM")
        return write_peft(adapter, path, overwrite=overwrite, extras=peft_extras(adapter, self.model),
                          base_model_name_or_path=self.name,
                          target_modules=self._compact_targets(adapter),
                          task_type="CAUSAL_LM" if is_causal else None,
                          fan_in_fan_out=any(layers[p].fan_in_fan_out and not layers[p].embedding
                                             for p in adapter.modules))

    def _compact_targets(self, adapter: Adapter) -> list[str]:
        """Suffixes (``q_proj``) where the adapter covers every module that ends so, else full paths."""
        modules = list(linear_modules(self.model))
        out = []
        for suffix in sorted({p.rsplit(".", 1)[-1] for p in adapter.modules}):
            every = [m for m in modules if m.rsplit(".", 1)[-1] == suffix]
            if all(m in adapter.modules for m in every):
                out.append(suffix)
            else:
                out += [p for p in adapter.modules if p.rsplit(".", 1)[-1] == suffix]
        return out

    # -- running ---------------------------------------------------------------------------------
    def encode(self, texts: str | list[str]) -> dict[str, torch.Tensor]:
        """Tokenize text (a batch is right-padded) onto the model's device."""
        if self.tokenizer is None:
            raise WorkbenchError("this lab has no tokenizer; pass token ids (a dict of tensors) instead")
        texts = [texts] if isinstance(texts, str) else list(texts)
        enc = self.tokenizer(texts, return_tensors="pt", padding=True)
        return {k: v.to(self.device) for k, v in enc.items()}

    @torch.no_grad()
    def run(self, inputs, record: list[str] | str | None = None, **kwargs):
        """Forward ``inputs`` (text, list of texts, or a dict of tensors) and record hook points.

        Returns:
            (outputs, Cache). The cache is empty when ``record`` is None.
        """
        batch = self.encode(inputs) if isinstance(inputs, str | list) else dict(inputs)
        if not record:
            return self.model(**batch, **kwargs), Cache()
        with record_hooks(self.model, record) as cache:
            out = self.model(**batch, **kwargs)
        return out, cache

    @torch.no_grad()
    def chat(self, prompt: str, *, max_new_tokens: int = 48, system: str | None = None) -> str:
        """Greedy reply of the model, with what ``use`` set, to one user message (chat template)."""
        if self.tokenizer is None or not getattr(self.tokenizer, "chat_template", None):
            raise WorkbenchError("chat needs a tokenizer with a chat template (a zoo causal LM has one)")
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": prompt}]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        batch = self.encode(text)
        used = [r for n in self._composition.names if n in self._routers
                for r in self._routers[n].modules.values()]
        out = self.model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                  pad_token_id=self.tokenizer.pad_token_id,
                                  use_cache=not any(r.full_sequence for r in used))
        return self.tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True).strip()

    def train_lora(self, name: str, task, **kwargs):
        """Train a new LoRA on ``task``; see ``workbench.training.train_lora`` for the arguments."""
        with rollback(self):  # a failure midway removes the half-trained adapter
            result = train_lora(self, name, task, **kwargs)
        self._record_adapter(result.adapter, "trained", history=result.history)
        return result

    def train_router(self, name: str, tasks, **kwargs):
        """Train a router's parameters on tasks; see ``workbench.training.train_router``."""
        keep = [t for r in self._routers[name].modules.values()
                for t in r.state_dict(keep_vars=True).values()] if name in self._routers else []
        with rollback(self, keep=keep):  # a failure midway puts the router's weights back
            result = train_router(self, name, tasks, **kwargs)
        result.routed.history = result.history  # saved with it by save_router
        return result

    def train_multitask(self, name: str, tasks, **kwargs):
        """Train one adapter on several tasks at once (gradient methods, conflict capture);
        see ``workbench.training.MultiTaskTrainer`` for the arguments."""
        keep = [p for layer in self.layers.values() if name in layer.names
                for p in (layer.lora_A[name], layer.lora_B[name])]
        with rollback(self, keep=keep):  # a failure midway removes the new adapter (or restores it)
            result = train_multitask(self, name, tasks, **kwargs)
        if name in self._routers:
            self._routers[name].history = result.history  # saved with it by save_router
        self._record_adapter(result.adapter, "trained", history=result.history[result.history.task == "total"]
                             if "task" in result.history else result.history)
        return result

    def evaluate(self, adapters, tasks, **kwargs):
        """Score adapters (None = the base) on tasks; see ``workbench.evaluation.evaluate``."""
        frame = evaluate(self, adapters, tasks, **kwargs)
        self._record_evaluation(frame, kwargs)
        return frame
