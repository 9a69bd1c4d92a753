"""02_merge in a real JupyterLab: the MergeBuilder renders, a gesture reaches Python and the previews
come back current, evaluate shows progress, commit adds the adapter to the lab, export writes it; and, in
a notebook of its own, a builder with a deliberately slow preview (eight sources) stays responsive: while
a preview computes in the background a second gesture is answered, the kernel runs a cell, the stale
previews are labelled, and the final previews are those of the last settings."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest

from tests.browser.helpers import rerun_cell, run_notebook

pytestmark = pytest.mark.browser

STATUS = "() => document.querySelector('.lw-merge-builder .lw-merge-status').textContent"
SLOW = ["""from widgets import MergeBuilder
from workbench import Workbench, merging, ready
lab = Workbench.from_zoo(ready.BASE)
ready.load_all(lab)
names = list(ready.NAMES)""",
        """copies = [lab.add_adapter(lab.adapters[n].copy(name=f"{n}_2")).name for n in names]
slow_names = names + copies
slow = MergeBuilder.from_lab(lab, slow_names, method="svd", name="slow_merge")
slow"""]  # the four ready adapters twice: eight sources, the interference preview alone takes seconds
LABEL = "() => [...document.querySelectorAll('.lw-merge-builder .lw-stale-label')]"


def put_notebook(url: str, path: str, cells: list[str]) -> None:
    """Write a notebook of code ``cells`` into the lab's directory (the contents API; the test lab has no
    token)."""
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {
        "name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}},
        "cells": [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "source": src, "outputs": [],
                   "execution_count": None} for i, src in enumerate(cells)]}
    body = json.dumps({"type": "notebook", "format": "json", "content": nb}).encode()
    request = urllib.request.Request(f"{url}/api/contents/{path}", data=body, method="PUT",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as r:
        assert r.status in (200, 201)


def run_new_cell(page, code: str) -> str:
    """Append a code cell with ``code`` to the open notebook, run it, return its text output."""
    index, count = page.evaluate(
        "async (code) => { const w = window.jupyterapp.shell.currentWidget;"
        " w.content.activeCellIndex = w.content.widgets.length - 1;"
        " await window.jupyterapp.commands.execute('notebook:insert-cell-below');"
        " const i = w.content.activeCellIndex; w.content.widgets[i].model.sharedModel.setSource(code);"
        " const count = w.content.widgets[i].model.executionCount;"
        " await window.jupyterapp.commands.execute('notebook:run-cell'); return [i, count]; }", code)
    result = ("(i) => { const o = window.jupyterapp.shell.currentWidget.content.widgets[i].model.outputs;"
              " for (let k = 0; k < o.length; k++) { const j = o.get(k).toJSON();"
              "   if (j.output_type === 'execute_result') return j.data['text/plain'];"
              "   if (j.output_type === 'error') return j.ename + ': ' + j.evalue; }"
              " return null; }")  # not a display a worker thread may add (a progress bar)
    page.wait_for_function(
        f"([i, before]) => {{ const c = window.jupyterapp.shell.currentWidget.content.widgets[i];"
        f" return c.model.executionCount !== before && ({result})(i) !== null; }}", arg=[index, count])
    return page.evaluate(result, index)


def wait_current(page, summary_part: str) -> None:
    """Until the previews are current and the summary names ``summary_part``."""
    page.wait_for_function(
        "(part) => { const b = document.querySelector('.lw-merge-builder');"
        " return b.querySelector('.lw-merge-status').textContent === 'current'"
        " && b.querySelector('.lw-summary').textContent.includes(part)"
        " && !b.querySelector('.lw-preview.lw-stale'); }", arg=summary_part)


def test_merge_builder_in_the_browser(lab_server, page, screenshots):
    page.set_default_timeout(120_000)
    page.set_viewport_size({"width": 1400, "height": 1000})
    run_notebook(page, lab_server, "02_merge.ipynb", screenshots)

    # the method table's plot
    plot = page.locator(".js-plotly-plot").first
    plot.scroll_into_view_if_needed()
    page.wait_for_selector(".js-plotly-plot >> nth=0 >> .main-svg", state="attached")
    plot.screenshot(path=str(screenshots / "merge_normalized_scores.png"))

    # the builder as the notebook left it: cat (set from Python), previews current
    builder = page.locator(".lw-merge-builder")
    builder.scroll_into_view_if_needed()
    wait_current(page, "cat of arithmetic×1")
    assert builder.locator(".lw-method").input_value() == "cat"
    summary = builder.locator(".lw-summary").text_content()
    assert float(summary.rsplit("total relative error ", 1)[1]) < 1e-6  # cat is exact
    maps = builder.locator(".lw-preview")
    assert maps.nth(0).locator(".lw-cell").count() == 4 * 30  # error: module x layer
    assert maps.nth(1).locator(".lw-cell").count() == 4 * 30  # interference
    assert maps.nth(2).locator(".lw-cell").count() == 4 * 4  # angles
    builder.screenshot(path=str(screenshots / "merge_builder.png"))

    # a gesture: another method, then a weight; the view says "computing…" at once, Python answers
    builder.locator(".lw-method").select_option("ties")
    assert page.evaluate(STATUS) == "computing…"
    assert builder.locator("[data-param='density']").input_value() == "0.2"  # ties' own controls
    builder.locator(".lw-method").select_option("svd")
    wait_current(page, "svd of arithmetic×1")
    builder.locator("input[data-source='code']").fill("0.5")
    assert page.evaluate(STATUS) == "computing…"
    assert builder.locator(".lw-preview.lw-stale").count() == 3  # the old previews are dimmed meanwhile
    wait_current(page, "code×0.5")
    assert rerun_cell(page, "builder.method, builder.weights") == (
        "('svd', {'arithmetic': 1.0, 'topic': 1.0, 'language': 1.0, 'code': 0.5})")

    # quick evaluation: a progress bar fed from Python, then a table of current scores
    builder.locator("button", has_text="evaluate").click()
    page.wait_for_function(
        "() => document.querySelector('.lw-merge-builder .lw-eval-status').textContent === 'scores: current'"
        " && document.querySelectorAll('.lw-merge-builder .lw-scores tr').length === 5")
    progress = builder.locator("progress")
    assert progress.get_attribute("max") is not None
    assert page.evaluate("() => { const p = document.querySelector('.lw-merge-builder progress');"
                         " return p.value === p.max && p.max > 0; }")
    builder.screenshot(path=str(screenshots / "merge_builder_evaluated.png"))

    # commit: the adapter is in the lab (the kernel says so)
    builder.locator(".lw-name").fill("clicked_merge")
    builder.locator("button", has_text="commit").click()
    page.wait_for_function(
        "() => document.querySelector('.lw-merge-builder .lw-notice').textContent"
        ".includes(\"added 'clicked_merge'\")")
    assert "'clicked_merge'" in rerun_cell(page, "sorted(lab.adapters)")

    # export: the notice says where, and the PEFT directory is there
    builder.locator("button", has_text="export").click()
    page.wait_for_function(
        "() => document.querySelector('.lw-merge-builder .lw-notice').textContent.startsWith('wrote')")
    notice = builder.locator(".lw-notice").text_content()
    where = Path(re.search(r" to (/\S+)$", notice).group(1))
    assert (where / "adapter_config.json").is_file() and where.name == "clicked_merge"
    builder.screenshot(path=str(screenshots / "merge_builder_committed.png"))
    page.screenshot(path=str(screenshots / "merge_page.png"))


def test_merge_builder_stays_responsive_while_a_preview_computes(lab_server, page, screenshots):
    """A slow preview computes in the background: a second gesture and a cell are answered meanwhile."""
    page.set_default_timeout(300_000)
    page.set_viewport_size({"width": 1400, "height": 1000})
    put_notebook(lab_server, "tutorials/merge_responsive.ipynb", SLOW)
    run_notebook(page, lab_server, "merge_responsive.ipynb", screenshots)  # the builder's first previews in
    slow = page.locator(".lw-merge-builder")
    slow.scroll_into_view_if_needed()
    page.wait_for_function("() => document.querySelector('.lw-merge-builder .lw-merge-status')"
                           ".textContent === 'current'")
    # gesture 1: a weight; Python takes request 1 in the background and says so
    slow.locator("input[data-source='arithmetic']").fill("0.5")
    page.wait_for_function(f"() => ({LABEL})().some(l => l.textContent.includes('computing request 1'))")
    # gesture 2 at once, while request 1 computes: sent, taken, request 1 is cancelled
    slow.locator("input[data-source='topic']").fill("0.5")
    page.wait_for_function(f"() => ({LABEL})().some(l => l.textContent.includes('computing request 2'))")
    labels = page.evaluate(f"() => ({LABEL})().map(l => l.textContent)")
    assert labels and all(x == "stale: for request 0, computing request 2…" for x in labels), labels
    assert slow.locator(".lw-preview.lw-stale").count() == 3
    slow.screenshot(path=str(screenshots / "merge_builder_stale.png"))
    # the kernel answers a cell while the preview computes
    assert run_new_cell(page, "slow.request, slow.model.computing, slow.model.busy") == "(2, 2, True)"
    # the answer: request 2's previews, current, for the last settings
    page.wait_for_function(
        "() => { const b = document.querySelector('.lw-merge-builder');"
        " return b.querySelector('.lw-merge-status').textContent === 'current'"
        " && !b.querySelector('.lw-preview.lw-stale'); }", timeout=10 * 60_000)
    summary = slow.locator(".lw-summary").text_content()
    assert "arithmetic×0.5" in summary and "topic×0.5" in summary and "language×1" in summary, summary
    check = ("_w = [slow.weights[n] for n in slow_names]; "
             "_r = merging.merge([lab.adapters[n] for n in slow_names], 'svd', _w, name='slow_merge'); "
             "slow.answered, slow.model.stale, f'{_r.total_error:.3g}' in slow.summary, "
             "_w[:4], abs(_r.total_error - slow.result.total_error) < 1e-6")
    assert run_new_cell(page, check) == "(2, False, True, [0.5, 0.5, 1.0, 1.0], True)"
    slow.screenshot(path=str(screenshots / "merge_builder_answered.png"))
