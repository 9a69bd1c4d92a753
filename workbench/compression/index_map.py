"""The index map of a pruned model: which query heads, KV heads and MLP neurons each layer kept.

Indices are the ORIGINAL model's, sorted, so a pruned tensor's row k is the full tensor's row
``kept[k]``. LoRAM's recovery reads them to put a LoRA trained on the pruned model back in place.

Reference: Zhang et al., "Train Small, Infer Large: Memory-Efficient LoRA Training for Large Language
Models" (LoRAM), ICLR 2025 (junzhang-zj/LoRAM @ce64e68 keeps a per-layer ``pruned_idx``; here the kept
indices are stored instead, with the original sizes, and saved as JSON beside the model).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from workbench.errors import WorkbenchError

FILE = "pruning.json"


@dataclass
class LayerMap:
    """One layer: original sizes and kept indices (original numbering, sorted)."""

    n_heads: int
    n_kv: int
    head_dim: int
    d_ff: int
    heads: list[int]  # kept query heads
    kv: list[int]  # kept key/value heads
    neurons: list[int]  # kept MLP neurons

    @staticmethod
    def full(n_heads: int, n_kv: int, head_dim: int, d_ff: int) -> LayerMap:
        return LayerMap(n_heads, n_kv, head_dim, d_ff, list(range(n_heads)), list(range(n_kv)),
                        list(range(d_ff)))

    def _channels(self, heads: list[int]) -> torch.Tensor:
        d = self.head_dim
        return (torch.tensor(heads, dtype=torch.long)[:, None] * d + torch.arange(d)).flatten()

    @property
    def q_channels(self) -> torch.Tensor:
        """Kept rows of q_proj (= kept columns of o_proj), (n_heads'·d,)."""
        return self._channels(self.heads)

    @property
    def kv_channels(self) -> torch.Tensor:
        """Kept rows of k_proj and v_proj, (n_kv'·d,)."""
        return self._channels(self.kv)

    @property
    def neuron_index(self) -> torch.Tensor:
        """Kept rows of gate/up_proj (= kept columns of down_proj), (d_ff',)."""
        return torch.tensor(self.neurons, dtype=torch.long)

    @property
    def pruned(self) -> bool:
        return (len(self.heads), len(self.kv), len(self.neurons)) != (self.n_heads, self.n_kv, self.d_ff)


@dataclass
class PruneMap:
    """Every decoder layer's kept indices (unpruned layers keep all), and how they were chosen."""

    layers: dict[int, LayerMap]
    settings: dict = field(default_factory=dict)  # method, ratio, scope, attention, aggregation, layers, seed

    @property
    def uniform(self) -> bool:
        """Every layer keeps the same numbers of heads, KV heads and neurons (a plain config holds it)."""
        return len({(len(m.heads), len(m.kv), len(m.neurons)) for m in self.layers.values()}) == 1

    def kept_fraction(self) -> dict[str, float]:
        """Kept share of query heads and of neurons over the whole model."""
        ms = self.layers.values()
        return {"heads": sum(len(m.heads) for m in ms) / sum(m.n_heads for m in ms),
                "neurons": sum(len(m.neurons) for m in ms) / sum(m.d_ff for m in ms)}

    def to_dict(self) -> dict:
        return {"settings": self.settings, "layers": {str(i): asdict(m) for i, m in self.layers.items()}}

    @staticmethod
    def from_dict(data: dict) -> PruneMap:
        try:
            layers = {int(i): LayerMap(**m) for i, m in data["layers"].items()}
            return PruneMap(layers, data.get("settings", {}))
        except (KeyError, TypeError) as e:
            raise WorkbenchError(f"not a pruning index map ({e}); expected what PruneMap.to_dict "
                                 "writes") from e

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / FILE
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @staticmethod
    def load(directory: str | Path) -> PruneMap:
        path = Path(directory) / FILE
        if not path.is_file():
            raise WorkbenchError(f"{path} does not exist: the directory was not written by save_pruned")
        return PruneMap.from_dict(json.loads(path.read_text()))
