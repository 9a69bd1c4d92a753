"""Training: one loop (``fit``) behind the LoRA trainer and the router trainer, and the multi-task
trainer with gradient-conflict capture, gradient methods, samplings, loss weightings and optimizers."""

from workbench.training import lorapro, nola  # noqa: F401  (they register optimizers)
from workbench.training.capture import ConflictCapture
from workbench.training.loop import encode_tasks, fit
from workbench.training.methods import GRAD_METHODS
from workbench.training.multitask import MultiTaskResult, MultiTaskTrainer, train_multitask
from workbench.training.optimizers import OPTIMIZERS
from workbench.training.routers import RouterTrainResult, train_router
from workbench.training.sampling import SAMPLINGS
from workbench.training.trainer import TrainResult, train_lora
from workbench.training.weighting import LOSS_WEIGHTINGS

__all__ = [
    "GRAD_METHODS",
    "LOSS_WEIGHTINGS",
    "OPTIMIZERS",
    "SAMPLINGS",
    "ConflictCapture",
    "MultiTaskResult",
    "MultiTaskTrainer",
    "RouterTrainResult",
    "TrainResult",
    "encode_tasks",
    "fit",
    "train_lora",
    "train_multitask",
    "train_router",
]
