"""Registry itself (``workbench/registry.py``): reading the contract from an object, check(), bounds,
choices, non-finite values, unknown parameters, flags, base type, package scan, table.

The contract over every registered entry is ``tests/test_registry_contract.py``.
"""

from __future__ import annotations

import importlib
import math
import sys

import pytest

from tests.test_registry_contract import contract_problems
from workbench.errors import UnknownNameError, WorkbenchError
from workbench.registry import Param, Registry


class Base:
    """The base type of the toy registry's plugins."""


def _toy() -> Registry:
    reg = Registry("toy", base=Base, flags={"fast", "exact"}, skip={"generator"})

    @reg.register("plain", flags=("fast",), bounds={"density": (0.0, 1.0), "steps": (1, None)},
                  choices={"mode": ("a", "b")})
    class Plain(Base):
        """A toy plugin that does nothing.

        Reference: Nobody, "Nothing at all", 2026.
        """

        def __init__(self, width, *, generator, density: float = 0.5, steps: int = 10, mode: str = "a"):
            """Make it.

            Args:
                width: positional input, not a parameter.
                generator: passed by the driver.
                density: the fraction kept.
                steps: how many steps.
                mode: which way.
            """

    return reg


def test_reading_summary_reference_and_params():
    info = _toy().info("plain")
    assert info.summary == "A toy plugin that does nothing."
    assert info.reference == 'Nobody, "Nothing at all", 2026.'
    assert list(info.params) == ["density", "steps", "mode"]  # not width (positional), generator (skip)
    assert info.params["density"] == Param("density", 0.5, "the fraction kept.", 0.0, 1.0, None)
    assert info.params["mode"].choices == ("a", "b")
    assert info.defaults() == {"density": 0.5, "steps": 10, "mode": "a"}


def test_check_fills_defaults_and_refuses_bad_values():
    reg = _toy()
    assert reg.check("plain", {"density": 1.0}) == {"density": 1.0, "steps": 10, "mode": "a"}
    for bad, why in (({"density": 1.5}, "out of range"), ({"density": -0.1}, "out of range"),
                     ({"density": math.nan}, "not a finite"), ({"density": math.inf}, "not a finite"),
                     ({"steps": 0}, "out of range"), ({"mode": "c"}, "choose one of"),
                     ({"density": "half"}, "must be a number")):
        with pytest.raises(WorkbenchError, match=why):
            reg.check("plain", bad)
    with pytest.raises(UnknownNameError, match="no parameter 'densty'; its parameters: density=0.5, steps"):
        reg.check("plain", {"densty": 0.5})


def test_required_params_must_be_given():
    reg = Registry("toy")

    @reg.register("needy", params=[Param("lab", Param.REQUIRED, "the lab"), Param("k", 2, "k", 1, 8)])
    def needy(**kw):
        """Needs a lab.

        Reference: a paper.
        """

    with pytest.raises(WorkbenchError, match="needs lab="):
        reg.check("needy")
    assert reg.check("needy", {"lab": 1}) == {"lab": 1, "k": 2}
    assert reg.info("needy").defaults() == {"k": 2}


def test_flags_vocabulary():
    reg = _toy()
    assert reg.has("plain", "fast") and not reg.has("plain", "exact")
    assert reg.names(flag="fast") == ["plain"] and reg.names(flag="exact") == []
    with pytest.raises(ValueError, match="unknown flag 'slow'"):
        reg.has("plain", "slow")
    with pytest.raises(ValueError, match="unknown flags"):
        reg.register("other", flags=("slow",))


def test_base_type_is_checked():
    reg = _toy()
    with pytest.raises(TypeError, match="must be a Base"):
        reg.register("wrong")(int)
    with pytest.raises(TypeError, match="must be a Base"):
        reg.register("wrong_instance")(object())
    reg.register("instance", summary="An instance.", reference="x")(Base())


def test_names_are_lowercase_unique_and_unknown_names_are_listed():
    reg = _toy()
    with pytest.raises(ValueError, match="lowercase"):
        reg.register("Plain")
    with pytest.raises(ValueError, match="twice"):
        reg.register("plain")(Base)
    with pytest.raises(UnknownNameError, match="choose one of: plain"):
        reg.get("nope")
    assert "plain" in reg and list(reg) == ["plain"] and len(reg) == 1


def test_refining_a_parameter_it_does_not_take_is_an_error():
    reg = Registry("toy")
    with pytest.raises(ValueError, match="does not take"):  # a typo in bounds is not a new parameter
        @reg.register("f", bounds={"densty": (0, 1)})
        def f(*, density: float = 0.5):
            """F."""


def test_inherited_docstrings_are_not_a_summary():
    reg = Registry("toy")

    class Parent:
        """The parent's line.

        Reference: the parent's paper.
        """

    class Child(Parent):
        pass

    reg.register("child")(Child)
    reg.register("instance")(Parent())
    assert reg.info("child").summary == "" and reg.info("instance").summary == ""
    assert reg.info("child").reference != "the parent's paper."
    assert contract_problems(reg, reg.info("child"))[0].startswith("rule 1")


def test_reference_from_attribute_or_module_and_source():
    reg = Registry("toy")

    class WithAttr:
        """Has a reference attribute."""

        reference = "Someone, 2020"

    class Inherits(WithAttr):
        """Inherits it (not its own)."""

    def fn(*, x: float = 1.0):
        """Runs.

        Args:
            x: a number.
        """

    reg.register("with_attr")(WithAttr)
    reg.register("inherits")(Inherits)
    reg.register("wrapped", source=fn, bounds={"x": (0, None)})(object())
    assert reg.info("with_attr").reference == "Someone, 2020"
    assert reg.info("inherits").reference is None  # this test module's docstring has no Reference:
    wrapped = reg.info("wrapped")
    assert wrapped.summary == "Runs." and wrapped.params["x"] == Param("x", 1.0, "a number.", 0, None)


def test_package_scan_imports_every_plugin_file(tmp_path, monkeypatch):
    pkg = tmp_path / "toyplugins"
    pkg.mkdir()
    (tmp_path / "toyreg.py").write_text(
        "from workbench.registry import Registry\nREG = Registry('toy', package='toyplugins')\n")
    (pkg / "__init__.py").write_text('"""Plugins, one file each (nothing imported here)."""\n')
    for n in ("alpha", "beta"):
        (pkg / f"{n}.py").write_text(
            f'"""{n}.\n\nReference: {n} et al.\n"""\nfrom toyreg import REG\n\n\n'
            f'@REG.register("{n}")\ndef {n}():\n    """The {n} plugin."""\n')
    (pkg / "_helper.py").write_text("raise RuntimeError('private modules are not plugins')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        reg = importlib.import_module("toyreg").REG
        assert reg._items == {}  # nothing imported until the first lookup
        assert reg.names() == ["alpha", "beta"]
        assert reg.info("beta").reference == "beta et al."
    finally:
        for mod in [m for m in sys.modules if m.split(".")[0] in ("toyreg", "toyplugins")]:
            del sys.modules[mod]


def test_table_lists_every_entry():
    table = _toy().table()
    assert list(table["name"]) == ["plain"] and table["flags"][0] == ["fast"]


def test_the_default_is_always_accepted_and_a_sentinel_may_sit_outside_the_bounds():
    delta = Param("delta", -math.inf, "pruning threshold (-inf: off)", -1.0, 1.0)
    assert delta.check(-math.inf, "toy") == -math.inf and delta.check(0.5, "toy") == 0.5
    with pytest.raises(WorkbenchError, match="not a finite"):
        delta.check(math.inf, "toy")
