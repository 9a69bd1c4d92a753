"""12_training_layers in a real JupyterLab: under LORA_WORKBENCH_QUICK=1 it loads no model and trains
nothing; it shows the full runs' tables and figures from results/ (or the command that makes them)."""

from __future__ import annotations

import pytest

from tests.browser.helpers import run_notebook

pytestmark = pytest.mark.browser


def test_training_layers_shows_the_full_runs(lab_server, page, screenshots):
    page.set_default_timeout(120_000)
    page.set_viewport_size({"width": 1400, "height": 1000})
    run_notebook(page, lab_server, "12_training_layers.ipynb", screenshots)
    assert page.locator(".jp-OutputArea-output table").count() >= 1  # the experiments' registry rows
    page.screenshot(path=str(screenshots / "training_layers_page.png"))
