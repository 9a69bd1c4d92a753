"""cat_learned: LoRA Soups' CAT: per-module softmax weights over the adapters, trained on data.

    lab.merge(["arith", "code"], method="cat_learned", tasks=[tasks["arithmetic"], tasks["code"]])

What it needs (and ``merge`` refuses to run without): ``lab``, the ``Workbench`` on the sources'
base model, and data: ``tasks`` (a small mix, ``mix`` of each task's training examples, at least
``min_examples``), or ``features`` already encoded (dicts with ``input_ids``, ``labels``).

Training [C, ``aksh555/LoRA-Soups`` ``learnable_lora/lora/layer.py``]: every target module gets one
logit per adapter; the forward adds Σᵢ softmax(ℓ)ᵢ·sᵢBᵢAᵢx (no cross terms); only the logits train
(base, A and B frozen); logits start as randn(1) each, as in the authors' code (``init="uniform"``
starts them at 0). Export: B' = [p₁w₁s₁B₁ | …], A' = [A₁; …], rank Σrᵢ: the trained soup exactly.
The learned weights are in ``lineage["merge"]["learned"]``.

Deviations (ours): the soup trains on the sources at weight 1 and ``weights`` scale each adapter's
learned share at export (pᵢ·wᵢ), so weight 0 removes an adapter and negating every weight negates
the result; steps/lr default to a short run with a high learning rate (60 steps, 0.05) because only
a few scalars train, where the authors run one epoch at 1e-4 on ≈5% of 10k examples.

Reference: Prabhakar et al., "LoRA Soups: Merging LoRAs for Practical Skill Composition Tasks",
COLING Industry 2025 (arXiv 2410.13025).
"""

from __future__ import annotations

import random

import torch

from workbench.adapters.targets import linear_modules
from workbench.errors import WorkbenchError
from workbench.merging.base import MERGES, MergeMethod
from workbench.merging.inputs import MergeInputs
from workbench.registry import Param
from workbench.tasks import encode_for_training
from workbench.training import fit


def soup_features(lab, tasks, *, mix: float, min_examples: int, seed: int) -> list[dict]:
    """The training mix: ``max(min_examples, mix·len(train))`` seeded examples of each task, encoded."""
    if lab.tokenizer is None:
        raise WorkbenchError("cat_learned on tasks needs a lab with a tokenizer; or pass features=[...]")
    rng = random.Random(seed)
    features = []
    for i, task in enumerate(tasks):
        n = min(len(task.train), max(min_examples, round(mix * len(task.train))))
        chosen = rng.sample(list(task.train), n)
        features += [f | {"task": i} for f in encode_for_training(lab.tokenizer, task, chosen)]
    return features


def _run(inputs: MergeInputs, params: dict):
    lab = params["lab"]
    if lab.fingerprint is not None and any(a.base_fingerprint not in (None, lab.fingerprint)
                                           for a in inputs.adapters):
        raise WorkbenchError("cat_learned: the adapters were made for another base than this lab's; "
                             "pass the lab of their base model")
    modules = linear_modules(lab.model)
    missing = [p for p in inputs.paths if p not in modules and p not in lab.layers]
    if missing:
        raise WorkbenchError(f"cat_learned: the lab's model has no linear module {missing[0]!r}; "
                             "pass the lab the adapters were made for")
    features = params["features"]
    if features is None:
        features = soup_features(lab, params["tasks"], mix=params["mix"],
                                 min_examples=params["min_examples"], seed=inputs.seed)
    live = [i for i, w in enumerate(inputs.weights) if w != 0] or [0]
    g = torch.Generator().manual_seed(inputs.seed)
    device = lab.device
    logits, hooks = {}, []
    for path in inputs.paths:
        idx = [i for i in live if path in inputs.adapters[i].modules]
        init = torch.randn(len(idx), generator=g) if params["init"] == "randn" else torch.zeros(len(idx))
        logits[path] = (idx, torch.nn.Parameter(init.to(device)))
        facs = [(inputs.adapters[i].modules[path].A.detach().to(device),
                 inputs.adapters[i].scale(path) * inputs.adapters[i].modules[path].B.detach().to(device))
                for i in idx]
        hooks.append(lab.model.get_submodule(path).register_forward_hook(_soup_hook(facs, logits[path][1])))
    try:
        with torch.enable_grad():  # merge runs methods under no_grad; this one trains
            history = fit(lab, [p for _, p in logits.values()], features, use=None, label="cat_learned",
                          steps=params["steps"], lr=params["lr"], batch_size=params["batch_size"],
                          seed=inputs.seed, progress=params["progress"])
    finally:
        for h in hooks:
            h.remove()
    out, learned = {}, {}
    for path, (idx, logit) in logits.items():
        p = torch.softmax(logit.detach().double().cpu(), dim=0)  # (K,)
        learned[path] = {inputs.adapters[i].name: float(pi) for i, pi in zip(idx, p, strict=True)}
        A = torch.cat([inputs.adapters[i].modules[path].A.detach().double() for i in idx])  # (Σr, in)
        B = torch.cat([float(pi) * inputs.weights[i] * inputs.adapters[i].factors(path)[1].detach().double()
                       for i, pi in zip(idx, p, strict=True)], dim=1)  # (out, Σr)
        out[path] = (A, B)
    inputs.notes["learned"] = {"weights": learned, "steps": params["steps"],
                               "final_loss": float(history["loss"].tail(5).mean()) if len(history) else None,
                               "examples": len(features)}
    return out


def _soup_hook(factors: list[tuple[torch.Tensor, torch.Tensor]], logit: torch.nn.Parameter):
    """Forward hook adding Σᵢ softmax(ℓ)ᵢ·sᵢBᵢAᵢx to a module's output."""
    def hook(module, args, output):
        x = args[0]
        p = torch.softmax(logit, dim=0)  # (K,)
        delta = sum(p[k] * ((x.to(A.dtype) @ A.T) @ sB.T) for k, (A, sB) in enumerate(factors))  # (B, T, out)
        return output + delta.to(output.dtype)

    return hook


def _validate(params: dict) -> None:
    if params["tasks"] is None and params["features"] is None:
        raise WorkbenchError("cat_learned trains its mixing weights on data: pass tasks=[...] (a small mix "
                             "of each task's training set is used) or features=[...] (encoded examples)")
    if not hasattr(params["lab"], "model"):
        raise WorkbenchError(f"cat_learned: lab={params['lab']!r} is not a Workbench; pass the lab")
    if not isinstance(params["steps"], int) or params["steps"] < 1:
        raise WorkbenchError(f"cat_learned: steps={params['steps']!r} must be a positive int")
    if not 0 < params["mix"] <= 1:
        raise WorkbenchError(f"cat_learned: mix={params['mix']!r} is the fraction of each task's training "
                             "set used; give a number in (0, 1]")


MERGES.register(
    "cat_learned", flags=("stochastic", "factored", "needs_data"),
    reference="Prabhakar et al., LoRA Soups, COLING Industry 2025 (arXiv 2410.13025)",
    summary="LoRA Soups (CAT): per-module softmax weights over the adapters, trained on a small mix of "
            "the tasks' data with the lab, exported as one rank-Σrᵢ adapter. Needs lab=... and tasks=[...] "
            "(or features=[...]).",
    params=[Param("lab", Param.REQUIRED, "the Workbench on the sources' base model; it trains the weights on "
                  "tasks=[...] (or features=[...])"),
            Param("tasks", None, "the tasks whose training sets give the mix (or pass features)"),
            Param("features", None, "encoded examples (dicts with input_ids, labels) instead of tasks"),
            Param("mix", 0.05, "the fraction of each task's training set used, in (0, 1]", low=0.0, high=1.0),
            Param("min_examples", 16, "at least this many examples of each task", low=1),
            Param("steps", 60, "optimizer steps", low=1),
            Param("lr", 0.05, "learning rate of the mixing logits", low=0.0),
            Param("batch_size", 8, "examples per step", low=1),
            Param("init", "randn", "the logits' start: randn(1) each as the authors' code, or 0 (uniform)",
                  choices=("randn", "uniform")),
            Param("progress", True, "show a progress bar while training", choices=(True, False))],
)(MergeMethod(name="cat_learned", run=_run, validate=_validate))
