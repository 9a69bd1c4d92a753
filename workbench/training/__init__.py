"""Training: the LoRA trainer (multi-task methods and gradient capture join here)."""

from workbench.training.trainer import TrainResult, train_lora

__all__ = ["TrainResult", "train_lora"]
