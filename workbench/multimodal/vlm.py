"""VisionLanguageModel: a frozen staged image encoder (EfficientNet-Lite0) → visual tokens → projector
→ a causal LM (SmolLM2), with Arcana's MM-LoRA on the LM and its QLadder on the encoder.

    maps = encoder(images)                         [(B, C_i, H_i, W_i)]  frozen, eval mode
    patches = maps[-1] flattened                   (B, H·W, C)           (96 px Lite0: 3·3 = 9 tokens of 1280)
    ladder = QLadder(maps[ladder_stages])          (B, n, C)             optional extra visual tokens
    visual = projector(cat(patches, ladder))       (B, M, d)             M = H·W (+ n)

MM-LoRA: ``vlm.add_mm_lora(name, r_vision, r_language)`` puts a mask-routed LoRA with a vision and a
language branch on the LM's linear layers; ``JoinedLM`` routes each token by its type (visual
tokens → vision branch). ``vlm.add_shared_lora(name, r)`` is the baseline: one branch every token
goes through, of the same parameter budget when r = r_vision + r_language.

Training stages (``workbench.multimodal.training.train_stages``): 1) the projector (and the ladder)
with the LM untouched, 2) the adapters together with the projector and ladder (Arcana's public code
does not say which parameters each stage trains; this split is LLaVA's, noted as a reconstruction).

Reference: Arcana (arXiv 2410.13733); code github syp2ysy/Arcana @eefd549.
"""

from __future__ import annotations

import torch
from torch import nn

from workbench.errors import WorkbenchError
from workbench.multimodal.images import prepare_images
from workbench.multimodal.joined import JoinedLM
from workbench.multimodal.qladder import QLadder


def mlp_projector(in_dim: int, out_dim: int, seed: int = 0) -> nn.Module:
    """LLaVA-1.5's projector: Linear → GELU → Linear (seeded, global random state untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))


class VisionLanguageModel(JoinedLM):
    """Images + text prompts → text answers.

    Args:
        lab: a Workbench on the causal LM (``Workbench.from_zoo("smollm2-135m")``).
        encoder: a ``StagedEncoder`` (``zoo.load("efficientnet-lite0").model``); frozen here.
        image_size: the side images are resized to (a multiple of the encoder's ``multiple``).
        ladder_queries: number of QLadder tokens; 0 for no ladder.
        ladder_stages: indices of the stage maps the ladder climbs (default: all of them).
        ladder_dim: the ladder's width.
        seed: seeds the projector and the ladder.
    """

    modality = "image"

    def __init__(self, lab, encoder: nn.Module, *, image_size: int = 96, ladder_queries: int = 0,
                 ladder_stages: list[int] | None = None, ladder_dim: int = 128, seed: int = 0):
        width = encoder.channels[-1]
        super().__init__(lab, mlp_projector(width, lab.model.config.hidden_size, seed))
        self.encoder = encoder.eval().requires_grad_(False)
        self.image_size = image_size
        prepare_images([torch.zeros(1, image_size, image_size)], image_size, encoder.multiple)  # checks size
        stages = list(range(len(encoder.channels))) if ladder_stages is None else list(ladder_stages)
        if any(not 0 <= s < len(encoder.channels) for s in stages):
            raise WorkbenchError(f"ladder_stages {stages} must index the encoder's "
                                 f"{len(encoder.channels)} stages")
        self.ladder_stages = stages
        self.ladder = (QLadder([encoder.channels[s] for s in stages], queries=ladder_queries, dim=ladder_dim,
                               out_dim=width, seed=seed + 1) if ladder_queries else None)

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()  # frozen: batch-norm statistics never move
        return self

    def trainable_front(self) -> list[nn.Parameter]:
        return list(self.projector.parameters()) + (list(self.ladder.parameters()) if self.ladder else [])

    def visual_tokens(self, images) -> torch.Tensor:
        """Projected visual tokens (B, M, d) of raw images (see ``prepare_images`` for the forms)."""
        x = self._prepared(images)
        with torch.no_grad():
            maps = self.encoder(x)
        tokens = maps[-1].flatten(2).transpose(1, 2)  # (B, H·W, C)
        if self.ladder is not None:
            tokens = torch.cat([tokens, self.ladder([maps[s] for s in self.ladder_stages])], 1)  # (B, M, C)
        return self.projector(tokens)  # (B, M, d)

    def _prepared(self, images) -> torch.Tensor:
        return prepare_images(images, self.image_size, self.encoder.multiple).to(self.device)  # (B, 3, S, S)

    def media_tokens(self, examples: list) -> torch.Tensor:
        if any(getattr(e, "image", None) is None for e in examples):
            raise WorkbenchError("the vision-language model needs examples with an image")
        return self.visual_tokens([e.image for e in examples])

    @property
    def n_visual(self) -> int:
        """M, the number of visual tokens per image."""
        side = self.image_size // self.encoder.strides[-1]
        return side * side + (self.ladder.queries.shape[1] if self.ladder is not None else 0)

    # -- adapters on the LM ------------------------------------------------------------------------
    def add_mm_lora(self, name: str, r_vision: int, r_language: int, *, targets="all-linear",
                    scaling: float = 2.0, dropout: float = 0.05, seed: int = 0):
        """Arcana's MM-LoRA: branch 0 = language (text tokens), 1 = vision (visual tokens)."""
        return self.lab.add_router(name, "mask-routed", targets, seed=seed,
                                   branches={"language": r_language, "vision": r_vision},
                                   scaling=scaling, dropout=dropout)

    def add_shared_lora(self, name: str, r: int, *, targets="all-linear", scaling: float = 2.0,
                        seed: int = 0):
        """One plain LoRA (scale ``scaling``) every token goes through: MM-LoRA's baseline of the same
        parameter budget when r = r_vision + r_language (no dropout: pass dropout=0 to MM-LoRA to match)."""
        return self.lab.new_adapter(name, r=r, alpha=scaling * r, targets=targets, seed=seed)
