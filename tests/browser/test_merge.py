"""02_merge in a real JupyterLab: the MergeBuilder renders, a gesture reaches Python and the previews
come back current, evaluate shows progress, commit adds the adapter to the lab, export writes it; and a
builder with a deliberately slow preview (eight sources) stays responsive: while a preview computes in
the background a second gesture is answered, the kernel runs a cell, the stale previews are labelled,
and the final previews are those of the last settings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.browser.helpers import rerun_cell, run_notebook

pytestmark = pytest.mark.browser

STATUS = "() => document.querySelector('.lw-merge-builder .lw-merge-status').textContent"
SLOW = """slow_names = names + [lab.add_adapter(lab.adapters[n].copy(name=f"{n}_2")).name
                      for n in names]
slow = MergeBuilder.from_lab(lab, slow_names, method="svd", name="slow_merge")
slow"""  # eight sources: the interference preview alone takes seconds
LABEL = "(i) => [...document.querySelectorAll('.lw-merge-builder')[1].querySelectorAll('.lw-stale-label')]"


def run_new_cell(page, code: str) -> str:
    """Append a code cell with ``code`` to the open notebook, run it, return its text output."""
    index, count = page.evaluate(
        "async (code) => { const w = window.jupyterapp.shell.currentWidget;"
        " w.content.activeCellIndex = w.content.widgets.length - 1;"
        " await window.jupyterapp.commands.execute('notebook:insert-cell-below');"
        " const i = w.content.activeCellIndex; w.content.widgets[i].model.sharedModel.setSource(code);"
        " const count = w.content.widgets[i].model.executionCount;"
        " await window.jupyterapp.commands.execute('notebook:run-cell'); return [i, count]; }", code)
    page.wait_for_function(
        "([i, before]) => { const c = window.jupyterapp.shell.currentWidget.content.widgets[i];"
        " return c.model.executionCount !== before && c.model.executionCount !== null"
        " && c.model.outputs.length > 0; }", arg=[index, count])
    return page.evaluate(
        "(i) => { const o = window.jupyterapp.shell.currentWidget.content.widgets[i].model.outputs;"
        " const j = o.get(o.length - 1).toJSON();"
        " return (j.data && j.data['text/plain']) || j.text || j.ename + ': ' + j.evalue; }", index)


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
    responsive_while_computing(page, screenshots)


def responsive_while_computing(page, screenshots) -> None:
    """A slow preview computes in the background: a second gesture and a cell are answered meanwhile."""
    run_new_cell(page, SLOW)  # returns with the first previews (a cell waits for them)
    slow = page.locator(".lw-merge-builder").nth(1)
    slow.scroll_into_view_if_needed()
    page.wait_for_function("() => document.querySelectorAll('.lw-merge-builder')[1]"
                           ".querySelector('.lw-merge-status').textContent === 'current'")
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
        "() => { const b = document.querySelectorAll('.lw-merge-builder')[1];"
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
