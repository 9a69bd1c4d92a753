"""LoRA Workbench: build, route and merge LoRA adapters on real models, cell by cell.

    import workbench as wb
    lab = wb.Workbench.from_zoo("smollm2-135m")
    tasks = wb.tasks.load(["arithmetic", "topic"])
    adapter, history = lab.train_lora("arith", tasks["arithmetic"], r=8, steps=60)
    lab.evaluate(["arith", None], tasks)
"""

from workbench import adapters, analysis, generation, hooks, merging, multimodal, tasks, zoo
from workbench.adapters import Adapter, LoraFactors, per_row
from workbench.errors import MissingPackageError, WorkbenchError
from workbench.evaluation import evaluate, relative_to_base
from workbench.hooks import Cache, HookPoint, record
from workbench.lab import Workbench
from workbench.registry import Registry
from workbench.training import MultiTaskTrainer, TrainResult, train_lora, train_multitask

__version__ = "0.1.0"

__all__ = [
    "Adapter",
    "Cache",
    "HookPoint",
    "LoraFactors",
    "MissingPackageError",
    "MultiTaskTrainer",
    "Registry",
    "TrainResult",
    "Workbench",
    "WorkbenchError",
    "adapters",
    "analysis",
    "evaluate",
    "generation",
    "hooks",
    "merging",
    "multimodal",
    "per_row",
    "record",
    "relative_to_base",
    "tasks",
    "train_lora",
    "train_multitask",
    "zoo",
]
