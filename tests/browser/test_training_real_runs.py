"""11_training_real in a real JupyterLab: under LORA_WORKBENCH_QUICK=1 it reads the full results and draws
them (no model, no training)."""

from __future__ import annotations

import pytest

from tests.browser.helpers import run_notebook

pytestmark = pytest.mark.browser


def test_training_real_reads_and_draws_the_full_results(lab_server, page, screenshots):
    page.set_default_timeout(120_000)
    page.set_viewport_size({"width": 1400, "height": 1000})
    run_notebook(page, lab_server, "11_training_real.ipynb", screenshots)
    assert page.locator(".jp-OutputArea-output table").count() >= 1  # the experiments' registry rows
    page.screenshot(path=str(screenshots / "training_real_page.png"))
