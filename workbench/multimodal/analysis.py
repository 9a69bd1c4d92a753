"""What the multimodal views show, computed here (the widgets only draw it).

    modality_map(vlm, name, task, example)    tokens, their modality, and per layer ‖Δ_V‖ vs ‖Δ_L‖
    ladder_attention(vlm, image)              QLadder cross-attention over each stage's positions
    prompt_scales(slm, name, prompts)         WavLLM σ per prompt and its 2-D PCA projection

Frames are tidy with the fixed vocabulary (layer, module, adapter, task, token, value).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from workbench.analysis.variance import between_share
from workbench.errors import WorkbenchError
from workbench.hooks import record
from workbench.routing import prompt_states
from workbench.tasks.base import Example, Task
from workbench.tasks.encoding import chat_prompt
from workbench.tasks.multimodal.speech import SYSTEM


@dataclass
class ModalityRun:
    """One example's tokens and the size of each branch's update.

    Attributes:
        tokens: a label per position (text tokens as the tokenizer writes them, ``<image 3>`` for media).
        types: 1 for visual (media) positions, 0 for text.
        norms: tidy frame ``layer, module, adapter, value``: Σ over tokens of ‖Δ‖₂ of each branch.
    """

    tokens: list[str]
    types: list[int]
    norms: pd.DataFrame


def _layer_of(path: str) -> int:
    m = re.search(r"layers\.(\d+)\.", path)
    return int(m.group(1)) if m else -1


@torch.no_grad()
def modality_map(vlm, name: str, task, example) -> ModalityRun:
    """Run one example through MM-LoRA ``name`` and measure the vision and language updates per layer."""
    routed = vlm.lab.routers.get(name)
    if routed is None or not routed.has("needs_token_types"):
        raise WorkbenchError(f"modality_map needs a router that routes by token type (MM-LoRA, "
                             f"'mask-routed'); {name!r} is not one")
    batch = vlm.build([(task, example)])
    with vlm.lab.session(name, train=False, module=vlm), \
            record(vlm.lm, f"*.routes.{name}.hook_branch_norm") as cache:
        vlm(batch)
    branches = next(iter(routed.modules.values())).branches
    rows = []
    for key, value in cache.items():
        path = key.split(".routes.")[0]
        sums = value[0].sum(0)  # (K,) summed over tokens
        for k, b in enumerate(branches):
            rows.append({"layer": _layer_of(path), "module": path.rsplit(".", 1)[-1], "adapter": b,
                         "value": float(sums[k])})
    before, after, answer = vlm._pieces(task, example)
    tok = vlm.lab.tokenizer
    n_media = int(batch.token_types[0].sum())
    tokens = (tok.convert_ids_to_tokens(before) + [f"<{vlm.modality} {i}>" for i in range(n_media)]
              + tok.convert_ids_to_tokens(after) + tok.convert_ids_to_tokens(answer))
    return ModalityRun(tokens, batch.token_types[0].tolist(), pd.DataFrame(rows))


@torch.no_grad()
def ladder_attention(vlm, image) -> list[np.ndarray]:
    """Per ladder rung, the heads-averaged attention (n_queries, H_i, W_i) of the queries over one image."""
    if vlm.ladder is None:
        raise WorkbenchError("this vision-language model has no QLadder (build it with ladder_queries > 0)")
    with record(vlm.ladder, "*.hook_attention") as cache:
        maps = vlm.encoder(vlm._prepared([image]))
        vlm.ladder([maps[s] for s in vlm.ladder_stages])
    out = []
    for i, s in enumerate(vlm.ladder_stages):
        h, w = maps[s].shape[-2:]
        a = cache[f"rungs.{i}.hook_attention"][0].mean(0)  # (n, H·W)
        out.append(a.reshape(-1, h, w).float().cpu().numpy())
    return out


@dataclass
class PromptScales:
    """σ of WavLLM's prompt-aware adapter per prompt, and a 2-D PCA map of them.

    Attributes:
        frame: one row per prompt: ``task, token`` (the prompt), ``x, y`` (PCA), ``value`` (mean σ).
        sigma: (N, width) σ vectors of the chosen width.
        mean, basis: the PCA centre (width,) and axes (2, width), to place new prompts (``project``).
    """

    frame: pd.DataFrame
    sigma: np.ndarray
    mean: np.ndarray
    basis: np.ndarray

    def project(self, sigma: np.ndarray) -> np.ndarray:
        """(N, 2) map positions of more σ vectors, on the same axes."""
        return (np.asarray(sigma) - self.mean) @ self.basis.T

    def task_share(self) -> float:
        """The share of σ's variance (over prompts, summed over channels) that lies between tasks.

        1 when every task's prompts get one σ and the tasks differ; 0 when the task means coincide
        (σ does not tell the tasks apart, whatever it does to single prompts). NaN if σ never varies.
        """
        return between_share(self.sigma, self.frame.task.to_numpy())


@torch.no_grad()
def sigma_of(slm, name: str, prompts: list[str], width: int | None = None) -> np.ndarray:
    """σ (N, width) of prompt-aware router ``name`` for text prompts (the system prompt of the tasks)."""
    if name not in slm.scalers:
        raise WorkbenchError(f"{name!r} has no PromptScaler; add it with slm.add_prompt_aware({name!r})")
    tok = slm.lab.tokenizer
    task = Task("prompt", "", "loss", [], [], system=SYSTEM)
    ids = [tok(chat_prompt(tok, task, Example(p, "")), add_special_tokens=False)["input_ids"]
           for p in prompts]
    L = max(len(i) for i in ids)
    x = torch.full((len(ids), L), tok.pad_token_id, dtype=torch.long, device=slm.device)
    mask = torch.zeros_like(x)
    for r, i in enumerate(ids):
        x[r, : len(i)], mask[r, : len(i)] = torch.tensor(i), 1
    sigma = slm.scalers[name](prompt_states(slm.lab, x, mask), mask)
    width = width or max(sigma)
    return sigma[width].float().cpu().numpy()


def prompt_scales(slm, name: str, prompts: dict[str, list[str]], width: int | None = None) -> PromptScales:
    """σ for prompts grouped by task, with a PCA to 2-D (from numpy's SVD) for the explorer."""
    labels = [(task, p) for task, group in prompts.items() for p in group]
    if len(labels) < 2:
        raise WorkbenchError("prompt_scales needs at least two prompts")
    sigma = sigma_of(slm, name, [p for _, p in labels], width)
    mean = sigma.mean(0)
    _, _, vt = np.linalg.svd(sigma - mean, full_matrices=False)
    basis = vt[:2] if vt.shape[0] >= 2 else np.vstack([vt, np.zeros_like(vt)])
    xy = (sigma - mean) @ basis.T
    frame = pd.DataFrame({"task": [t for t, _ in labels], "token": [p for _, p in labels],
                          "x": xy[:, 0], "y": xy[:, 1], "value": sigma.mean(1)})
    return PromptScales(frame, sigma, mean, basis)
