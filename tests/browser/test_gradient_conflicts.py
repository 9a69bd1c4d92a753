"""03_gradient_conflicts in a real JupyterLab: the ConflictMonitor renders live data, and a click on
its layer × step map reaches Python, which answers with that layer's cosine matrix."""

from __future__ import annotations

import pytest

from tests.browser.helpers import rerun_cell, run_notebook

pytestmark = pytest.mark.browser


def test_conflict_monitor_in_the_browser(lab_server, page, screenshots):
    page.set_default_timeout(120_000)
    page.set_viewport_size({"width": 1400, "height": 1000})
    run_notebook(page, lab_server, "03_gradient_conflicts.ipynb", screenshots)

    mon = page.locator(".lw-conflict-monitor")
    mon.scroll_into_view_if_needed()
    assert mon.locator(".lw-status").text_content().startswith("done: 5 steps")
    assert mon.locator(".lw-run").text_content() == "done"
    # losses: one curve per task and the total; the 3 x 3 cosine matrix of the last capture
    names = mon.locator(".lw-series").evaluate_all("els => els.map(e => e.dataset.name)")
    assert sorted(names) == ["arithmetic", "language", "topic", "total"]
    assert mon.locator(".lw-matrix .lw-cell").count() == 9
    assert "all modules), step 4" in mon.locator(".lw-matrix .lw-title").text_content()
    # the map: 30 layers x 5 captured steps
    cells = mon.locator(".lw-conflict-map .lw-cell")
    assert cells.count() == 30 * 5
    mon.screenshot(path=str(screenshots / "training_conflict_monitor.png"))

    # a click on layer 7, step 2: the front end sets `selected`, Python redraws the matrix
    mon.locator('.lw-conflict-map .lw-cell[data-row="7"][data-col="2"]').click()
    page.wait_for_function(
        "() => { const t = document.querySelector('.lw-conflict-monitor .lw-matrix .lw-title');"
        " return t && t.textContent.includes('layer 7, step 2'); }")
    assert mon.locator('.lw-conflict-map .lw-cell.lw-selected[data-row="7"][data-col="2"]').count() == 1
    mon.screenshot(path=str(screenshots / "training_conflict_clicked.png"))
    assert rerun_cell(page, "monitor.selected  # click") == "[7, 2]"

    # the static figures: scores and the sweep heatmap
    plots = page.locator(".js-plotly-plot")
    assert plots.count() == 2
    for i, name in enumerate(["scores", "sweep"]):
        plots.nth(i).scroll_into_view_if_needed()
        page.wait_for_selector(f".js-plotly-plot >> nth={i} >> .main-svg", state="attached")
        plots.nth(i).screenshot(path=str(screenshots / f"training_{name}.png"))
    page.screenshot(path=str(screenshots / "training_page.png"))

    # the TrainingMonitor: it waits for "start"; the click reaches Python, which trains in a thread
    run = page.locator(".lw-training-monitor")
    run.scroll_into_view_if_needed()
    assert run.locator(".lw-run").text_content() == "start"
    assert run.locator(".lw-status").text_content().startswith("ready: 5 steps on topic")
    run.locator(".lw-run").click()
    page.wait_for_function(
        "() => { const s = document.querySelector('.lw-training-monitor .lw-status');"
        " return s && s.textContent.startsWith('done: 5 steps'); }",
        timeout=300_000)  # five SmolLM2 steps in the kernel: over 120 s on a loaded 2-core machine
    assert run.locator(".lw-run").text_content() == "done"
    names = run.locator(".lw-series").evaluate_all("els => els.map(e => e.dataset.name)")
    assert names == ["topic"], names  # one task: its curve is the total
    run.screenshot(path=str(screenshots / "training_monitor.png"))
    assert rerun_cell(page, "print(run_monitor.status)").startswith("done: 5 steps")
