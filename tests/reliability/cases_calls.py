"""Catalogue rows for calls: building a lab, composition, merging, routers, training, tasks, evaluation,
multimodal inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tests.reliability.case import Case
from tests.reliability.world import World
from workbench import Workbench
from workbench.errors import UnknownNameError

NAN, INF = float("nan"), float("inf")


def _task():
    from workbench.tasks import Example, Task

    ex = [Example(f"say {i}", str(i)) for i in range(4)]
    return Task("tiny", "four examples", "exact_match", ex, ex)


def _build(model):
    return lambda w: Workbench(model)


CONSTRUCTION = [
    Case("workbench:model-name", _build("gpt2"), "Workbench.from_zoo\\('gpt2'\\)"),
    Case("workbench:model-path", _build(Path("models/gpt2")), "from_zoo"),
    Case("workbench:model-none", _build(None), "nn.Module"),
    Case("workbench:model-number", _build(42), "nn.Module .*got int"),
    Case("workbench:model-dict", _build({"weight": torch.zeros(2)}), "got dict"),
    Case(
        "workbench:from-zoo-unknown", lambda w: Workbench.from_zoo("gpt-17"), "gpt-17", error=UnknownNameError
    ),
]


def _use(spec=None, **kw):
    return lambda w: w.lab.use(spec, **kw)


def _composition(weights):
    from workbench.adapters import Composition

    return Composition(weights)


def _merged_a(w: World) -> None:
    w.lab.merge_into_base("a")


def _using(w: World):
    with w.lab.using({"a": NAN}):
        pass


COMPOSITION = [
    Case("use:unknown", _use("zz"), "unknown adapter\\(s\\) \\['zz'\\]"),
    Case("use:unknown-in-list", _use(["a", "zz"]), "\\['zz'\\]"),
    Case("use:unknown-in-dict", _use({"a": 1.0, "zz": 1.0}), "\\['zz'\\]"),
    Case("use:nan-weight", _use({"a": NAN}), "weight of 'a' is nan"),
    Case("use:inf-weight", _use({"a": INF, "b": 1.0}), "weight of 'a' is inf"),
    Case("use:neg-inf-weight", _use({"b": -INF}), "weight of 'b' is -inf"),
    Case("use:string-weight", _use({"a": "0.5"}), "weight of 'a' is '0.5'"),
    Case("use:none-weight", _use({"a": None}), "weight of 'a' is None"),
    Case("use:bool-weight", _use({"a": True}), "weight of 'a' is True"),
    Case("use:tensor-weights", _use({"a": torch.tensor([1.0, 2.0])}), "weight of 'a'"),
    Case("use:number", _use(42), "cannot use 42"),
    Case("use:composition-nan", lambda w: w.lab.use(_composition({"a": NAN})), "weight of 'a' is nan"),
    Case("use:float", _use(0.5), "cannot use 0.5"),
    Case(
        "use:adapter-object", lambda w: w.lab.use([w.lab.adapters["a"]]), "names \\(strings\\), got Adapter"
    ),
    Case("use:other-labs-adapter", lambda w: w.lab.use(rows=[w.other.adapters["a"]]), "got Adapter"),
    Case("use:rows-string", _use(rows="a"), "rows= takes a list"),
    Case("use:rows-empty", _use(rows=[]), "rows= is empty"),
    Case("use:rows-unknown", _use(rows=["a", "zz"]), "\\['zz'\\]"),
    Case("use:rows-number", _use(rows=[1, None]), "got int"),
    Case("use:merged-adapter", _use("a"), "merged into the base weights already", setup=_merged_a),
    Case("using:nan-weight", _using, "weight of 'a' is nan"),
    Case("remove-adapter:unknown", lambda w: w.lab.remove_adapter("zz"), "no adapter 'zz'"),
    Case(
        "remove-adapter:other-lab",
        lambda w: w.lab.remove_adapter(w.other.adapters["a"]),
        "not one of this lab's adapters",
    ),
    Case(
        "add-adapter:other-labs-adapter",
        lambda w: w.lab.add_adapter(w.other.adapters["a"]),
        "belongs to another lab .*adapter.copy\\(\\)",
    ),
    Case("add-adapter:a-name", lambda w: w.lab.add_adapter("a"), "takes an Adapter, got str"),
    Case("add-adapter:a-path", lambda w: w.lab.add_adapter(w.adapter_dir), "lab.load_adapter\\(path\\)"),
    Case("adapter:nan-alpha", lambda w: _adapter_with(alpha=NAN), "alpha=nan"),
    Case("adapter:inf-alpha", lambda w: _adapter_with(alpha=INF), "alpha=inf"),
    Case("adapter:rank-zero", lambda w: _adapter_with(r=0), "rank 0"),
    Case("adapter:nan-factor", lambda w: _adapter_with(fill=NAN), "NaN/Inf"),
    Case("adapter:3d-factor", lambda w: _adapter_with(dims=3), "2-D factors"),
    Case("remove-router:unknown", lambda w: w.lab.remove_router("zz"), "no router 'zz'"),
    Case("detach:busy", lambda w: w.lab.detach(["q_proj"]), "still holds adapter"),
    Case("new-adapter:name-taken", lambda w: w.lab.new_adapter("a"), "already in this lab"),
    Case("new-adapter:name-of-router", lambda w: w.lab.new_adapter("rt"), "already in this lab"),
    Case(
        "new-adapter:name-with-hyphen", lambda w: w.lab.new_adapter("my-adapter"), "not a Python identifier"
    ),
    Case("new-adapter:name-number", lambda w: w.lab.new_adapter(5), "not a Python identifier"),
    Case("new-adapter:r-zero", lambda w: w.lab.new_adapter("c", r=0), "r=0; the rank must be"),
    Case("new-adapter:r-negative", lambda w: w.lab.new_adapter("c", r=-3), "r=-3"),
    Case("new-adapter:r-float", lambda w: w.lab.new_adapter("c", r=2.5), "r=2.5"),
    Case("new-adapter:r-string", lambda w: w.lab.new_adapter("c", r="8"), "r='8'"),
    Case("new-adapter:alpha-nan", lambda w: w.lab.new_adapter("c", alpha=NAN), "alpha=nan"),
    Case("new-adapter:alpha-inf", lambda w: w.lab.new_adapter("c", alpha=INF), "alpha=inf"),
    Case(
        "new-adapter:init-unknown",
        lambda w: w.lab.new_adapter("c", init="nope"),
        "nope",
        error=UnknownNameError,
    ),
    Case(
        "new-adapter:scaling-unknown",
        lambda w: w.lab.new_adapter("c", scaling="nope"),
        "nope",
        error=UnknownNameError,
    ),
    Case(
        "new-adapter:targets-none-match",
        lambda w: w.lab.new_adapter("c", targets=["qkv_proj"]),
        "matches no linear module",
    ),
    Case("new-adapter:seed-string", lambda w: w.lab.new_adapter("c", seed="x"), "seed='x'"),
]


def _adapter_with(alpha=4.0, r=2, fill=0.1, dims=2):
    from workbench.adapters import Adapter, LoraFactors

    A = torch.full((r, 8) if dims == 2 else (1, r, 8), fill)
    return Adapter("n", {"model.layers.0.self_attn.q_proj": LoraFactors(A, torch.zeros(8, r), alpha)})


def _merge(names, method="task_arithmetic", weights=None, **kw):
    return lambda w: w.lab.merge(names, method, weights, **kw)


MERGING = [
    Case("merge:names-string", _merge("a"), "takes a list of adapter names"),
    Case("merge:names-empty", _merge([]), "non-empty list"),
    Case("merge:unknown-source", _merge(["a", "zz"]), "no adapter 'zz'"),
    Case("merge:router-as-source", _merge(["a", "rt"]), "no adapter 'rt'"),
    Case(
        "merge:other-labs-adapter",
        lambda w: w.lab.merge([w.other.adapters["a"], "b"]),
        "not one of this lab's adapters",
    ),
    Case("merge:unknown-method", _merge(["a", "b"], "average"), "unknown merge method 'average'"),
    Case("merge:weights-nan", _merge(["a", "b"], weights=[NAN, 1.0]), "nan"),
    Case("merge:weights-inf", _merge(["a", "b"], weights=[1.0, INF]), "inf"),
    Case("merge:weights-length", _merge(["a", "b"], weights=[1.0]), "weight"),
    Case("merge:weights-string", _merge(["a", "b"], weights=["x", 1.0]), "weight"),
    Case("merge:name-taken", _merge(["a", "b"], name="a"), "taken"),
    Case("merge:name-reserved", _merge(["a", "b"], name="base"), "reserved"),
    Case("merge:name-not-identifier", _merge(["a", "b"], name="my merge"), "not a Python identifier"),
    Case("merge:ties-density-nan", _merge(["a", "b"], "ties", density=NAN), "density"),
    Case("merge:ties-density-above-1", _merge(["a", "b"], "ties", density=1.5), "density"),
    Case("merge:ties-density-zero", _merge(["a", "b"], "ties", density=0.0), "density"),
    Case("merge:unknown-parameter", _merge(["a", "b"], "ties", dens=0.2), "dens"),
    Case("merge:seed-string", _merge(["a", "b"], seed="x"), "seed"),
    Case("merge-into-base:unknown", lambda w: w.lab.merge_into_base("zz"), "no adapter 'zz'"),
    Case("merge-into-base:nan", lambda w: w.lab.merge_into_base("a", NAN), "weight is nan"),
    Case("merge-into-base:inf", lambda w: w.lab.merge_into_base("a", INF), "weight is inf"),
    Case("merge-into-base:string", lambda w: w.lab.merge_into_base("a", "1"), "must be a number"),
    Case("merge-into-base:tensor-of-two", lambda w: w.lab.merge_into_base("a", torch.ones(2)), "one number"),
    Case(
        "merge-into-base:other-lab",
        lambda w: w.lab.merge_into_base(w.other.adapters["a"]),
        "not one of this lab's adapters",
    ),
    Case("merge-into-base:twice", lambda w: w.lab.merge_into_base("a"), "already merged", setup=_merged_a),
]


def _router(mechanism="smora", name="r2", **params):
    return lambda w: w.lab.add_router(name, mechanism, **params)


ROUTERS = [
    Case("add-router:name-taken", _router(name="a"), "taken"),
    Case("add-router:name-of-router", _router(name="rt"), "taken"),
    Case("add-router:name-not-identifier", _router(name="my router"), "not a Python identifier"),
    Case("add-router:unknown-mechanism", _router("smorra"), "smorra", error=UnknownNameError),
    Case(
        "add-router:unknown-parameter",
        _router(rank=4),
        "no parameter 'rank'; its parameters: r=",
    ),
    Case("add-router:misspelt-parameter", _router(alpah=4.0), "no parameter .alpah.;.*alpha"),
    Case("add-router:r-zero", _router(r=0), "r=0 is out of range.*\\[1, "),
    Case("add-router:r-negative", _router(r=-4), "r=-4"),
    Case("add-router:r-float", _router(r=4.5), "r=4.5"),
    Case("add-router:k-zero", _router(k=0), "k=0"),
    Case("add-router:alpha-nan", _router(alpha=NAN), "alpha=nan is not a finite number"),
    Case("add-router:alpha-inf", _router(alpha=INF), "alpha=inf is not a finite number"),
    Case("add-router:bias-nan", _router(bias_u=NAN), "bias_u=nan"),
    Case("add-router:flylora-alpha-nan", _router("flylora", r=4, k=2, alpha=NAN), "alpha=nan"),
    Case("add-router:mora-tau-nan", _router("mora", tau=NAN), "tau=nan"),
    Case("add-router:mixlora-experts-zero", _router("mixlora", experts=0), "experts=0"),
    Case("add-router:targets-none-match", _router(r=4, k=2, targets=["qkv_proj"]), "qkv_proj"),
    Case("add-router:seed-string", _router(r=4, k=2, seed="x"), "seed must be a whole number"),
    Case("add-router:meteora-unknown-bank", _router("meteora", bank=["a", "zz"]), "zz"),
    Case("add-router:smora-k-above-r", _router(r=4, k=8), "k"),
]


def _train(**kw):
    args = {"steps": 2, "batch_size": 2, "progress": False, **kw}
    return lambda w: w.lab.train_lora(args.pop("name", "t"), args.pop("task", None) or _task(), **args)


def _train_router(name="rt", **kw):
    return lambda w: w.lab.train_router(name, kw.pop("tasks", None) or _task(), progress=False, **kw)


def _multitask(tasks=None, **kw):
    return lambda w: _text_lab(w).train_multitask(
        "m", {"t": _task()} if tasks is None else tasks, progress=False, **kw
    )


TRAINING = [
    Case("train-lora:lr-negative", _train(lr=-1e-3), "lr=-0.001"),
    Case("train-lora:lr-zero", _train(lr=0.0), "lr=0.0"),
    Case("train-lora:lr-nan", _train(lr=NAN), "lr=nan"),
    Case("train-lora:lr-inf", _train(lr=INF), "lr=inf"),
    Case("train-lora:lr-string", _train(lr="fast"), "lr='fast'"),
    Case("train-lora:dropout-1.5", _train(dropout=1.5), "dropout=1.5 must be in \\[0, 1\\)"),
    Case("train-lora:dropout-1", _train(dropout=1.0), "dropout=1.0"),
    Case("train-lora:dropout-negative", _train(dropout=-0.1), "dropout=-0.1"),
    Case("train-lora:dropout-nan", _train(dropout=NAN), "dropout=nan"),
    Case("train-lora:batch-zero", _train(batch_size=0), "batch_size=0 must be a whole number of at least 1"),
    Case("train-lora:batch-negative", _train(batch_size=-2), "batch_size=-2"),
    Case("train-lora:batch-float", _train(batch_size=2.5), "batch_size=2.5"),
    Case("train-lora:steps-zero", _train(steps=0), "steps=0"),
    Case("train-lora:steps-negative", _train(steps=-5), "steps=-5"),
    Case("train-lora:r-zero", _train(r=0), "r=0: the rank must be"),
    Case("train-lora:r-negative", _train(r=-1), "r=-1"),
    Case("train-lora:alpha-nan", _train(alpha=NAN), "alpha=nan"),
    Case("train-lora:weight-decay-negative", _train(weight_decay=-0.1), "weight_decay=-0.1"),
    Case("train-lora:warmup-2", _train(warmup=2.0), "warmup=2.0"),
    Case("train-lora:seed-string", _train(seed="x"), "seed='x'"),
    Case("train-lora:name-taken", _train(name="a"), "already in this lab"),
    Case("train-lora:name-hyphen", _train(name="my-adapter"), "not a Python identifier"),
    Case("train-lora:task-name-string", _train(task="arithmetic"), "is a name; pass Task objects"),
    Case("train-lora:task-number", _train(task=42), "expected a workbench Task, got int"),
    Case("train-lora:no-tokenizer", _train(), "needs a tokenizer"),
    Case(
        "train-lora:targets-none-match",
        lambda w: _text_lab(w) and _train(targets=["qkv_proj"])(w),
        "matches no linear module",
    ),
    Case("train-router:unknown", _train_router("zz"), "no router 'zz'"),
    Case("train-router:lr-nan", _train_router(lr=NAN), "lr=nan"),
    Case("train-router:lr-negative", _train_router(lr=-1.0), "lr=-1.0"),
    Case("train-router:steps-zero", _train_router(steps=0), "steps=0"),
    Case("train-router:batch-zero", _train_router(batch_size=0), "batch_size=0"),
    Case("train-router:tasks-string", _train_router(tasks="topic"), "is a name"),
    Case("train-router:adapter-name", _train_router("a"), "no router 'a'"),
    Case("train-multitask:lr-nan", _multitask(lr=NAN), "lr=nan"),
    Case("train-multitask:accumulate-zero", _multitask(accumulate=0), "accumulate=0"),
    Case("train-multitask:temperature-zero", _multitask(temperature=0.0), "temperature=0.0"),
    Case("train-multitask:steps-zero", _multitask(steps=0), "steps=0"),
    Case("train-multitask:r-zero", _multitask(r=0), "r=0"),
    Case(
        "train-multitask:sampling-unknown",
        _multitask(sampling="random"),
        "proportional",
        error=UnknownNameError,
    ),
    Case("train-multitask:method-unknown", _multitask(method="pcgard"), "pcgrad", error=UnknownNameError),
    Case("train-multitask:no-tasks", _multitask(tasks=[]), "no tasks given"),
]


def _evaluate(adapters, tasks=None, **kw):
    from workbench.evaluation import evaluate

    return lambda w: evaluate(
        _text_lab(w), adapters, tasks if tasks is not None else [_task()], progress=False, **kw
    )


def _text_lab(w: World):
    """The world's lab with a tokenizer borrowed from the byte tokenizer (evaluation needs one)."""
    from tests.multimodal.helpers import byte_tokenizer

    if w.lab.tokenizer is None:
        w.lab.tokenizer = byte_tokenizer()
    return w.lab


def _tasks_load(names):
    from workbench import tasks

    return lambda w: tasks.load(names)


def _example(**kw):
    from workbench.tasks import Example

    return lambda w: Example(**kw)


def _task_with(**kw):
    from workbench.tasks import Example, Task

    ex = [Example("p", "t")]
    return lambda w: Task(
        **{"name": "t", "description": "", "metric": "exact_match", "train": ex, "eval": ex, **kw}
    )


TASKS_AND_EVALUATION = [
    Case("tasks:unknown", _tasks_load("arithmatic"), "arithmetic", error=UnknownNameError),
    Case("tasks:one-unknown", _tasks_load(["topic", "nope"]), "nope", error=UnknownNameError),
    Case("task:unknown-metric", _task_with(metric="f1"), "unknown metric 'f1'"),
    Case("task:accuracy-without-choices", _task_with(metric="accuracy"), "needs choices"),
    Case("example:target-not-a-choice", _example(prompt="p", target="c", choices=("a", "b")), "not among"),
    Case("example:repeated-choices", _example(prompt="p", target="a", choices=("a", "a")), "repeat"),
    Case("evaluate:unknown-adapter", _evaluate(["zz"]), "\\['zz'\\]"),
    Case("evaluate:number", _evaluate(42), "cannot evaluate 42"),
    Case("evaluate:nan-mix", _evaluate({"mix": {"a": NAN}}), "weight of 'a' is nan"),
    Case("evaluate:task-name", _evaluate(["a"], ["arithmetic"]), "takes Task objects"),
    Case("evaluate:no-tasks", _evaluate(["a"], []), "at least one task"),
    Case("evaluate:limit-zero", _evaluate(["a"], limit=0), "limit=0"),
    Case("evaluate:batch-zero", _evaluate(["a"], batch_size=0), "batch_size=0"),
    Case("evaluate:no-tokenizer", lambda w: w.lab.evaluate(["a"], [_task()]), "needs a tokenizer"),
]


def _images(images, size=32, multiple=1):
    from workbench.multimodal import prepare_images

    return lambda w: prepare_images(images, size, multiple)


def _stage(**kw):
    from workbench.multimodal import Stage

    return lambda w: Stage("s", **kw)


MULTIMODAL = [
    Case("stage:lr-nan", _stage(lr=NAN), "lr=nan"),
    Case("stage:lr-negative", _stage(lr=-1.0), "lr=-1.0"),
    Case("stage:steps-zero", _stage(steps=0), "steps=0"),
    Case("images:rgba", _images([np.zeros((4, 8, 8), np.uint8)]), "4 channels"),
    Case("images:two-channels", _images([torch.zeros(2, 8, 8)]), "2 channels"),
    Case("images:empty", _images([torch.zeros(3, 0, 8)]), "is empty"),
    Case("images:nan", _images([torch.full((3, 8, 8), NAN)]), "NaN or Inf"),
    Case("images:inf", _images([torch.full((3, 8, 8), INF)]), "NaN or Inf"),
    Case("images:0-255-floats", _images([torch.full((3, 8, 8), 200.0)]), "must lie in \\[0, 1\\]"),
    Case("images:int64", _images([torch.zeros(3, 8, 8, dtype=torch.int64)]), "dtype torch.int64"),
    Case("images:1d", _images([torch.zeros(8)]), "has shape \\(8,\\)"),
    Case("images:none", _images([]), "at least one image"),
    Case("images:size-not-multiple", _images([torch.zeros(3, 8, 8)], size=30, multiple=32), "multiple of 32"),
    Case("images:size-zero", _images([torch.zeros(3, 8, 8)], size=0), "positive multiple"),
]

CASES = [*CONSTRUCTION, *COMPOSITION, *MERGING, *ROUTERS, *TRAINING, *TASKS_AND_EVALUATION, *MULTIMODAL]
