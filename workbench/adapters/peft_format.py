"""PEFT LoRA directories (``adapter_config.json`` + ``adapter_model.safetensors``) <-> ``Adapter``.

Read by allow-list: every config field is read exactly or refused (``peft_config``), and every
tensor in the file is a LoRA factor (``lora_A/B``, ``lora_embedding_A/B``), a supported extra (DoRA
magnitude, lora_B bias, trainable token rows), a base parameter (a copy, which must equal the base,
or a trained bias / ``modules_to_save`` parameter the config declares: ``base_copies``, checked when
the adapter joins a lab), or a refusal that names it: nothing is skipped. Lineage and metadata
travel in the config under the key ``lora_workbench``
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
from workbench.adapters.config_checks import OUR_KEY, check_lora_tensors, read_adapter_config
from workbench.adapters.files import atomic_directory, read_safetensors
from workbench.adapters.params import SavedParam
from workbench.adapters.peft_config import PeftSettings, read_settings
from workbench.errors import WorkbenchError

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
_PREFIX = "base_model.model."
_ADAPTER = r"(?:\.[^.]+)?"  # an adapter name peft may keep in the key (``lora_A.default.weight``)
_KEYS = {  # what each LoRA tensor of peft is, by the end of its key
    "A": re.compile(rf"^(?P<module>.+)\.lora_A{_ADAPTER}\.weight$"),
    "B": re.compile(rf"^(?P<module>.+)\.lora_B{_ADAPTER}\.weight$"),
    "bias": re.compile(rf"^(?P<module>.+)\.lora_B{_ADAPTER}\.bias$"),
    "magnitude": re.compile(rf"^(?P<module>.+)\.lora_magnitude_vector{_ADAPTER}(?:\.weight)?$"),
    "embA": re.compile(rf"^(?P<module>.+)\.lora_embedding_A{_ADAPTER}$"),
    "embB": re.compile(rf"^(?P<module>.+)\.lora_embedding_B{_ADAPTER}$"),
    "tokens": re.compile(r"^(?P<module>.+)\.token_adapter\.trainable_tokens_delta(?:\.[^.]+)?$"),
}
_REFUSED_TENSORS: dict[str, str] = {}


def read_peft(path: str | Path, name: str | None = None) -> Adapter:
    """Read a PEFT LoRA directory into an ``Adapter``.

    Copies of base parameters in the file are kept in ``adapter.base_copies``; a lab checks them
    against its base (``workbench.adapters.base_copies``) before it takes the adapter.

    Raises:
        WorkbenchError: missing/truncated files, pickle weights, a config field or a tensor that
            this workbench does not apply exactly, unpaired factors, NaN/Inf values. Each message
            names the file, the field or tensor, and the fix.
    """
    path = Path(path)
    if not path.is_dir():
        raise WorkbenchError(f"{path} is not a directory; give the folder that holds {CONFIG}")
    cfg_file = path / CONFIG
    if not cfg_file.exists():
        raise WorkbenchError(f"{cfg_file} is missing; is {path} a PEFT adapter directory?")
    cfg = read_adapter_config(cfg_file)  # JSON types, ranges, regexes and UTF-8 checked there
    settings = read_settings(cfg, cfg_file)
    tensors = read_safetensors(path / WEIGHTS)
    check_lora_tensors(tensors, path / WEIGHTS)  # 2-D float factors, before any shape is read
    modules, base_copies = _classify(tensors, settings, path / WEIGHTS)
    ours = cfg.get(OUR_KEY) or {}
    if not isinstance(ours, dict):
        ours = {}
    return Adapter(
        name=name or ours.get("name") or _identifier(path.name),
        modules=modules,
        scaling="rslora" if settings.rslora else "standard",
        base_fingerprint=ours.get("base_fingerprint"),
        lineage=ours.get("lineage") or {"method": "peft", "source": str(path)},
        metadata=ours.get("metadata") or {},
        base_copies=base_copies,
    )


def _classify(tensors: dict[str, torch.Tensor], settings: PeftSettings, file: Path):
    """Sort every tensor into factors, extras or base copies; refuse the rest, naming it."""
    parts: dict[str, dict[str, torch.Tensor]] = {}
    base_copies: dict[str, SavedParam] = {}
    for key, t in tensors.items():
        short = key[len(_PREFIX):] if key.startswith(_PREFIX) else key
        kind, m = next(((k, rx.match(short)) for k, rx in _KEYS.items() if rx.match(short)), (None, None))
        if kind in _REFUSED_TENSORS:
            raise WorkbenchError(f"{file}: tensor {key!r} {_REFUSED_TENSORS[kind]}")
        if kind is None:
            if "lora_" in short or "token_adapter" in short or "modules_to_save" in short:
                raise WorkbenchError(
                    f"{file}: tensor {key!r} is not a LoRA factor this workbench knows (lora_A/lora_B "
                    "weights, lora_B bias, lora_magnitude_vector); it would change the forward pass, so "
                    "the adapter is refused. Use it with peft"
                )
            path = short.replace(".base_layer.", ".")
            group = settings.saved_module(path)
            role = "module" if group else "bias" if path.endswith(".bias") and settings.bias != "none" \
                else "copy"
            base_copies[path] = SavedParam(t, role, group=group or "")
            continue
        if kind == "tokens":
            rows = settings.token_rows(m["module"])
            if rows is None or len(rows) != t.shape[0]:
                raise WorkbenchError(
                    f"{file}: tensor {key!r} holds {t.shape[0]} token rows but trainable_token_indices "
                    f"gives {rows!r} for {m['module']!r}; config and weights disagree")
            base_copies[f"{m['module']}.weight"] = SavedParam(t, "tokens", torch.tensor(rows), m["module"])
            continue
        p = parts.setdefault(m["module"], {})
        if kind in ("embA", "embB"):  # same layout as lora_A/B: A (r, num_embeddings), B (dim, r)
            p["embedding"] = t
            kind = kind[-1]
        p[kind] = t
    if not parts:
        raise WorkbenchError(f"{file} holds no lora_A/lora_B tensors")
    modules = {}
    for mod, p in parts.items():
        if "A" not in p or "B" not in p:
            raise WorkbenchError(f"{file}: module {mod!r} has only some of lora_A/lora_B "
                                 f"({sorted(p)}); the file is incomplete")
        if ("magnitude" in p) != settings.dora:
            raise WorkbenchError(
                f"{file}: module {mod!r} {'has' if 'magnitude' in p else 'lacks'} a DoRA magnitude "
                f"(lora_magnitude_vector) but use_dora is {settings.dora}; config and weights disagree")
        if "bias" in p and not settings.lora_bias:
            raise WorkbenchError(f"{file}: module {mod!r} has a lora_B bias but lora_bias is false in "
                                 f"{CONFIG}; config and weights disagree")
        r = settings.rank(mod)
        if p["A"].dim() != 2 or p["A"].shape[0] != r:
            raise WorkbenchError(
                f"{file.parent}: module {mod!r} has rank {p['A'].shape[0] if p['A'].dim() else '?'} "
                f"(lora_A {tuple(p['A'].shape)}) in its weights but "
                f"{r} in {CONFIG} (r / rank_pattern); the config does not belong to these weights"
            )
        modules[mod] = LoraFactors(
            p["A"].float(), p["B"].float(), settings.alpha_of(mod),
            magnitude=p["magnitude"].float() if "magnitude" in p else None,
            bias=p["bias"].float() if "bias" in p else None,
            embedding="embedding" in p,
        )
    return modules, base_copies


def write_peft(
    adapter: Adapter,
    path: str | Path,
    *,
    target_modules: list[str] | None = None,
    base_model_name_or_path: str | None = None,
    task_type: str | None = "CAUSAL_LM",
    fan_in_fan_out: bool = False,
    overwrite: bool = False,
    extras: tuple[dict, dict] | None = None,
) -> Path:
    """Write ``adapter`` as a PEFT LoRA directory, atomically.

    Args:
        target_modules: what to write as ``target_modules`` (default: the exact module paths).
        base_model_name_or_path: recorded for peft's ``AutoPeftModel``.
        task_type: peft's task type (``"CAUSAL_LM"``; None for encoders).
        fan_in_fan_out: True for GPT-2's Conv1D layers (weight stored (in, out)); the factors
            themselves are always A (r, in), B (out, r).
        extras: (tensors, config fields) for trained base parameters (``peft_extras``); an adapter
            with ``params`` needs them (they hold the trained values, base + Δ).
    """
    if adapter.params and extras is None:
        raise WorkbenchError(f"adapter {adapter.name!r} holds trained base parameters; save it with "
                             "lab.save_adapter, which knows the base values they change")
    extra_tensors, extra_config = extras or ({}, {})
    from peft import LoraConfig  # peft builds a config that peft itself accepts

    kinds = adapter.kinds
    if len(kinds) > 1:
        raise WorkbenchError(
            f"adapter {adapter.name!r} mixes module kinds {sorted(kinds)} (DoRA / lora_bias / plain); "
            "one peft config sets use_dora and lora_bias for all modules, so it cannot be written as "
            "one PEFT directory. Split it by kind (Adapter(modules={...})) and save each part")
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
        use_dora=kinds == {"dora"},
        lora_bias=kinds == {"lora_bias"},
        lora_dropout=0.0,
        bias=extra_config.get("bias", "none"),
        modules_to_save=extra_config.get("modules_to_save"),
        trainable_token_indices=extra_config.get("trainable_token_indices"),
        fan_in_fan_out=fan_in_fan_out,
        task_type=task_type,
        base_model_name_or_path=base_model_name_or_path,
    )
    tensors = {}
    for m, f in adapter.modules.items():
        a_key, b_key = ("lora_embedding_A", "lora_embedding_B") if f.embedding else \
            ("lora_A.weight", "lora_B.weight")
        tensors[f"base_model.model.{m}.{a_key}"] = f.A.detach().float().cpu().contiguous()
        tensors[f"base_model.model.{m}.{b_key}"] = f.B.detach().float().cpu().contiguous()
        if f.bias is not None:
            tensors[f"base_model.model.{m}.lora_B.bias"] = f.bias.detach().float().cpu().contiguous()
        if f.magnitude is not None:
            tensors[f"base_model.model.{m}.lora_magnitude_vector"] = \
                f.magnitude.detach().float().cpu().contiguous()
    tensors.update({f"base_model.model.{k}": v.detach().float().cpu().contiguous()
                    for k, v in extra_tensors.items()})
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
