"""The catalogue: every bad input is refused with a WorkbenchError that names the problem, and nothing
changes (base weights, the lab's adapters and routers, what it uses, the files around).

Add a row to ``cases_files.py``, ``cases_calls.py`` or ``cases_apps.py`` for every new refusal.
"""

from __future__ import annotations

import re

import pytest

from tests.reliability.cases_apps import CASES as APPS
from tests.reliability.cases_calls import CASES as CALLS
from tests.reliability.cases_files import CASES as FILES
from tests.reliability.world import make_template, make_world, snapshot
from workbench.errors import WorkbenchError

CASES = [*FILES, *CALLS, *APPS]


def test_the_catalogue_is_large_and_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) >= 150 and len(set(ids)) == len(ids)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return make_template(tmp_path_factory.mktemp("template"))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_and_nothing_changes(case, template, tmp_path, capsys):
    w = make_world(tmp_path, template)
    if case.setup is not None:
        case.setup(w)
    before = snapshot(w, exact=case.setup is not None)  # a setup may merge into the base
    capsys.readouterr()
    if case.cli:
        assert case.call(w) == 2
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert "Traceback" not in err and lines and lines[-1].startswith("error: "), err
        assert re.search(case.match, lines[-1]), f"{case.match!r} not in {lines[-1]!r}"
    else:
        with pytest.raises(case.error) as e:
            case.call(w)
        assert isinstance(e.value, WorkbenchError), f"{type(e.value).__name__}: {e.value}"
        assert re.search(case.match, str(e.value)), f"{case.match!r} not in {str(e.value)!r}"
    after = snapshot(w, exact=True)
    for key in before:
        assert after[key] == before[key], f"{key} changed"
