"""`make lab` works: the lab starts headless on the quickstart, answers, and runs it in a browser."""

from __future__ import annotations

import json
import urllib.request

import pytest

pytestmark = pytest.mark.browser


def _get(url: str):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.status, r.read().decode()


def test_lab_answers_with_the_quickstart(lab_server):
    status, body = _get(f"{lab_server}/api/status")
    assert status == 200 and "started" in json.loads(body)
    status, body = _get(f"{lab_server}/lab")
    assert status == 200 and "JupyterLab" in body
    status, body = _get(f"{lab_server}/api/contents/tutorials")
    names = {f["name"] for f in json.loads(body)["content"]}
    assert {"00_quickstart.py", "00_quickstart.ipynb"} <= names  # the notebook was built for the user


def test_quickstart_runs_in_the_browser(lab_server, page, screenshots):
    """Open the quickstart in a real JupyterLab, run every cell, and look at the result."""
    page.set_default_timeout(120_000)
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{lab_server}/lab/tree/tutorials/00_quickstart.ipynb?reset")
    page.wait_for_function("window.jupyterapp && window.jupyterapp.started")
    page.wait_for_selector(".jp-Notebook .jp-Cell", state="attached")
    try:
        page.wait_for_function(
            "() => { const w = window.jupyterapp.shell.currentWidget;"
            " return w && w.sessionContext && w.sessionContext.session &&"
            " w.sessionContext.session.kernel && w.sessionContext.session.kernel.status === 'idle'; }")
    except Exception:
        page.screenshot(path=str(screenshots / "quickstart_kernel_wait_failed.png"))
        raise
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    # every code cell gets an execution count; no cell is still queued ([*])
    page.wait_for_function(
        "() => { const w = window.jupyterapp.shell.currentWidget;"
        " const cells = w.content.widgets.filter(c => c.model.type === 'code');"
        " return cells.length > 0 && cells.every(c => c.model.executionCount !== null)"
        " && w.sessionContext.session.kernel.status === 'idle'; }",
        timeout=20 * 60_000, polling=2000)
    errors = page.evaluate(
        "() => window.jupyterapp.shell.currentWidget.content.widgets"
        ".filter(c => c.model.type === 'code').flatMap(c => {"
        " const o = c.model.outputs; const out = [];"
        " for (let i = 0; i < o.length; i++) { const j = o.get(i).toJSON();"
        "   if (j.output_type === 'error') out.push(j.ename + ': ' + j.evalue); }"
        " return out; })")
    assert errors == [], errors
    plots = page.locator(".js-plotly-plot")
    plots.first.scroll_into_view_if_needed()
    page.wait_for_selector(".js-plotly-plot .main-svg", state="attached")
    assert plots.count() >= 3  # scores, per-rank activations, loss curve
    page.screenshot(path=str(screenshots / "quickstart_top.png"))
    plots.first.screenshot(path=str(screenshots / "quickstart_scores.png"))
    plots.nth(1).screenshot(path=str(screenshots / "quickstart_ranks.png"))
