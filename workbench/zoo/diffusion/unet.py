"""SceneUNet: a small text-conditioned ``diffusers.UNet2DConditionModel`` for 28×56 scenes.

    model = SceneUNet(SceneUNet.CONFIGS["base"])
    eps = model(x_t, t, states, mask)     # (B, 1, 28, 56) noise prediction

The UNet reads the caption's token states (MiniLM, 384-d) through cross-attention (``attn2`` of
every transformer block, after a linear ``text_proj`` to ``cross_attention_dim``). Two choices of
this project, both deviations from a Stable-Diffusion UNet:

* pixel space, no VAE; instead the image is cut into 2×2 patches (``pixel_unshuffle``: (1, 28, 56) ->
  (4, 14, 28)) and the noise prediction is put back together (``pixel_shuffle``), so the UNet runs at
  14×28: a quarter of the cost on the 2 shared cores (a trivial stand-in for SD's ×8 latent space);
* a fixed x-coordinate channel is concatenated to the noisy image (CoordConv): the cross-attention
  queries then know which half they are in, so "on the left" can be routed to the left half. A model
  trained on single objects split every token's attention 0.50/0.50 between the halves (issue 22);
  the coordinate channel and two-object captions with side words are what this model adds.

Reference: Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion Models", CVPR 2022
(the conditional UNet, here diffusers' implementation); Liu et al., "An intriguing failing of
convolutional neural networks and the CoordConv solution", NeurIPS 2018 (the coordinate channel).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from workbench.errors import WorkbenchError

CANVAS = (28, 56)
TEXT_DIM = 384

PATCH = 2
CONFIGS: dict[str, dict] = {
    # two levels on the 14×28 patch grid; cross-attention at 7×14 (down, middle, up).
    "base": {"block_out_channels": (24, 48), "layers_per_block": 1, "cross_attention_dim": 48, "heads": 4},
    # a few thousand parameters, for tests
    "tiny": {"block_out_channels": (8, 8), "layers_per_block": 1, "cross_attention_dim": 8, "heads": 2},
}


class SceneUNet(nn.Module):
    """A UNet2DConditionModel on 2×2 patches with a coordinate channel, for (B, 1, 28, 56) images.

    Args:
        config: ``block_out_channels`` (two levels), ``layers_per_block``, ``cross_attention_dim``,
            ``heads`` (attention heads per block); see ``CONFIGS``.
        text_dim: width of the caption token states (384 for MiniLM).
    """

    CONFIGS = CONFIGS

    def __init__(self, config: dict, text_dim: int = TEXT_DIM):
        super().__init__()
        from diffusers import UNet2DConditionModel

        self.config = {**config, "block_out_channels": list(config["block_out_channels"]),
                       "text_dim": text_dim}
        ch = self.config["block_out_channels"]
        if len(ch) != 2:
            raise WorkbenchError(f"SceneUNet has two levels; block_out_channels={ch} has {len(ch)}")
        H, W = CANVAS[0] // PATCH, CANVAS[1] // PATCH
        self.grid = (H, W)  # the UNet's input grid: attention maps have this aspect
        self.unet = UNet2DConditionModel(
            sample_size=(H, W), in_channels=PATCH * PATCH + 1, out_channels=PATCH * PATCH,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            block_out_channels=ch, layers_per_block=config["layers_per_block"],
            cross_attention_dim=config["cross_attention_dim"], attention_head_dim=config["heads"],
            norm_num_groups=min(8, ch[0]), encoder_hid_dim=text_dim, encoder_hid_dim_type="text_proj",
        )
        self.register_buffer("coords", torch.linspace(-1, 1, W).expand(1, 1, H, W).clone(), persistent=False)

    def forward(self, x: torch.Tensor, t: torch.Tensor, states: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Predict the noise of ``x`` at timesteps ``t``.

        Args:
            x: (B, 1, 28, 56) noisy images; t: (B,) or scalar timesteps.
            states: (B, T, text_dim) caption token states; mask: (B, T) bool, True at real tokens.

        Returns:
            (B, 1, 28, 56) predicted noise.
        """
        if x.shape[1:] != (1, *CANVAS):
            raise WorkbenchError(f"SceneUNet takes (B, 1, {CANVAS[0]}, {CANVAS[1]}) images; "
                                 f"got {tuple(x.shape)}")
        patches = F.pixel_unshuffle(x, PATCH)  # (B, 4, 14, 28)
        inp = torch.cat([patches, self.coords.expand(x.shape[0], -1, -1, -1)], dim=1)  # (B, 5, 14, 28)
        out = self.unet(inp, t, encoder_hidden_states=states,
                        encoder_attention_mask=None if mask is None else mask.float()).sample
        return F.pixel_shuffle(out, PATCH)  # (B, 1, 28, 56)

    def n_parameters(self) -> int:
        """All parameters (the text encoder is not part of the model)."""
        return sum(p.numel() for p in self.parameters())


def save_model(model: nn.Module, path: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write ``model``'s weights and config to one safetensors file, atomically (temp file + rename).

    ``model.config`` (a JSON-able dict) and ``extra`` go into the file's metadata.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {"config": json.dumps(model.config), "extra": json.dumps(extra or {})}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        save_file(state, tmp, metadata=meta)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a shipped model file is readable by all
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_model(path: str | os.PathLike) -> tuple[dict, dict, dict]:
    """``(state, config, extra)`` of a file written by ``save_model`` (safetensors only, no pickle).

    Raises:
        WorkbenchError: when the file is missing or lacks the config metadata.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise WorkbenchError(f"no model file at {path}; train it with `make diffusion`")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118  (safe_open has no iterator)
    if "config" not in meta:
        raise WorkbenchError(f"{path} has no 'config' metadata; it was not written by save_model")
    return state, json.loads(meta["config"]), json.loads(meta.get("extra", "{}"))


def load_unet(path: str | os.PathLike) -> tuple[SceneUNet, dict]:
    """A SceneUNet from ``save_model``'s file, in eval mode with frozen weights; returns (model, extra)."""
    state, config, extra = read_model(path)
    model = SceneUNet({k: v for k, v in config.items() if k != "text_dim"}, text_dim=config["text_dim"])
    model.load_state_dict(state)
    model.eval().requires_grad_(False)
    return model, extra
