"""10_routers_continual in a real JupyterLab: reads the full runs (no model under make test), renders."""

from __future__ import annotations

import pytest

from tests.browser.helpers import run_notebook

pytestmark = pytest.mark.browser


def test_routers_continual_renders_the_full_results(lab_server, page, screenshots):
    page.set_default_timeout(120_000)
    page.set_viewport_size({"width": 1400, "height": 1000})
    run_notebook(page, lab_server, "10_routers_continual.ipynb", screenshots)
    assert page.locator(".jp-OutputArea-output table").count() >= 1  # the registry rows at least
    page.screenshot(path=str(screenshots / "routers_continual_page.png"))
