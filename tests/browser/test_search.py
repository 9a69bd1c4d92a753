"""13_search in a real JupyterLab: under LORA_WORKBENCH_QUICK=1 a tiny search on a synthetic objective runs
in the background while its SearchProgress view fills in, then the full run's results are drawn."""

from __future__ import annotations

import pytest

from tests.browser.helpers import run_notebook

pytestmark = pytest.mark.browser


def test_search_runs_the_tiny_search_and_draws_its_progress(lab_server, page, screenshots):
    page.set_default_timeout(120_000)
    page.set_viewport_size({"width": 1400, "height": 1000})
    run_notebook(page, lab_server, "13_search.ipynb", screenshots)
    page.wait_for_selector("text=40 evaluations", timeout=60_000)  # the view's status after the search
    assert page.locator(".js-plotly-plot").count() >= 3  # progress, best weights, Pareto front
    page.screenshot(path=str(screenshots / "search_page.png"))
    # the run store (section 4): the Runs view lists the recorded merge, its recipe names both sources
    runs = page.locator(".js-plotly-plot", has_text="run store: ")
    runs.wait_for(timeout=120_000)
    assert "a_and_b" in runs.text_content() and "merged" in runs.text_content()
    page.get_by_text("'result': {'name': 'a_and_b'").wait_for()
    runs.scroll_into_view_if_needed()
    runs.screenshot(path=str(screenshots / "search_runs_view.png"))
