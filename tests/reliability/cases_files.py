"""Catalogue rows for files: adapters and routers on disk, saving, the command line, the serve listing."""

from __future__ import annotations

import json
import struct

import torch

from tests.reliability.case import Case, bad_config, bad_router, bad_weights, with_field
from tests.reliability.world import World, copy_adapter


def _first(tensors: dict, part: str) -> str:
    return next(k for k in sorted(tensors) if part in k)


def _set(part: str, fn):
    def mutate(tensors):
        key = _first(tensors, part)
        tensors[key] = fn(tensors[key])
        return tensors

    return mutate


def _drop(part: str):
    def mutate(tensors):
        del tensors[_first(tensors, part)]
        return tensors

    return mutate


def _header(obj) -> bytes:
    raw = json.dumps(obj).encode()
    return struct.pack("<Q", len(raw)) + raw


def _poison(value: float):
    def fn(t):
        t = t.clone()
        t[0, 0] = value
        return t

    return fn


ADAPTER_CONFIG = [
    bad_config("truncated", lambda c: json.dumps(c).encode()[:30], "not valid JSON"),
    bad_config("json-list", lambda c: [c], "JSON list"),
    bad_config("json-string", lambda c: "LORA", "JSON string"),
    bad_config("json-null", lambda c: None, "JSON null"),
    bad_config("json-number", lambda c: 8, "JSON integer"),
    bad_config("non-utf8", lambda c: b'{"r": 2, "lora_alpha": "\xff\xfe"}', "not UTF-8"),
    bad_config(
        "latin1",
        lambda c: json.dumps({**c, "note": "caf\u00e9"}, ensure_ascii=False).encode("latin-1"),
        "not UTF-8",
    ),
    bad_config("alpha-word", with_field(lora_alpha="sixteen"), "lora_alpha is 'sixteen'"),
    bad_config("alpha-nan", with_field(lora_alpha=float("nan")), "lora_alpha is nan"),
    bad_config("alpha-inf", with_field(lora_alpha=float("inf")), "lora_alpha is inf"),
    bad_config("alpha-bool", with_field(lora_alpha=True), "lora_alpha is True"),
    bad_config("alpha-list", with_field(lora_alpha=[16]), "lora_alpha is \\[16\\]"),
    bad_config("r-string", with_field(r="8"), "r is '8'"),
    bad_config("r-zero", with_field(r=0), "r is 0 .*at least 1"),
    bad_config("r-negative", with_field(r=-2), "r is -2"),
    bad_config("r-float", with_field(r=2.5), "r is 2.5"),
    bad_config("r-null", with_field(r=None), "r is None"),
    bad_config("rank-pattern-list", with_field(rank_pattern=["q_proj"]), "rank_pattern is"),
    bad_config(
        "rank-pattern-regex", with_field(rank_pattern={"((": 2}), "rank_pattern key '\\(\\(' is not a valid"
    ),
    bad_config(
        "rank-pattern-zero", with_field(rank_pattern={"q_proj": 0}), "rank_pattern\\['q_proj'\\] is 0"
    ),
    bad_config("rank-pattern-string", with_field(rank_pattern={"q_proj": "2"}), "rank_pattern\\['q_proj'\\]"),
    bad_config("alpha-pattern-regex", with_field(alpha_pattern={"[q": 4}), "alpha_pattern key '\\[q'"),
    bad_config("alpha-pattern-nan", with_field(alpha_pattern={"q_proj": float("nan")}), "alpha_pattern.*nan"),
    bad_config("alpha-pattern-word", with_field(alpha_pattern={"q_proj": "x"}), "alpha_pattern.*'x'"),
    bad_config("alpha-pattern-string", with_field(alpha_pattern="q_proj"), "alpha_pattern is 'q_proj'"),
    bad_config("rslora-string", with_field(use_rslora="yes"), "use_rslora is 'yes'"),
    bad_config("fan-in-fan-out-string", with_field(fan_in_fan_out="no"), "fan_in_fan_out is 'no'"),
    bad_config("dropout-1.5", with_field(lora_dropout=1.5), "lora_dropout is 1.5"),
    bad_config("peft-type-number", with_field(peft_type=5), "peft_type is 5"),
    bad_config("peft-type-prefix", with_field(peft_type="PREFIX_TUNING"), "PREFIX_TUNING"),
    bad_config("targets-number", with_field(target_modules=7), "target_modules is 7"),
    bad_config("ours-list", with_field(lora_workbench=["a"]), "lora_workbench is"),
    bad_config("ours-name-spaces", with_field(lora_workbench={"name": "my adapter"}), "lora_workbench.name"),
    bad_config("ours-name-number", with_field(lora_workbench={"name": 5}), "lora_workbench.name is 5"),
    bad_config("ours-lineage-string", with_field(lora_workbench={"lineage": "x"}), "lora_workbench.lineage"),
    bad_config(
        "ours-fingerprint-number",
        with_field(lora_workbench={"base_fingerprint": 5}),
        "lora_workbench.base_fingerprint",
    ),
    bad_config("rank-mismatch", with_field(r=5), r"rank 2 .* in its weights but 5"),
    bad_config(
        "other-base",
        lambda c: {**c, "lora_workbench": {**c["lora_workbench"], "base_fingerprint": "sha256:0000"}},
        "made for a base with fingerprint sha256:0000",
    ),
]

ADAPTER_WEIGHTS = [
    bad_weights("truncated", lambda b: b[: len(b) // 2], "adapter_model.safetensors", raw=True),
    bad_weights("empty", lambda b: b"", "adapter_model.safetensors", raw=True),
    bad_weights("garbage", lambda b: b"\x00garbage" * 10, "not a readable safetensors", raw=True),
    bad_weights(
        "header-too-long", lambda b: struct.pack("<Q", 2**40) + b[8:], "not a readable safetensors", raw=True
    ),
    bad_weights(
        "header-not-json", lambda b: struct.pack("<Q", 4) + b"{{{{", "not a readable safetensors", raw=True
    ),
    bad_weights(
        "header-lies-offsets",
        lambda b: _header({"x.lora_A.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 1000]}}),
        "not a readable safetensors",
        raw=True,
    ),
    bad_weights(
        "header-bad-dtype",
        lambda b: (
            _header({"x.lora_A.weight": {"dtype": "Q9", "shape": [1], "data_offsets": [0, 4]}}) + b"\0" * 4
        ),
        "not a readable safetensors",
        raw=True,
    ),
    bad_weights("nan-in-A", _set("layers.0.self_attn.q_proj.lora_A", _poison(float("nan"))), "NaN/Inf"),
    bad_weights("inf-in-B", _set("layers.1.self_attn.v_proj.lora_B", _poison(float("inf"))), "NaN/Inf"),
    bad_weights("neg-inf-in-B", _set("layers.0.self_attn.k_proj.lora_B", _poison(float("-inf"))), "NaN/Inf"),
    bad_weights("unpaired", _drop("layers.0.self_attn.q_proj.lora_B"), "q_proj"),
    bad_weights("scalar-factor", _set("layers.0.self_attn.q_proj.lora_A", lambda t: t.sum()), "2-D"),
    bad_weights("1d-factor", _set("layers.0.self_attn.q_proj.lora_A", lambda t: t.flatten()), "2-D"),
    bad_weights("int-factor", _set("layers.0.self_attn.q_proj.lora_A", lambda t: t.int()), "float"),
    bad_weights(
        "rank-disagrees", _set("layers.0.self_attn.q_proj.lora_B", lambda t: t[:, :1].contiguous()), "q_proj"
    ),
    bad_weights(
        "wrong-in-features",
        _set("layers.0.self_attn.q_proj.lora_A", lambda t: torch.zeros(t.shape[0], t.shape[1] + 3)),
        "q_proj",
    ),
    bad_weights(
        "unknown-module",
        lambda t: {
            **t,
            "base_model.model.model.nowhere.lora_A.weight": torch.zeros(2, 4),
            "base_model.model.model.nowhere.lora_B.weight": torch.zeros(4, 2),
        },
        "nowhere",
    ),
    bad_weights(
        "unknown-tensor",
        lambda t: {**t, "base_model.model.model.layers.0.self_attn.q_proj.lora_Z.weight": torch.zeros(2, 2)},
        "lora_Z",
    ),
    bad_weights("no-lora-tensors", lambda t: {"foo.weight": torch.zeros(2, 2)}, "foo.weight|no lora"),
]


def _pickle_only(w: World) -> None:
    d = copy_adapter(w)
    (d / "adapter_model.safetensors").rename(d / "adapter_model.bin")


def _weights_dir(w: World) -> None:
    d = copy_adapter(w)
    (d / "adapter_model.safetensors").unlink()
    (d / "adapter_model.safetensors").mkdir()


def _no_weights(w: World) -> None:
    (copy_adapter(w) / "adapter_model.safetensors").unlink()


ADAPTER_DIRS = [
    Case("load:missing-dir", lambda w: w.lab.load_adapter(w.root / "nothing"), "not a directory"),
    Case("load:a-file", lambda w: w.lab.load_adapter(w.project / "analysis.ipynb"), "not a directory"),
    Case("load:empty-dir", lambda w: w.lab.load_adapter(w.bad), "adapter_config.json is missing"),
    Case("load:pickle-only", lambda w: w.lab.load_adapter(w.bad / "x"), "pickle", setup=_pickle_only),
    Case(
        "load:weights-missing",
        lambda w: w.lab.load_adapter(w.bad / "x"),
        "adapter_model.safetensors is missing",
        setup=_no_weights,
    ),
    Case("load:weights-is-dir", lambda w: w.lab.load_adapter(w.bad / "x"), "not a file", setup=_weights_dir),
    Case("load:name-taken", lambda w: w.lab.load_adapter(w.adapter_dir), "already in this lab"),
    Case(
        "load:name-not-identifier",
        lambda w: w.lab.load_adapter(w.adapter_dir, name="my adapter"),
        "not a Python identifier",
    ),
    Case("load:name-reserved", lambda w: w.lab.load_adapter(w.adapter_dir, name="base"), "reserved"),
    Case(
        "load:name-of-router", lambda w: w.lab.load_adapter(w.adapter_dir, name="rt"), "already in this lab"
    ),
]


def _router_with(**params):
    return lambda c: {**c, "params": {**c["params"], **params}}


ROUTER_FILES = [
    Case(
        "router-file:missing-dir", lambda w: w.lab.load_router(w.root / "nothing"), "router.json is missing"
    ),
    Case("router-file:adapter-dir", lambda w: w.lab.load_router(w.adapter_dir), "router.json is missing"),
    bad_router("truncated", lambda c: json.dumps(c).encode()[:20], "not valid JSON"),
    bad_router("json-list", lambda c: [c], "not an object"),
    bad_router("non-utf8", lambda c: b'{"name": "\xff"}', "not UTF-8"),
    bad_router("no-mechanism", lambda c: {k: v for k, v in c.items() if k != "mechanism"}, "mechanism"),
    bad_router("unknown-mechanism", lambda c: {**c, "mechanism": "nope"}, "nope"),
    bad_router("params-list", lambda c: {**c, "params": [1]}, "params"),
    bad_router("unknown-param", _router_with(rank=4), "has no parameter 'rank'; its parameters"),
    bad_router("param-nan", _router_with(alpha=float("nan")), "alpha=nan is not a finite number"),
    bad_router("param-r-zero", _router_with(r=0), "r=0 is out of range.*\\[1, "),
    bad_router("name-number", lambda c: {**c, "name": 5}, "name is 5"),
    bad_router("other-base", lambda c: {**c, "base_fingerprint": "sha256:0000"}, "sha256:0000"),
    bad_router("weights-truncated", None, "router.safetensors", weights=lambda b: b[: len(b) // 2]),
    bad_router("weights-garbage", None, "not a readable safetensors", weights=lambda b: b"\x01" * 40),
    bad_router("weights-other-shape", _router_with(r=8, k=2), "do not fit smora"),
    Case("router-file:name-taken", lambda w: w.lab.load_router(w.router_dir), "taken"),
]


def _notes(w: World) -> None:
    (copy_adapter(w, "notes") / "notes.txt").write_text("my notes")


def _sub(w: World) -> None:
    (copy_adapter(w, "sub") / "runs").mkdir()


def _file_at(w: World) -> None:
    (w.bad / "afile").write_text("x")


SAVING = [
    Case(
        "save:exists", lambda w: w.lab.save_adapter("a", w.adapter_dir), "already exists; pass overwrite=True"
    ),
    Case(
        "save:overwrite-project",
        lambda w: w.lab.save_adapter("a", w.project, overwrite=True),
        "analysis.ipynb, data",
    ),
    Case(
        "save:overwrite-adapter-with-notes",
        lambda w: w.lab.save_adapter("a", w.bad / "notes", overwrite=True),
        "notes.txt",
        setup=_notes,
    ),
    Case(
        "save:overwrite-adapter-with-subfolder",
        lambda w: w.lab.save_adapter("b", w.bad / "sub", overwrite=True),
        "runs",
        setup=_sub,
    ),
    Case(
        "save:overwrite-a-file",
        lambda w: w.lab.save_adapter("a", w.bad / "afile", overwrite=True),
        "not a folder",
        setup=_file_at,
    ),
    Case("save:unknown-adapter", lambda w: w.lab.save_adapter("zz", w.bad / "out"), "no adapter 'zz'"),
    Case("save:name-is-number", lambda w: w.lab.save_adapter(5, w.bad / "out"), "adapter name"),
    Case(
        "save:adapter-of-other-base",
        lambda w: w.lab.save_adapter(_foreign(w), w.bad / "out"),
        "made on another base",
    ),
    Case("save-router:unknown", lambda w: w.lab.save_router("zz", w.bad / "out"), "no router 'zz'"),
    Case("save-router:exists", lambda w: w.lab.save_router("rt", w.router_dir), "already exists"),
    Case(
        "save-router:overwrite-project",
        lambda w: w.lab.save_router("rt", w.project, overwrite=True),
        "analysis.ipynb",
    ),
    Case(
        "save-router:overwrite-a-file",
        lambda w: w.lab.save_router("rt", w.bad / "afile", overwrite=True),
        "not a folder",
        setup=_file_at,
    ),
]


def _foreign(w: World):
    a = w.other.adapters["a"].copy()
    a.base_fingerprint = "sha256:elsewhere"
    return a


CASES = [*ADAPTER_CONFIG, *ADAPTER_WEIGHTS, *ADAPTER_DIRS, *ROUTER_FILES, *SAVING]
