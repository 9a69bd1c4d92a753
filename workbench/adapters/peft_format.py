"""PEFT LoRA directories (``adapter_config.json`` + ``adapter_model.safetensors``) <-> ``Adapter``.

Reads rank_pattern, alpha_pattern and use_rslora exactly as peft does. DoRA and other PEFT types are
refused with a message. Lineage and metadata travel in the config under the key ``lora_workbench``
(peft ignores unknown keys, with a warning).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import torch
from safetensors.torch import save_file

from workbench.adapters.adapter import SCALINGS, Adapter, LoraFactors
from workbench.adapters.files import atomic_directory, read_safetensors
from workbench.errors import WorkbenchError

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
OUR_KEY = "lora_workbench"
_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<AB>[AB])(?:\.[^.]+)?\.weight$")


def _pattern_value(patterns: dict, module: str, default):
    """peft's ``get_pattern_key``: the first key that matches the end of the module path."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def read_peft(path: str | Path, name: str | None = None) -> Adapter:
    """Read a PEFT LoRA directory into an ``Adapter``.

    Raises:
        WorkbenchError: missing/truncated files, pickle weights, non-LoRA or DoRA configs,
            unpaired factors, NaN/Inf values. Each message names the file and the fix.
    """
    path = Path(path)
    if not path.is_dir():
        raise WorkbenchError(f"{path} is not a directory; give the folder that holds {CONFIG}")
    cfg_file = path / CONFIG
    if not cfg_file.exists():
        raise WorkbenchError(f"{cfg_file} is missing; is {path} a PEFT adapter directory?")
    try:
        cfg = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise WorkbenchError(f"{cfg_file} is not valid JSON ({e}); it may be truncated") from None
    peft_type = str(cfg.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise WorkbenchError(f"{cfg_file}: peft_type is {peft_type}; only LoRA adapters can be read")
    if cfg.get("use_dora"):
        raise WorkbenchError(
            f"{cfg_file}: use_dora is true. DoRA rescales the weight by a learned magnitude, which a "
            "plain LoRA cannot express; merge it with peft (`merge_and_unload`) or retrain as LoRA"
        )
    if cfg.get("modules_to_save"):
        raise WorkbenchError(
            f"{cfg_file}: modules_to_save={cfg['modules_to_save']} trains full copies of modules, "
            "which are not LoRA factors; export the adapter without them"
        )
    tensors = read_safetensors(path / WEIGHTS)
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in tensors.items():
        m = _KEY.match(key)
        if m is None:
            if ".lora_" in key or key.endswith(".weight"):
                raise WorkbenchError(
                    f"{path / WEIGHTS}: tensor {key!r} is not a LoRA factor (lora_A/lora_B); "
                    "biases, embeddings and DoRA magnitudes are not supported"
                )
            continue
        pairs.setdefault(m["module"], {})[m["AB"]] = t.float()
    if not pairs:
        raise WorkbenchError(f"{path / WEIGHTS} holds no lora_A/lora_B tensors")
    unpaired = [mod for mod, ab in pairs.items() if len(ab) != 2]
    if unpaired:
        raise WorkbenchError(f"{path / WEIGHTS}: module {unpaired[0]!r} has only one of lora_A/lora_B")
    r0, alpha0 = cfg.get("r", 8), cfg.get("lora_alpha", 8)
    modules = {}
    for mod, ab in pairs.items():
        r = _pattern_value(cfg.get("rank_pattern") or {}, mod, r0)
        if ab["A"].shape[0] != r:
            raise WorkbenchError(
                f"{path}: module {mod!r} has rank {ab['A'].shape[0]} in its weights but {r} in "
                f"{CONFIG} (r / rank_pattern); the config does not belong to these weights"
            )
        alpha = _pattern_value(cfg.get("alpha_pattern") or {}, mod, alpha0)
        modules[mod] = LoraFactors(ab["A"], ab["B"], float(alpha))
    ours = cfg.get(OUR_KEY) or {}
    return Adapter(
        name=name or ours.get("name") or _identifier(path.name),
        modules=modules,
        scaling="rslora" if cfg.get("use_rslora") else "standard",
        base_fingerprint=ours.get("base_fingerprint"),
        lineage=ours.get("lineage") or {"method": "peft", "source": str(path)},
        metadata=ours.get("metadata") or {},
    )


def write_peft(
    adapter: Adapter,
    path: str | Path,
    *,
    target_modules: list[str] | None = None,
    base_model_name_or_path: str | None = None,
    task_type: str | None = "CAUSAL_LM",
    fan_in_fan_out: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write ``adapter`` as a PEFT LoRA directory, atomically.

    Args:
        target_modules: what to write as ``target_modules`` (default: the exact module paths).
        base_model_name_or_path: recorded for peft's ``AutoPeftModel``.
        task_type: peft's task type (``"CAUSAL_LM"``; None for encoders).
        fan_in_fan_out: True for GPT-2's Conv1D layers (weight stored (in, out)); the factors
            themselves are always A (r, in), B (out, r).
    """
    from peft import LoraConfig  # peft builds a config that peft itself accepts

    ranks = Counter(f.r for f in adapter.modules.values())
    alphas = Counter(f.alpha for f in adapter.modules.values())
    r0, alpha0 = ranks.most_common(1)[0][0], alphas.most_common(1)[0][0]
    config = LoraConfig(
        r=r0,
        lora_alpha=alpha0,
        target_modules=sorted(target_modules or adapter.modules),
        rank_pattern={re.escape(m): f.r for m, f in adapter.modules.items() if f.r != r0},
        alpha_pattern={re.escape(m): f.alpha for m, f in adapter.modules.items() if f.alpha != alpha0},
        use_rslora=SCALINGS.has(adapter.scaling, "rank_stabilized"),
        lora_dropout=0.0,
        bias="none",
        fan_in_fan_out=fan_in_fan_out,
        task_type=task_type,
        base_model_name_or_path=base_model_name_or_path,
    )
    tensors = {}
    for m, f in adapter.modules.items():
        tensors[f"base_model.model.{m}.lora_A.weight"] = f.A.detach().float().cpu().contiguous()
        tensors[f"base_model.model.{m}.lora_B.weight"] = f.B.detach().float().cpu().contiguous()
    with atomic_directory(path, overwrite=overwrite) as tmp:
        config.save_pretrained(str(tmp))
        cfg = json.loads((tmp / CONFIG).read_text())
        cfg[OUR_KEY] = {
            "name": adapter.name,
            "base_fingerprint": adapter.base_fingerprint,
            "lineage": adapter.lineage,
            "metadata": adapter.metadata,
        }
        (tmp / CONFIG).write_text(json.dumps(cfg, indent=2, sort_keys=True, default=str))
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": "pt"})
    return Path(path)


def _identifier(s: str) -> str:
    s = re.sub(r"\W", "_", s)
    return s if s.isidentifier() else f"adapter_{s}"
