"""Fuzzing what users hand us on disk: any adapter_config.json and any safetensors header either loads
or is refused with a WorkbenchError (never another exception), and the lab is left as it was."""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import tiny_lab
from workbench.errors import WorkbenchError

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
FIELDS = [
    "r",
    "lora_alpha",
    "rank_pattern",
    "alpha_pattern",
    "use_rslora",
    "use_dora",
    "peft_type",
    "target_modules",
    "lora_dropout",
    "fan_in_fan_out",
    "modules_to_save",
    "bias",
    "lora_workbench",
    "init_lora_weights",
    "layer_replication",
    "task_type",
]
patterns = st.dictionaries(
    st.sampled_from(["q_proj", "v_proj", "((", "[", "layers.0.*", ".*", "q_proj$", "\\"]),
    json_values | st.integers(-2, 9),
    max_size=3,
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    lab = tiny_lab()
    lab.new_adapter("a", r=2, init="random", seed=0)
    path = lab.save_adapter("a", tmp_path_factory.mktemp("fuzz") / "a")
    return path, tiny_lab()


def _load_or_refuse(lab, folder: Path) -> None:
    """Load the folder into ``lab``: a success is undone, a WorkbenchError is fine, anything else fails."""
    before = (dict(lab.adapters), sorted(lab.layers))
    try:
        adapter = lab.load_adapter(folder, name="fz")
    except WorkbenchError:
        assert (dict(lab.adapters), sorted(lab.layers)) == before
        return
    lab.remove_adapter(adapter.name)
    lab.detach()


@st.composite
def configs(draw):
    """A valid config with some fields set to arbitrary JSON (or the whole file: arbitrary JSON or bytes)."""
    kind = draw(st.sampled_from(["fields", "fields", "fields", "patterns", "whole", "bytes"]))
    if kind == "whole":
        return json.dumps(draw(json_values)).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    changes = draw(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=4))
    if kind == "patterns":
        changes |= {draw(st.sampled_from(["rank_pattern", "alpha_pattern"])): draw(patterns)}
    return changes


@SETTINGS
@given(change=configs())
def test_any_adapter_config_loads_or_is_refused_by_name(saved, change):
    path, lab = saved
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "x"
        shutil.copytree(path, folder)
        f = folder / "adapter_config.json"
        if isinstance(change, bytes):
            f.write_bytes(change)
        else:
            f.write_text(json.dumps({**json.loads(f.read_text()), **change}))
        _load_or_refuse(lab, folder)


dtypes = st.sampled_from(["F32", "F16", "BF16", "F64", "I32", "I64", "U8", "BOOL", "F8_E4M3", "Q9", "", 5])
names = st.sampled_from(
    [
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
        "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
        "base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight",
        "model.layers.0.self_attn.q_proj.lora_A.default.weight",
        "x.lora_A.weight",
        "bias",
        "__metadata__",
        "",
        "lora_embedding_A",
    ]
)
shapes = st.lists(st.integers(-1, 40), max_size=3) | json_values


@st.composite
def safetensors_files(draw):
    """A header of arbitrary entries (valid or lying about dtype, shape, offsets) and some data bytes."""
    header = {}
    offset = 0
    for _ in range(draw(st.integers(0, 4))):
        shape = draw(shapes)
        n = 1
        if isinstance(shape, list) and all(isinstance(s, int) and s >= 0 for s in shape):
            for s in shape:
                n *= s
        size = draw(st.sampled_from([n * 4, n * 2, n, draw(st.integers(0, 400))]))
        begin = draw(st.sampled_from([offset, offset + 1, 0, draw(st.integers(-5, 500))]))
        header[draw(names)] = {
            "dtype": draw(dtypes),
            "shape": shape,
            "data_offsets": draw(st.sampled_from([[begin, begin + size], [begin], "x"])),
        }
        offset = begin + size if isinstance(begin, int) else offset
    if draw(st.booleans()):
        header["__metadata__"] = draw(json_values)
    raw = json.dumps(header).encode()
    length = draw(st.sampled_from([len(raw), len(raw) + 1, max(0, len(raw) - 1), 2**40]))
    data = draw(st.binary(max_size=64)) if draw(st.booleans()) else b"\0" * max(0, min(offset, 4096))
    return struct.pack("<Q", length) + raw + data


@SETTINGS
@given(blob=safetensors_files())
def test_any_safetensors_header_loads_or_is_refused_by_name(saved, blob):
    path, lab = saved
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "x"
        shutil.copytree(path, folder)
        (folder / "adapter_model.safetensors").write_bytes(blob)
        _load_or_refuse(lab, folder)
