"""Composition lab: several concept LoRAs in one image on the SceneUNet (issue 22).

    from workbench.composition import COMPOSERS, Concept, CompositionRequest, compose
    result = compose(lab, "composer", request, steps=20, seed=0, injection=True, isolation=False)

Methods (one file each in ``methods/``): ``naive`` (sum of the LoRAs), ``switching`` (one LoRA per
step, in turn), ``composer`` (LoRA-Composer: region-restricted injection, isolation, latent
re-initialization; each switchable), ``clora`` (contrastive attention update of the latent, attention
masks, masked fusion of noise predictions), ``tara`` (token masks on cross-attention keys and values).
Shared parts: ``regions`` (boxes -> masks and logit biases), ``attention`` (the one steerable attention
processor), ``losses`` (attention losses), ``sampling`` (the DDIM loop, adapter switches).
"""

from __future__ import annotations

from workbench.composition.base import (
    COMPOSERS,
    Composer,
    CompositionRequest,
    CompositionResult,
    Concept,
)
from workbench.composition.losses import box_attention_loss, contrastive_attention_loss


def compose(lab, method: str, request: CompositionRequest, *, steps: int = 20, seed: int = 0,
            **params) -> CompositionResult:
    """Run composition ``method`` (a ``COMPOSERS`` name) with ``params`` on ``lab.model`` (or a model).

    Raises:
        UnknownNameError: for an unknown method or parameter; WorkbenchError for a value out of range.
    """
    model = getattr(lab, "model", lab)
    composer = COMPOSERS.get(method)(**COMPOSERS.check(method, params))
    return composer.sample(model, request, steps=steps, seed=seed)


__all__ = ["COMPOSERS", "Composer", "CompositionRequest", "CompositionResult", "Concept",
           "box_attention_loss", "compose", "contrastive_attention_loss"]
