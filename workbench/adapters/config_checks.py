"""Reading ``adapter_config.json``: bytes -> a checked dict, or a refusal naming file, field and fix.

Only the fields the loader reads are checked here (their JSON types and ranges); what a field
*means* for the forward pass is the loader's business (``peft_format``).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from workbench.errors import WorkbenchError

OUR_KEY = "lora_workbench"


def read_adapter_config(file: Path) -> dict:
    """The parsed config of a PEFT adapter folder; every malformed field is a ``WorkbenchError``."""
    try:
        raw = file.read_bytes()
    except OSError as e:
        raise WorkbenchError(f"{file} cannot be read ({e.strerror or e}); check its permissions") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise WorkbenchError(
            f"{file} is not UTF-8 text (byte {raw[e.start]:#04x} at position {e.start}); "
            "JSON files must be UTF-8: save it again as UTF-8"
        ) from None
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as e:
        raise WorkbenchError(f"{file} is not valid JSON ({e}); it may be truncated") from None
    except RecursionError:
        raise WorkbenchError(f"{file} is not valid JSON (nested too deeply)") from None
    check_adapter_config(cfg, file)
    return cfg


def check_adapter_config(cfg, file: Path | str) -> None:
    """Refuse wrong JSON types and out-of-range values in the fields the loader reads."""
    if not isinstance(cfg, dict):
        raise WorkbenchError(
            f"{file} holds a JSON {_kind(cfg)}, but an adapter config is a JSON object "
            '({"r": 8, "lora_alpha": 16, ...}); the file is not an adapter_config.json'
        )
    if "peft_type" in cfg and not isinstance(cfg["peft_type"], str | type(None)):
        _bad(file, "peft_type", cfg["peft_type"], 'a string such as "LORA"')
    if "r" in cfg:
        _rank(file, "r", cfg["r"])
    if "lora_alpha" in cfg:
        _number(file, "lora_alpha", cfg["lora_alpha"])
    for key in ("rank_pattern", "alpha_pattern"):
        patterns = cfg.get(key)
        if patterns is None:
            continue
        if not isinstance(patterns, dict):
            _bad(file, key, patterns, "an object mapping module-name regexes to values")
        for pattern, value in patterns.items():
            try:
                re.compile(rf"(.*\.)?({pattern})$")
            except re.error as e:
                raise WorkbenchError(
                    f"{file}: {key} key {pattern!r} is not a valid regular expression ({e}); "
                    "escape it (re.escape) or fix the pattern"
                ) from None
            if key == "rank_pattern":
                _rank(file, f"{key}[{pattern!r}]", value)
            else:
                _number(file, f"{key}[{pattern!r}]", value)
    for key in ("use_rslora", "use_dora", "fan_in_fan_out"):
        if cfg.get(key) is not None and not isinstance(cfg[key], bool):
            _bad(file, key, cfg[key], "true or false")
    if "lora_dropout" in cfg and cfg["lora_dropout"] is not None:
        d = cfg["lora_dropout"]
        if not _is_number(d) or not 0 <= d < 1:
            _bad(file, "lora_dropout", d, "a number in [0, 1)")
    targets = cfg.get("target_modules")
    if targets is not None and not isinstance(targets, str) and not (
            isinstance(targets, list) and all(isinstance(t, str) for t in targets)):
        _bad(file, "target_modules", targets, "a regex string or a list of module names")
    ours = cfg.get(OUR_KEY)
    if ours is not None:
        if not isinstance(ours, dict):
            _bad(file, OUR_KEY, ours, "an object with name, lineage, metadata, base_fingerprint")
        name = ours.get("name")
        if name is not None and not (isinstance(name, str) and name.isidentifier()):
            _bad(file, f"{OUR_KEY}.name", name, "a Python identifier (letters, digits, _)")
        for key in ("lineage", "metadata"):
            if ours.get(key) is not None and not isinstance(ours[key], dict):
                _bad(file, f"{OUR_KEY}.{key}", ours[key], "an object")
        fp = ours.get("base_fingerprint")
        if fp is not None and not isinstance(fp, str):
            _bad(file, f"{OUR_KEY}.base_fingerprint", fp, 'a string such as "sha256:..."')


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _rank(file, field: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        _bad(file, field, value, "a whole number of at least 1 (the LoRA rank)")


def _number(file, field: str, value) -> None:
    if not _is_number(value) or not math.isfinite(value):
        _bad(file, field, value, "a finite number (such as 16)")


def _bad(file, field: str, value, want: str):
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    raise WorkbenchError(f"{file}: {field} is {shown} ({_kind(value)}); it must be {want}. "
                         "Fix that field (or export the adapter again)")


def _kind(value) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null",
            int: "integer", float: "number"}.get(type(value), type(value).__name__)


def check_lora_tensors(tensors: dict, file: Path | str) -> None:
    """Every LoRA factor weight (``...lora_A.weight`` / ``...lora_B.weight``) is a 2-D float matrix."""
    for key, t in tensors.items():
        factor = (".lora_A." in key or ".lora_B." in key) and key.endswith(".weight")  # not lora_B.bias
        if factor and (t.dim() != 2 or not t.is_floating_point()):
            raise WorkbenchError(
                f"{file}: tensor {key!r} has shape {tuple(t.shape)} and dtype {t.dtype}; a LoRA factor is a "
                "2-D float matrix (A: (r, in), B: (out, r)). The file is damaged or not a LoRA adapter"
            )
