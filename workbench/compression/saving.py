"""Save a pruned model as a normal transformers model directory (with its index map), and load it.

Only a uniformly pruned model saves (every layer the same numbers of heads, KV heads and neurons):
transformers' Llama and Gemma 3 configs hold one ``num_attention_heads`` and one ``intermediate_size``
for all layers, and a reload builds every layer from them. The directory loads with
``AutoModelForCausalLM.from_pretrained`` alone; ``pruning.json`` beside it holds the index map.

Reference: Ma et al., "LLM-Pruner", NeurIPS 2023 (the authors ``torch.save`` the pickled model instead).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from workbench.compression.groups import blocks
from workbench.compression.index_map import PruneMap
from workbench.compression.prune import Pruned
from workbench.errors import WorkbenchError


def save_pruned(pruned: Pruned, directory: str | Path) -> Path:
    """``save_pretrained`` the pruned model into ``directory`` and write its ``pruning.json``."""
    sizes = {(b.n_heads, b.n_kv, b.d_ff) for b in blocks(pruned.model)}
    if len(sizes) != 1:
        raise WorkbenchError(
            f"the layers were pruned to different sizes {sorted(sizes)} (heads, kv heads, neurons): a "
            "transformers config holds one size for all layers, so this model cannot save as a normal model "
            "directory. Prune all layers locally at one ratio (layers=None, scope='local') to save it; "
            "this one still runs and trains in memory")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    pruned.model.save_pretrained(directory)
    pruned.map.save(directory)
    return directory


def load_pruned(directory: str | Path) -> tuple[nn.Module, PruneMap]:
    """The model (``AutoModelForCausalLM``) and the index map from a ``save_pruned`` directory."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(directory).eval(), PruneMap.load(directory)
