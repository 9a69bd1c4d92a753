"""Every tutorial is run by the browser suite (make test runs notebooks there, not through nbmake)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_tutorial_is_run_in_the_browser_suite():
    browser_tests = "".join(p.read_text() for p in (ROOT / "tests" / "browser").glob("test_*.py"))
    tutorials = sorted(p.stem for p in (ROOT / "tutorials").glob("[0-9][0-9]_*.py"))
    assert tutorials, "no tutorials found"
    missing = [t for t in tutorials if f"{t}.ipynb" not in browser_tests]
    assert not missing, f"tutorials without a browser test that runs them: {missing}"
