"""02_merge in a real JupyterLab: the MergeBuilder renders, a gesture reaches Python and the previews
come back current, evaluate shows progress, commit adds the adapter to the lab, export writes it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.browser.helpers import rerun_cell, run_notebook

pytestmark = pytest.mark.browser

STATUS = "() => document.querySelector('.lw-merge-builder .lw-merge-status').textContent"


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
