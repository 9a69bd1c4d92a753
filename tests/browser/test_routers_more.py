"""09_routers_more in a real JupyterLab: under LORA_WORKBENCH_QUICK it reads the full results only."""

from __future__ import annotations

import pytest

from tests.browser.helpers import rerun_cell, run_notebook

pytestmark = pytest.mark.browser


def test_routers_more_shows_the_full_results_without_training(lab_server, page, screenshots):
    page.set_default_timeout(120_000)
    page.set_viewport_size({"width": 1400, "height": 1000})
    run_notebook(page, lab_server, "09_routers_more.ipynb", screenshots)
    assert "the live run of tara is skipped" in rerun_cell(page, 'live("tara"')
    assert page.locator(".jp-OutputArea-output table").count() >= 1  # the experiments' registry rows
    page.screenshot(path=str(screenshots / "routers_more_page.png"))
