"""Training: one loop (``fit``) behind the LoRA trainer and the router trainer."""

from workbench.training.loop import encode_tasks, fit
from workbench.training.routers import RouterTrainResult, train_router
from workbench.training.trainer import TrainResult, train_lora

__all__ = ["RouterTrainResult", "TrainResult", "encode_tasks", "fit", "train_lora", "train_router"]
