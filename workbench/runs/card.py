"""The model card (``README.md``) logged beside every recorded adapter: what it is, how it was made.

Reference: Hugging Face model cards (a README.md in the model folder), https://huggingface.co/docs/hub/model-cards.
Deviation: no YAML front matter beyond ``base_model`` and ``library_name`` (no hub to read the rest).
"""

from __future__ import annotations

import json
from collections.abc import Mapping


def model_card(adapter, *, base: str, event: str, scores: Mapping[str, float] | None = None) -> str:
    """Markdown: base, method, ranks and modules, merge weights and sources, training settings, scores."""
    lin = dict(adapter.lineage)
    ranks = sorted(set(adapter.ranks.values()))
    lines = ["---", f"base_model: {base}", "library_name: peft", "tags: [lora, lora-workbench]", "---", "",
             f"# {adapter.name}", "",
             f"A LoRA adapter {event} by LoRA Workbench on `{base}` (base fingerprint "
             f"`{adapter.base_fingerprint}`): rank {', '.join(map(str, ranks))} on {len(adapter.modules)} "
             f"modules, scaling `{adapter.scaling}`. Method: `{lin.get('method', 'unknown')}`.", ""]
    merge = lin.get("merge")
    if isinstance(merge, Mapping):
        lines += [f"## Merge: `{merge.get('method')}`", "",
                  "| source | weight | fingerprint | made by |", "|---|---:|---|---|"]
        for src, w in zip(merge.get("sources", []), merge.get("weights", []), strict=False):
            lines.append(f"| {src.get('name')} | {w:g} | `{src.get('fingerprint')}` | {src.get('made_by')} |")
        lines += ["", f"Parameters: `{json.dumps(merge.get('params', {}), default=str)}`; seed "
                      f"{merge.get('seed')}; total relative error {merge.get('error')}.",
                  "`recipe.json` re-creates it: `lora-workbench merge recipe.json --out DIR`.", ""]
    trained = {k: lin[k] for k in ("tasks", "steps", "lr", "batch_size", "seed", "final_loss", "seconds")
               if k in lin}
    if trained:
        lines += ["## Training", "", *(f"- {k}: {v}" for k, v in trained.items()), ""]
    if scores:
        lines += ["## Scores", "", "| measure | value |", "|---|---:|",
                  *(f"| {k} | {v:.4g} |" for k, v in scores.items()), ""]
    lines += ["## Use", "", "```python", "from peft import PeftModel",
              f"model = PeftModel.from_pretrained(base_model, \"{adapter.name}\")  # this folder", "```", ""]
    return "\n".join(lines)
