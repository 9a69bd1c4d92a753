"""``extract``: a LoRA adapter from a full fine-tune of this lab's base, added to the lab (a mixin of
``Workbench``; the SVD lives in ``workbench.merging.extract``)."""

from __future__ import annotations

from torch import nn

from workbench.adapters import Adapter
from workbench.errors import WorkbenchError
from workbench.lab.checks import RESERVED, rollback
from workbench.merging.extract import extract_from_models


class Extracting:
    """``extract`` of ``Workbench``."""

    def extract(self, finetuned: nn.Module, *, name: str, rank: int | None = None,
                energy: float | None = None, targets: str | list[str] = "all-linear") -> Adapter:
        """Extract a LoRA adapter from a fully fine-tuned copy of this lab's base model and add it.

        Example:
            >>> ft = lab.extract(finetuned_model, name="ft", energy=0.9, targets="attention")
            >>> lab.last_extract.error          # per module: layer, module, rank, relative error

        Args:
            finetuned: the fine-tuned model (same architecture as ``lab.model``).
            name: the new adapter's name.
            rank: one rank for every module; or ``energy`` in (0, 1]: per module, the smallest rank
                keeping that fraction of ‖ΔW‖²_F (``workbench.merging.extract``).
            targets: which linear modules (a preset, suffixes or regexes).

        The lab is unchanged when the call fails; ``lab.last_extract`` keeps the ``ExtractResult``.
        """
        if name in self._adapters or name in self._routers or name in RESERVED:
            raise WorkbenchError(f"the name {name!r} is taken in this lab (or reserved); pick another")
        if finetuned is self.model:
            raise WorkbenchError("extract takes the fine-tuned model, not the lab's own base; "
                                 "pass the other copy")
        result = extract_from_models(finetuned, self.model, name=name, rank=rank, energy=energy,
                                     targets=targets, base_fingerprint=self.fingerprint)
        with rollback(self):
            self.add_adapter(result.adapter)
        self.last_extract = result
        return result.adapter
