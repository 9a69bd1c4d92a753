"""The allow-list for ``adapter_config.json``: every peft ``LoraConfig`` field is read exactly or refused.

A field either (a) does not change the forward pass (metadata, training-time settings, which modules
to target: the tensors in the file say that), (b) is implemented exactly (r, lora_alpha, patterns,
rsLoRA, DoRA, lora_bias, bias, modules_to_save, trainable_token_indices), or (c) is refused with a
``WorkbenchError`` that names the field, the value and the fix. A field this loader does not know is
refused when it holds anything but an empty value: a future peft option may change the forward
pass, and guessing would be silent.

Reference: peft 0.21 ``peft/tuners/lora/config.py`` (``LoraConfig``) and ``layer.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from workbench.adapters.config_checks import OUR_KEY, check_adapter_config
from workbench.errors import WorkbenchError

# (a) Fields that do not change what a trained adapter computes.
NEUTRAL = {
    "peft_type", "task_type", "auto_mapping", "peft_version", "base_model_name_or_path", "revision",
    "inference_mode", "target_modules", "exclude_modules", "layers_to_transform", "layers_pattern",
    "lora_dropout",  # dropout acts in training only
    "fan_in_fan_out",  # the layout of the base weight; factors are always A (r, in), B (out, r)
    "runtime_config",  # ephemeral GPU offload: where, not what
    "megatron_core",  # a module name, used only with megatron_config
    "qalora_group_size",  # used only with use_qalora
    "eva_config", "lora_ga_config", "corda_config", "loftq_config",  # used by init_lora_weights only
    "velora_config",  # VeLoRA changes the backward pass only (compressed activations)
    "ensure_weight_tying",  # checked against the tensors: tied extras are refused below
    OUR_KEY,
}
# (b) Fields read exactly (see PeftSettings).
EXACT = {"r", "lora_alpha", "rank_pattern", "alpha_pattern", "use_rslora", "bias", "lora_bias",
         "use_dora", "init_lora_weights", "modules_to_save", "trainable_token_indices"}

# init_lora_weights values after which the trained factors are an ordinary LoRA on the unchanged base.
PLAIN_INITS = {True, False, "gaussian", "orthogonal", "eva"}
# Values that change the base weights when the adapter is created (the adapter is W' + sBA, W' ≠ W).
BASE_CHANGING_INITS = ("pissa", "olora", "corda", "lora_ga")
_CONVERT = (
    "convert it once with peft, where the initial adapter was saved: "
    "`peft_model.save_pretrained(out_dir, path_initial_model_for_weight_conversion=initial_dir)` "
    "(initial_dir holds the adapter saved right after get_peft_model, before training); the result is "
    "an ordinary LoRA of rank 2r on the unchanged base, which loads here exactly"
)

# (c) Fields refused when set, with the reason and the fix.
REFUSED = {
    "alora_invocation_tokens": (
        "aLoRA applies the adapter only from the invocation tokens on, per sequence; this workbench "
        "applies adapters to every token. Use the adapter with peft, or retrain it as a plain LoRA"),
    "layer_replication": (
        "layer_replication stacks copies of base layers into a deeper model, which the workbench does "
        "not build. Use peft (`merge_and_unload`) to make the expanded model, then load it as a base"),
    "target_parameters": (
        "LoRA on raw nn.Parameters (MoE experts) is not supported; target nn.Linear modules instead"),
    "megatron_config": ("Megatron-parallel LoRA layers are not supported; export the adapter from an "
                        "unsharded model"),
    "use_qalora": "QALoRA pools the input in groups (GPTQ models only); it is not supported",
    "monteclora_config": ("MonteCLoRA samples its factors; it is not a fixed LoRA update. Use it with "
                          "peft"),
    "use_bdlora": "BD-LoRA's block-diagonal factors are not supported; use the adapter with peft",
    "arrow_config": "Arrow routing is not supported here; use the adapter with peft",
    "kasa_config": ("KaSA truncates the base weight's singular values and adds a learned diagonal; it is "
                    "not supported. Use it with peft, or merge it there (`merge_and_unload`)"),
}


@dataclass
class PeftSettings:
    """What the forward pass needs from a config (everything else was checked and set aside)."""

    r: int
    alpha: float
    rank_pattern: dict = field(default_factory=dict)
    alpha_pattern: dict = field(default_factory=dict)
    rslora: bool = False
    bias: str = "none"  # "none" | "lora_only" | "all": which base biases peft trained and saved
    lora_bias: bool = False  # lora_B carries a bias (scaled by s, like its weight)
    dora: bool = False  # weight-decomposed (lora_magnitude_vector per module)
    modules_to_save: list = field(default_factory=list)  # modules peft trained whole copies of
    token_indices: list | dict | None = None  # trainable_token_indices: ids, or module -> ids

    def saved_module(self, path: str) -> str | None:
        """The ``modules_to_save`` entry that ``path`` (a parameter) lies in, as peft matches it."""
        parts = path.split(".")
        for i in range(1, len(parts)):
            prefix = ".".join(parts[:i])
            for m in self.modules_to_save:
                if prefix == m or prefix.endswith("." + m):
                    return m
        return None

    def token_rows(self, module: str) -> list[int] | None:
        """The trainable token ids of embedding ``module``."""
        if isinstance(self.token_indices, dict):
            return next((v for k, v in self.token_indices.items()
                         if module == k or module.endswith("." + k)), None)
        return self.token_indices

    def rank(self, module: str) -> int:
        return _pattern_value(self.rank_pattern, module, self.r)

    def alpha_of(self, module: str) -> float:
        return float(_pattern_value(self.alpha_pattern, module, self.alpha))


def read_settings(cfg: dict, cfg_file: Path) -> PeftSettings:
    """Check every field of a parsed ``adapter_config.json`` and return what the forward uses.

    Raises:
        WorkbenchError: naming the field, its value and the fix, for anything that would change the
            forward pass in a way this workbench does not reproduce exactly.
    """
    check_adapter_config(cfg, cfg_file)  # JSON types, ranks, alphas and pattern regexes: one checker
    peft_type = str(cfg.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise WorkbenchError(f"{cfg_file}: peft_type is {peft_type}; only LoRA adapters can be read")
    for key, value in cfg.items():
        if key in NEUTRAL or key in EXACT or not _is_set(value):
            continue
        if key in REFUSED:
            raise WorkbenchError(f"{cfg_file}: {key}={value!r} is not supported: {REFUSED[key]}")
        raise WorkbenchError(
            f"{cfg_file}: unknown field {key}={value!r}. It may change the forward pass, and this "
            "loader reproduces only what it knows exactly; remove the field if it is inert, or use "
            "the adapter with peft"
        )
    _check_init(cfg.get("init_lora_weights", True), cfg_file)
    bias = cfg.get("bias", "none") or "none"
    if bias not in ("none", "all", "lora_only"):
        raise WorkbenchError(f"{cfg_file}: bias={bias!r}; peft writes 'none', 'all' or 'lora_only'")
    settings = PeftSettings(
        r=cfg.get("r", 8),
        alpha=float(cfg.get("lora_alpha", 8)),
        rank_pattern=cfg.get("rank_pattern") or {},
        alpha_pattern=cfg.get("alpha_pattern") or {},
        rslora=bool(cfg.get("use_rslora", False)),
        bias=bias,
        lora_bias=bool(cfg.get("lora_bias", False)),
        dora=bool(cfg.get("use_dora", False)),
        modules_to_save=_names(cfg.get("modules_to_save"), "modules_to_save", cfg_file),
        token_indices=_tokens(cfg.get("trainable_token_indices"), cfg_file),
    )
    if cfg.get("ensure_weight_tying") and (settings.modules_to_save or settings.token_indices):
        raise WorkbenchError(
            f"{cfg_file}: ensure_weight_tying=true with modules_to_save/trainable_token_indices ties the "
            "trained copies of the embedding and the head, which this loader does not reproduce; save "
            "the adapter without ensure_weight_tying, or use it with peft")
    if settings.dora and settings.lora_bias:
        raise WorkbenchError(f"{cfg_file}: use_dora and lora_bias are both true, which peft itself "
                             "refuses; the config does not come from peft")
    return settings


def _check_init(init, cfg_file: Path) -> None:
    if not isinstance(init, bool | str):
        raise WorkbenchError(f"{cfg_file}: init_lora_weights is {init!r}; it must be true, false or the "
                             "name of an initialization (a string). Fix that field")
    if init in PLAIN_INITS:
        return
    text = str(init).lower()
    if text.startswith(BASE_CHANGING_INITS):
        raise WorkbenchError(
            f"{cfg_file}: init_lora_weights={init!r}. This adapter was initialized from the base "
            "weights, and peft changed the base (W' = W - s·B₀A₀) when it made it; applied to the "
            f"unchanged base it would be wrong. To load it, {_CONVERT}"
        )
    if text == "loftq":
        raise WorkbenchError(
            f"{cfg_file}: init_lora_weights='loftq'. LoftQ adapters are trained against a quantized "
            "base (Q + sBA ≈ W), not this one. Merge it with peft on the LoftQ base (`merge_and_unload`) "
            "and load the merged model, or convert it as for PiSSA: " + _CONVERT
        )
    if text == "mica":
        raise WorkbenchError(f"{cfg_file}: init_lora_weights='mica' selects peft's MiCA variant, which "
                             "is not supported; use the adapter with peft")
    raise WorkbenchError(f"{cfg_file}: init_lora_weights={init!r} is unknown; peft writes true, false, "
                         "'gaussian', 'orthogonal', 'eva', 'pissa', 'olora', 'corda', 'loftq' or 'lora_ga'")


def _names(value, key: str, cfg_file: Path) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise WorkbenchError(f"{cfg_file}: {key}={value!r}; it must be a list of module names")
    return value


def _tokens(value, cfg_file: Path):
    ok = (value is None or (isinstance(value, list) and all(isinstance(i, int) for i in value)) or
          (isinstance(value, dict) and all(isinstance(v, list) and all(isinstance(i, int) for i in v)
                                           for v in value.values())))
    if not ok:
        raise WorkbenchError(f"{cfg_file}: trainable_token_indices={value!r}; it must be a list of token "
                             "ids or an object module name -> list of token ids")
    return value


def _is_set(value) -> bool:
    """Whether a field holds anything but an empty/default value (None, False, {}, [], "")."""
    return not (value is None or value is False or value == {} or value == [] or value == "")





def _pattern_value(patterns: dict, module: str, default):
    """peft's ``get_pattern_key``: the first key that matches the end of the module path."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default
