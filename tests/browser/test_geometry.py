"""01_geometry in a real JupyterLab: the widgets render, and a click on the angle matrix reaches Python."""

from __future__ import annotations

import pytest

from tests.browser.helpers import rerun_cell, run_notebook

pytestmark = pytest.mark.browser

def test_geometry_widgets_in_the_browser(lab_server, page, screenshots):
    page.set_default_timeout(120_000)
    page.set_viewport_size({"width": 1400, "height": 1000})
    run_notebook(page, lab_server, "01_geometry.ipynb", screenshots)

    # the angle matrix: 4 x 4 cells, and the breakdown the notebook selected from Python
    widget = page.locator(".lw-angle-matrix")
    widget.scroll_into_view_if_needed()
    assert widget.locator(".lw-matrix .lw-cell").count() == 16
    breakdown = widget.locator(".lw-breakdown:not(.lw-stale) .lw-title")
    assert "topic · language" in breakdown.text_content()
    widget.screenshot(path=str(screenshots / "geometry_angle_matrix.png"))

    # a click on a cell: the front end sets `selected`, Python answers with that pair's breakdown ...
    widget.locator('.lw-matrix .lw-cell[data-row="arithmetic"][data-col="code"]').click()
    page.wait_for_selector(".lw-angle-matrix .lw-cell.lw-selected[data-row='arithmetic'][data-col='code']")
    page.wait_for_function(
        "() => { const t = document.querySelector('.lw-angle-matrix .lw-breakdown:not(.lw-stale) .lw-title');"
        " return t && t.textContent.startsWith('arithmetic · code'); }")
    assert widget.locator(".lw-breakdown .lw-cell").count() == 4 * 30  # module x layer
    widget.screenshot(path=str(screenshots / "geometry_angle_matrix_clicked.png"))
    # ... and the kernel sees the click
    assert rerun_cell(page, "matrix.selected  # click") == "['arithmetic', 'code']"

    # the interference map: current, module x layer; ticking an adapter recomputes in Python
    imap = page.locator(".lw-interference-map")
    imap.scroll_into_view_if_needed()
    assert imap.locator(".lw-status").text_content() == "current"
    assert imap.locator(".lw-cell").count() == 4 * 30
    imap.locator("label", has_text="arithmetic").locator("input").check()
    page.wait_for_function(
        "() => { const m = document.querySelector('.lw-interference-map');"
        " return m.querySelector('.lw-status').textContent === 'current'"
        " && m.querySelector('.lw-title').textContent.includes('arithmetic×1'); }")
    imap.screenshot(path=str(screenshots / "geometry_interference_map.png"))

    # the static figures: subspace overlap, spectra, cosine on data per layer
    plots = page.locator(".js-plotly-plot")
    assert plots.count() == 3
    for i, name in enumerate(["subspaces", "spectrum"]):
        plots.nth(i).scroll_into_view_if_needed()
        page.wait_for_selector(f".js-plotly-plot >> nth={i} >> .main-svg", state="attached")
        plots.nth(i).screenshot(path=str(screenshots / f"geometry_{name}.png"))
    page.screenshot(path=str(screenshots / "geometry_page.png"))
