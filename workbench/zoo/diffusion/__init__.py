"""A small text-to-image diffusion model trained here, for the composition lab (issue 22).

    from workbench.zoo import diffusion
    model, info = diffusion.load_shipped()           # SceneUNet trained by `make diffusion`
    judge, jinfo = diffusion.load_shipped("judge")   # the per-region classifier

Parts (one file each): ``text`` (MiniLM caption token states), ``unet`` (SceneUNet, save/load),
``sampler`` (noise schedule, denoising loss, DDIM), ``attention`` (cross-attention capture),
``judge`` (the item classifier). The scenes are in ``workbench.tasks.scenes``; the localisation score in
``workbench.analysis.localisation``; training in ``scripts/train_diffusion.py``.
"""

from __future__ import annotations

from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.zoo.diffusion.attention import AttentionRecord, CaptureProcessor, capture_cross_attention
from workbench.zoo.diffusion.judge import Judge
from workbench.zoo.diffusion.sampler import ddim_sample, denoising_loss, noise_schedule, sample_with_attention
from workbench.zoo.diffusion.text import CaptionText
from workbench.zoo.diffusion.unet import SceneUNet, load_unet, read_model, save_model

FILES = {"unet": "scene_unet.safetensors", "judge": "judge.safetensors"}


def shipped_dir() -> Path:
    """The ``diffusion/`` folder of the repository, where ``make diffusion`` writes the weights."""
    return Path(__file__).resolve().parents[3] / "diffusion"


def load_shipped(which: str = "unet", folder: str | Path | None = None):
    """Load a shipped model: ``"unet"`` (SceneUNet) or ``"judge"``; returns ``(model, extra)``.

    Raises:
        WorkbenchError: for another name, or when the file is missing (run `make diffusion`).
    """
    if which not in FILES:
        raise WorkbenchError(f"no shipped diffusion model {which!r}; choose one of {sorted(FILES)}")
    path = Path(folder or shipped_dir()) / FILES[which]
    if which == "unet":
        return load_unet(path)
    state, config, extra = read_model(path)
    judge = Judge(**config)
    judge.load_state_dict(state)
    return judge.eval().requires_grad_(False), extra


__all__ = ["FILES", "AttentionRecord", "CaptionText", "CaptureProcessor", "Judge", "SceneUNet",
           "capture_cross_attention", "ddim_sample", "denoising_loss", "load_shipped", "load_unet",
           "noise_schedule", "read_model", "sample_with_attention", "save_model", "shipped_dir"]
