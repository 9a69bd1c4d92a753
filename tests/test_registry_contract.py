"""The plugin contract (CONTRACT.md, ``workbench/registry.py``), checked over every registry and entry.

``test_entry_follows_the_contract`` is parametrized over every registered name of every registry, so a
new plugin is checked the moment it is registered: its own one-line summary, a reference, documented
parameters with bounds or choices, flags from its registry's vocabulary, its registry's base type.
The rest checks that every registry is listed here, that flags are used, that plugin packages hold
one plugin per file, and that no call site compares a plugin's name (rule 5). ``Registry`` itself is
tested in ``tests/test_registry.py``.
"""

from __future__ import annotations

import importlib
import inspect
import math
import re
from pathlib import Path

import pytest

from workbench.registry import Plugin, Registry

ROOT = Path(__file__).resolve().parents[1]

# registry id -> (module, attribute): every Registry in workbench/
REGISTRIES = {
    "merges": ("workbench.merging", "MERGES"),
    "routers": ("workbench.routing", "ROUTERS"),
    "aux_losses": ("workbench.routing", "AUX_LOSSES"),
    "exports": ("workbench.routing.static_form", "EXPORTS"),
    "tasks": ("workbench.tasks", "TASKS"),
    "metrics": ("workbench.tasks", "METRICS"),
    "mm_tasks": ("workbench.tasks.multimodal", "MM_TASKS"),
    "sources": ("workbench.tasks.multimodal.images", "SOURCES"),
    "zoo": ("workbench.zoo", "ZOO"),
    "inits": ("workbench.adapters.init", "INITS"),
    "scalings": ("workbench.adapters.adapter", "SCALINGS"),
    "commands": ("workbench.cli", "COMMANDS"),
    "optimizers": ("workbench.training", "OPTIMIZERS"),
    "grad_methods": ("workbench.training", "GRAD_METHODS"),
    "samplings": ("workbench.training", "SAMPLINGS"),
    "loss_weightings": ("workbench.training", "LOSS_WEIGHTINGS"),
    "variants": ("workbench.training", "VARIANTS"),
    "experiments": ("workbench.experiments", "EXPERIMENTS"),
    "importance": ("workbench.compression", "IMPORTANCE"),
    "searchers": ("workbench.search", "SEARCHERS"),
    "composers": ("workbench.composition", "COMPOSERS"),
}
TRAINING = {"optimizers", "grad_methods", "samplings", "loss_weightings", "variants"}
# (registry, name) of entries that may break a rule for now, each with its reason: xfail(strict=True),
# so the case fails the day the entry conforms and the line here must go. Empty: every entry conforms.
PENDING: dict[tuple[str, str], str] = {}


def _registry(key: str) -> Registry | None:
    module, attr = REGISTRIES[key]
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        if key in TRAINING:  # the loop branch may move or rename a training registry
            return None
        raise


def _cases() -> list:
    cases = []
    for key in REGISTRIES:
        reg = _registry(key)
        for name in reg.names() if reg is not None else ():
            reason = PENDING.get((key, name))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            cases.append(pytest.param(key, name, id=f"{key}:{name}", marks=marks))
    return cases


def _own_base_summaries(obj: object) -> set[str]:
    """The summaries of the classes ``obj`` inherits from (or is an instance of): not its own."""
    mro = obj.__mro__[1:] if inspect.isclass(obj) else type(obj).__mro__
    return {(inspect.cleandoc(c.__dict__["__doc__"]).split("\n\n")[0].replace("\n", " ").strip())
            for c in mro if isinstance(c.__dict__.get("__doc__"), str)}


def contract_problems(reg: Registry, plugin: Plugin) -> list[str]:
    """Every broken rule of CONTRACT.md 1-4 for one entry, as sentences (empty: it conforms)."""
    out = []
    if not plugin.summary or not plugin.summary.strip():
        out.append("rule 1: no summary (give the object its own docstring or pass summary=)")
    elif plugin.summary in _own_base_summaries(plugin.obj):
        out.append(f"rule 1: the summary is its base class's docstring: {plugin.summary!r}")
    if not plugin.reference or not plugin.reference.strip():
        out.append("rule 2: no reference (a 'Reference:' paragraph, or reference=)")
    for p in plugin.params.values():
        where = f"rule 3: param {p.name!r}"
        if not p.doc.strip():
            out.append(f"{where} has no doc")
        numeric = isinstance(p.default, int | float) and not isinstance(p.default, bool)
        if numeric and p.low is None and p.high is None and p.choices is None:
            out.append(f"{where} (default {p.default!r}) has no bounds or choices")
        if isinstance(p.default, str) and p.choices is None:
            out.append(f"{where} (default {p.default!r}) has no choices")
        if "seed" in p.name and numeric and (p.low is None or p.low < 0):
            out.append(f"{where} is a seed: bound it below by 0")
        if p.choices is not None and not p.required and p.default not in p.choices:
            out.append(f"{where}: its default {p.default!r} is not among its choices {p.choices}")
        if numeric and math.isfinite(p.default) and (p.low is not None and p.default < p.low
                                                     or p.high is not None and p.default > p.high):
            out.append(f"{where}: its default {p.default!r} is outside [{p.low}, {p.high}]")
    extra = plugin.flags - reg.flags
    if extra:
        out.append(f"rule 4: flags {sorted(extra)} are not in the vocabulary {sorted(reg.flags)}")
    if reg.base is not None:
        obj = plugin.obj
        ok = issubclass(obj, reg.base) if inspect.isclass(obj) else isinstance(obj, reg.base)
        if not ok:
            out.append(f"rule 4: {obj!r} is not a {reg.base.__name__}")
    return out


@pytest.mark.parametrize(("key", "name"), _cases())
def test_entry_follows_the_contract(key, name):
    reg = _registry(key)
    problems = contract_problems(reg, reg.info(name))
    assert not problems, f"{reg.kind} {name!r}:\n  " + "\n  ".join(problems)


def test_every_registry_is_listed():
    """A new ``Registry(...)`` in workbench/ must be added to REGISTRIES (so its entries are checked)."""
    found = set()
    for path in (ROOT / "workbench").rglob("*.py"):
        for m in re.finditer(r"^(\w+)\s*(?::[^=\n]+)?=\s*Registry\(", path.read_text(), re.M):
            found.add(m.group(1))
    listed = {attr for _, attr in REGISTRIES.values()}
    assert found <= listed, f"registries not checked here: {sorted(found - listed)}"


def test_every_registry_has_entries():
    for key in REGISTRIES:
        reg = _registry(key)
        if reg is not None:
            assert len(reg) > 0, key


# -- rule 5: no call site compares a plugin's name -------------------------------------------------
NAME_TEST = re.compile(r"""(?:==|!=)\s*["']([\w.-]+)["']|["']([\w.-]+)["']\s*(?:==|!=)"""
                       r"""|\.(?:endswith|startswith)\(\s*["']([\w.-]+)["']""")
HASATTR = re.compile(r"""hasattr\([^,]+,\s*["'](bank_factors|bank)["']\)""")


def _plugin_names() -> set[str]:
    names = set()
    for key in REGISTRIES:
        reg = _registry(key)
        names |= set(reg.names()) if reg is not None else set()
    return names | {"_svd"}


def _name_tests(paths) -> list[str]:
    names, hits = _plugin_names(), []
    for path in paths:
        for i, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            found = [g for m in NAME_TEST.finditer(code) for g in m.groups() if g and g in names]
            if found or HASATTR.search(code):
                hits.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    return hits


def _files(*, training: bool) -> list[Path]:
    files = [*(ROOT / "workbench").rglob("*.py"), *(ROOT / "widgets").rglob("*.py")]
    inside = [p for p in files if (ROOT / "workbench" / "training") in p.parents]
    return inside if training else [p for p in files if p not in inside and p.name != "registry.py"]


# A comparison that names a string which is also a plugin name, but is not about that plugin.
NOT_PLUGINS = {
    "workbench/merging/inputs.py": 'default == "sum"',  # a rank default (Σrᵢ), not the "sum" gradient method
    "workbench/analysis/output_interference.py": "source == 'topic'",  # adapter names in a docstring example
    "workbench/adapters/layer.py": 'f.kind != "lora"',  # a module's kind (lora, dora, lora_bias), not INITS
    "workbench/adapters/adapter.py": 'f.kind != "lora"',
}


@pytest.mark.parametrize("training", [False, True], ids=["engine+views", "training"])
def test_no_call_site_compares_a_plugin_name(training):
    hits = [h for h in _name_tests(_files(training=training))
            if not any(h.startswith(f) and s in h for f, s in NOT_PLUGINS.items())]
    assert not hits, "declare a flag or a property instead of comparing names:\n" + "\n".join(hits)


def test_the_name_search_finds_name_comparisons(tmp_path):
    """The search itself: it catches the forms rule 5 names (so a green run means something)."""
    bad = tmp_path / "bad.py"
    bad.write_text('if spec.name.endswith("_svd"): pass\nif name == "meteora": pass\n'
                   'ok = hasattr(r, "bank_factors")\nif metric == "accuracy": pass\n')
    global ROOT
    old, ROOT = ROOT, tmp_path
    try:
        assert len(_name_tests([bad])) == 4
    finally:
        ROOT = old





def test_router_inits_are_registered_initializations():
    from workbench.adapters.init import INITS
    from workbench.routing.base import INIT_NAMES

    assert set(INIT_NAMES) <= set(INITS.names())


@pytest.mark.parametrize("key", sorted(set(REGISTRIES) - TRAINING))
def test_every_declared_flag_is_used_by_some_entry(key):
    """A flag nobody declares is dead vocabulary (or a typo in the entries)."""
    reg = _registry(key)
    unused = sorted(f for f in reg.flags if not reg.names(flag=f))
    assert not unused, f"{reg.kind}: flags {unused} are declared but no entry has them"


@pytest.mark.parametrize(("package", "marker"), [
    ("workbench/merging/methods", re.compile(r"@(?:factored|elementwise)\(|MERGES\.register\(")),
    ("workbench/routing/mechanisms", re.compile(r"@ROUTERS\.register\(")),
    ("workbench/training/methods", re.compile(r"@GRAD_METHODS\.register\(")),
    ("workbench/composition/methods", re.compile(r"@COMPOSERS\.register\(")),
])
def test_plugin_packages_hold_one_plugin_per_file(package, marker):
    """Found by package scan: every file there registers its plugin (plumbing lives one level up)."""
    files = [p for p in (ROOT / package).glob("*.py") if not p.name.startswith("_")]
    assert files and all(marker.search(p.read_text()) for p in files), package


def test_routers_live_in_the_scanned_package():
    from workbench.routing import ROUTERS

    assert {ROUTERS.get(n).__module__.rsplit(".", 1)[0] for n in ROUTERS.names()} == {ROUTERS.package}
