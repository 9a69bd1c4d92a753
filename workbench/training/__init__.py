"""Training: one loop (``Loop``, ``fit``) behind every trainer (``train_lora``, ``train_router``, the
multi-task trainer, the curriculum, the joined models' stages), with its registries: gradient methods,
samplings, loss weightings, optimizers and LoRA variants."""

from workbench.training import lorapro, nola  # noqa: F401  (they register optimizers)
from workbench.training.capture import ConflictCapture
from workbench.training.fitting import encode_tasks, fit
from workbench.training.loop import Loop
from workbench.training.methods import GRAD_METHODS
from workbench.training.multitask import MultiTaskResult, MultiTaskTrainer, train_multitask
from workbench.training.objectives import ExampleLoss, JoinedLoss, Losses, TokenLoss
from workbench.training.optimizers import OPTIMIZERS
from workbench.training.routers import RouterTrainResult, train_router
from workbench.training.sampling import SAMPLINGS
from workbench.training.schedule import warmup_linear
from workbench.training.sources import ByTask, Shuffled
from workbench.training.trainer import TrainResult, train_lora
from workbench.training.variants import VARIANTS, Variant
from workbench.training.weighting import LOSS_WEIGHTINGS

__all__ = [
    "GRAD_METHODS",
    "LOSS_WEIGHTINGS",
    "OPTIMIZERS",
    "SAMPLINGS",
    "VARIANTS",
    "ByTask",
    "ConflictCapture",
    "ExampleLoss",
    "JoinedLoss",
    "Loop",
    "Losses",
    "MultiTaskResult",
    "MultiTaskTrainer",
    "RouterTrainResult",
    "Shuffled",
    "TokenLoss",
    "TrainResult",
    "Variant",
    "encode_tasks",
    "fit",
    "train_lora",
    "train_multitask",
    "train_router",
    "warmup_linear",
]
