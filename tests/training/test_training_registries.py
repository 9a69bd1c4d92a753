"""The training registries follow the plugin contract (CONTRACT.md): own summary, a reference,
documented parameters with bounds or choices, declared flags."""

from __future__ import annotations

import inspect

import pytest

from workbench.training import GRAD_METHODS, LOSS_WEIGHTINGS, OPTIMIZERS, SAMPLINGS, VARIANTS

REGISTRIES = {"optimizers": OPTIMIZERS, "grad_methods": GRAD_METHODS, "samplings": SAMPLINGS,
              "loss_weightings": LOSS_WEIGHTINGS, "variants": VARIANTS}
ENTRIES = [(k, n) for k, reg in REGISTRIES.items() for n in reg.names()]


@pytest.mark.parametrize(("registry", "name"), ENTRIES)
def test_entry_has_its_own_summary_a_reference_and_bounded_documented_params(registry, name):
    reg = REGISTRIES[registry]
    info = reg.info(name)
    assert info.summary and not info.summary.startswith("Args")
    if inspect.isclass(info.obj) and reg.base is not None:
        base_doc = (inspect.getdoc(reg.base) or "").split("\n\n")[0].replace("\n", " ").strip()
        assert info.summary != base_doc, "the summary is the base class's docstring"
    assert info.reference, f"{registry} {name!r} names no reference"
    for p in info.params.values():
        assert p.doc, f"{registry} {name!r}: parameter {p.name!r} has no doc"
        numeric = isinstance(p.default, int | float) and not isinstance(p.default, bool)
        if numeric:
            assert p.low is not None or p.high is not None or p.choices, f"{p.name} is unbounded"
        if isinstance(p.default, str):
            assert p.choices, f"{p.name} has no choices"
    assert info.flags <= reg.flags


def test_variants_name_every_part():
    assert {"lora", "rslora", "loraplus", "lorapro", "nola", "pissa"} <= set(VARIANTS.names())
    assert VARIANTS.get("pissa").setup is not None and VARIANTS.get("rslora").scaling == "rslora"
    assert OPTIMIZERS.names(flag="needs_pairs") == ["lorapro", "nola"]
