"""Vision and speech front ends joined to a language model: projector, QLadder, MM-LoRA, WavLLM.

    import workbench as wb
    from workbench import multimodal as mm
    lab = wb.Workbench.from_zoo("smollm2-135m")
    vlm = mm.VisionLanguageModel(lab, wb.zoo.load("efficientnet-lite0").model, ladder_queries=8)
    vlm.add_mm_lora("mm", r_vision=4, r_language=12)
    tasks = list(wb.tasks.multimodal.load(["fashion-naming", "fashion-count"]).values())
    mm.train_stages(vlm, tasks, [mm.Stage("projector", steps=40), mm.Stage("adapters", use="mm", steps=60)])
    mm.evaluate_joined(vlm, tasks, {"mm": "mm", "projector only": None})
"""

from workbench.multimodal.images import prepare_images
from workbench.multimodal.joined import JoinedBatch, JoinedLM
from workbench.multimodal.qladder import QLadder
from workbench.multimodal.slm import SpeechLanguageModel, run_curriculum
from workbench.multimodal.training import Stage, evaluate_joined, train_stages
from workbench.multimodal.vlm import VisionLanguageModel, mlp_projector

__all__ = [
    "JoinedBatch",
    "JoinedLM",
    "QLadder",
    "SpeechLanguageModel",
    "Stage",
    "VisionLanguageModel",
    "evaluate_joined",
    "mlp_projector",
    "prepare_images",
    "run_curriculum",
    "train_stages",
]
