"""Statistics from data that RegMean and Fisher merging read: per source adapter and module, the Gram
matrix of the module's inputs and the diagonal Fisher of its weight, measured through the recording
hooks with that adapter on.

    stats = merge_statistics(lab, ["arith", "code"], {"arith": tasks["arithmetic"], "code": tasks["code"]})
    lab.merge(["arith", "code"], "regmean", statistics=stats)
    lab.merge(["arith", "code"], "fisher", statistics=stats)

For source i (adapter i on, the model in eval mode) and each module it targets, over the examples
of its data, one at a time:

- Gram: Gᵢ = (1/n_tokens) Σ_t x_t x_tᵀ (in, in) over every token of every example (x the module's
  input, read by a forward hook on the module);
- Fisher: Fᵢ = (1/n_examples) Σ_examples (∂ log p(y|x)/∂W)² (out, in): the empirical diagonal
  Fisher of the module's (base) weight W, where W + ΔWᵢ is what ΔWᵢ is merged into; per example
  ∂/∂W = Σ_t δ_t x_tᵀ, with δ_t = ∂ log p/∂y_t read by a hook on the module's output and log p the
  summed log-likelihood of the example's labelled tokens.

Deviations: Matena & Raffel use the true Fisher (labels sampled from the model) on classifiers; on
generation tasks we use the empirical one (the task's targets), as FusionBench's LM Fisher merging
does. RegMean sums XᵀX over a task's examples; we average per token (sources with more data do not
weigh more; the closed form is unchanged for equal counts).

Each record carries the adapter's content fingerprint: a merge refuses statistics of another
adapter of the same name (recompute them). ``MergeStatistics.planted`` wraps given tensors.

Reference: Jin et al., "Dataless Knowledge Fusion by Merging Weights of Language Models", ICLR 2023
(RegMean; Gram matrices of each linear layer's inputs); Matena & Raffel, "Merging Models with Fisher-
Weighted Averaging", NeurIPS 2022 (diagonal Fisher).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from workbench.adapters.update_cache import adapter_fingerprint
from workbench.errors import WorkbenchError
from workbench.hooks import hooks, module_paths

KINDS = ("gram", "fisher")


@dataclass
class MergeStatistics:
    """Per source adapter (by name) and module path: Gram of the inputs and/or diagonal Fisher.

    Attributes:
        grams: name -> path -> (in, in) float64 mean x xᵀ over tokens.
        fishers: name -> path -> (out, in) float64 mean squared gradient of log p w.r.t. the weight.
        fingerprints: name -> ``adapter_fingerprint`` of the adapter they were measured with.
        examples, tokens: name -> how many examples and tokens they average.
    """

    grams: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    fishers: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)
    examples: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """A short description (what a merge's lineage records instead of the tensors)."""
        kinds = [k for k, d in (("gram", self.grams), ("fisher", self.fishers)) if d]
        counts = ", ".join(f"{n}: {self.examples.get(n, '?')} examples" for n in self.fingerprints)
        return f"statistics({'+'.join(kinds) or 'empty'}; {counts})"

    @classmethod
    def planted(cls, adapters, *, grams=None, fishers=None) -> MergeStatistics:
        """Wrap given tensors (name -> path -> tensor) for ``adapters``, fingerprinted as they are now."""
        return cls(grams={n: {p: t.double() for p, t in d.items()} for n, d in (grams or {}).items()},
                   fishers={n: {p: t.double() for p, t in d.items()} for n, d in (fishers or {}).items()},
                   fingerprints={a.name: adapter_fingerprint(a) for a in adapters})

    def check(self, adapters, kind: str, method: str, fingerprints: Sequence[str]) -> None:
        """Raise a WorkbenchError unless every adapter has ``kind`` statistics measured with it
        (``fingerprints``: the adapters' ``adapter_fingerprint``, in order)."""
        table = self.grams if kind == "gram" else self.fishers
        fix = (f"compute them with workbench.merging.statistics.merge_statistics(lab, names, data, "
               f"kinds=({kind!r},)) and pass statistics=...")
        for a, fp in zip(adapters, fingerprints, strict=True):
            if a.name not in table:
                raise WorkbenchError(f"{method} needs {kind} statistics of every source; {a.name!r} has none "
                                     f"(they cover {sorted(table) or 'no adapter'}); {fix}")
            if self.fingerprints.get(a.name) != fp:
                raise WorkbenchError(f"{method}: the statistics of {a.name!r} were measured with another "
                                     f"adapter of that name (its weights differ); {fix}")
            embedded = [p for p, f in a.modules.items() if f.embedding]
            if embedded:
                raise WorkbenchError(f"{method} merges linear modules; {a.name!r} has an embedding module "
                                     f"{embedded[0]!r}: merge adapters without embeddings (or those modules "
                                     "with another method)")
            missing = [p for p in a.modules if p not in table[a.name]]
            if missing:
                raise WorkbenchError(f"{method}: the {kind} statistics of {a.name!r} lack module "
                                     f"{missing[0]!r} ({len(missing)} missing); {fix}")


def merge_statistics(lab, names: Sequence[str], data, *, kinds: Sequence[str] = KINDS, examples: int = 16,
                     seed: int = 0) -> MergeStatistics:
    """Measure the Gram and/or Fisher statistics of each named adapter of ``lab`` on its data.

    Args:
        lab: the Workbench holding the adapters.
        names: the adapters (each measured with itself on, alone).
        data: each adapter's data: one Task or list of encoded features (dicts with ``input_ids``,
            ``labels``) for all, a list aligned with ``names``, or a dict name -> Task/features.
        kinds: ``"gram"`` (RegMean), ``"fisher"`` (Fisher merging) or both (one pass).
        examples: at most this many examples of each adapter's data (seeded sample).
        seed: the sample's seed.

    Returns:
        MergeStatistics. The lab is left as it was (composition, train/eval mode, gradients).
    """
    kinds = tuple(kinds)
    if not kinds or set(kinds) - set(KINDS):
        raise WorkbenchError(f"kinds={kinds!r}: choose from {KINDS}")
    if isinstance(names, str) or not names:
        raise WorkbenchError(f"names must be a non-empty list of the lab's adapters, got {names!r}")
    if not isinstance(examples, int) or examples < 1:
        raise WorkbenchError(f"examples={examples!r} must be a positive int")
    missing = [n for n in names if n not in lab.adapters]
    if missing:
        raise WorkbenchError(f"no adapter {missing[0]!r} in this lab; it has "
                             f"{list(lab.adapters) or '(none)'}")
    per = _per_adapter(names, data)
    stats = MergeStatistics()
    for n in names:
        adapter = lab.adapters[n]
        features = _features(lab, per[n], examples, seed)
        paths = [p for p, f in adapter.modules.items() if not f.embedding]
        grams, fishers, tokens = _measure(lab, n, paths, features, kinds)
        if "gram" in kinds:
            stats.grams[n] = grams
        if "fisher" in kinds:
            stats.fishers[n] = fishers
        stats.fingerprints[n] = adapter_fingerprint(adapter)
        stats.examples[n], stats.tokens[n] = len(features), tokens
    return stats


def _per_adapter(names: Sequence[str], data) -> dict:
    if isinstance(data, Mapping):
        lacking = [n for n in names if n not in data]
        if lacking:
            raise WorkbenchError(f"data names {sorted(data)}, not {lacking}; give data for every adapter")
        return {n: data[n] for n in names}
    if isinstance(data, list | tuple) and data and not isinstance(data[0], dict):
        if len(data) != len(names):
            raise WorkbenchError(f"{len(data)} data items for {len(names)} adapters; give one per adapter")
        return dict(zip(names, data, strict=True))
    return {n: data for n in names}


def _features(lab, item, examples: int, seed: int) -> list[dict]:
    if isinstance(item, list | tuple):
        if not item or not all(isinstance(f, dict) and "input_ids" in f and "labels" in f for f in item):
            raise WorkbenchError("features must be a non-empty list of dicts with input_ids and labels")
        chosen = list(item)
    elif hasattr(item, "train"):
        if lab.tokenizer is None:
            raise WorkbenchError("statistics on a task need a lab with a tokenizer; or pass encoded features")
        from workbench.tasks import encode_for_training

        chosen = encode_for_training(lab.tokenizer, item, list(item.train))
    else:
        raise WorkbenchError("data for the statistics must be a Task or encoded features, got "
                             f"{type(item).__name__}")
    return random.Random(seed).sample(chosen, examples) if len(chosen) > examples else chosen


def _measure(lab, name: str, paths: list[str], features: list[dict], kinds: tuple[str, ...]):
    """One forward (and, for the Fisher, one backward to the module outputs) per example."""
    model, fisher = lab.model, "fisher" in kinds
    modules = dict(model.named_modules())
    grams = {p: torch.zeros(modules[p].in_features, modules[p].in_features, dtype=torch.float64)
             for p in paths}
    fishers = {p: torch.zeros(modules[p].out_features, modules[p].in_features, dtype=torch.float64)
               for p in paths} if fisher else {}
    inputs, grads = {}, {}

    def on_module(path, module, args, output):
        inputs[path] = args[0].detach()
        if fisher and output.requires_grad:
            output.register_hook(lambda g, _p=path: grads.__setitem__(_p, g.detach()))

    leaves = []

    def leaf(path, module, args, output):  # the embeddings' output: where the gradient stops
        leaves.append(output.detach().requires_grad_(True))
        return leaves[-1]

    embed = module_paths(model, [model.get_input_embeddings()])[0] if fisher else None
    tokens, was_training = 0, model.training
    model.eval()
    try:
        with lab.using(name), hooks(model, {p: on_module for p in paths}), \
                hooks(model, {embed: leaf} if embed else {}), torch.set_grad_enabled(fisher):
            for f in features:
                ids = torch.tensor([f["input_ids"]], device=lab.device)  # (1, T)
                labels = torch.tensor([f["labels"]], device=lab.device)  # (1, T)
                inputs.clear(), grads.clear(), leaves.clear()
                logits = model(input_ids=ids).logits  # (1, T, V)
                if fisher:
                    logp = torch.log_softmax(logits[0, :-1].float(), -1)  # (T−1, V)
                    target = labels[0, 1:]
                    real = target != -100
                    ll = logp[real].gather(1, target[real][:, None]).sum()
                    torch.autograd.grad(ll, leaves)  # fires the output hooks: δ of every module
                for p in paths:
                    x = inputs[p][0].double().cpu()  # (T, in)
                    grams[p] += x.T @ x
                    if fisher:
                        g = grads[p][0].double().cpu() if p in grads else \
                            torch.zeros(x.shape[0], fishers[p].shape[0], dtype=torch.float64)  # (T, out)
                        fishers[p] += (g.T @ x) ** 2  # (out, in)
                tokens += ids.shape[1]
    finally:
        model.train(was_training)
    grams = {p: G / max(tokens, 1) for p, G in grams.items()}
    fishers = {p: F / max(len(features), 1) for p, F in fishers.items()}
    return grams, fishers, tokens

