"""08_routers_real in a real JupyterLab: the quick reproductions run and their tables render."""

from __future__ import annotations

import pytest

from tests.browser.helpers import rerun_cell, run_notebook

pytestmark = pytest.mark.browser


def test_routers_real_runs_the_quick_reproductions(lab_server, page, screenshots):
    page.set_default_timeout(120_000)
    page.set_viewport_size({"width": 1400, "height": 1000})
    run_notebook(page, lab_server, "08_routers_real.ipynb", screenshots)
    # the quick runs left the lab clean and wrote their summaries to a scratch folder, not results/
    assert "quick mode" in rerun_cell(page, "assert not lab.adapters")
    assert page.locator(".jp-OutputArea-output table").count() >= 3  # registry, routings, quick tables
    page.screenshot(path=str(screenshots / "routers_real_page.png"))
