"""`lora-workbench serve` in headless chromium: the dashboard of the ready adapters renders offline,
and gestures on each view reach Python and come back. Screenshots: ``dashboard_*.png``."""

from __future__ import annotations

import os
import re
import sys

import pytest

from tests.browser.conftest import ROOT, _free_port, running_server
from widgets.dashboard import HEALTH

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    """Start ``lora-workbench serve`` on the ready adapters (free port, headless); yield its URL."""
    port = _free_port()
    cmd = [sys.executable, "-m", "workbench.cli", "serve", "--adapters", str(ROOT / "adapters"),
           "--port", str(port), "--no-browser"]
    url = f"http://127.0.0.1:{port}"
    # it loads SmolLM2 and the four adapters first
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with running_server(cmd, f"{url}{HEALTH}", log, what="the dashboard", timeout=300, cwd=ROOT,
                        env={**os.environ, "HF_HUB_OFFLINE": "1",
                             # one torch thread, waits that sleep: the other worker's kernel shares the
                             # 2 cores (at two spinning threads, 16 short answers took ~100 s)
                             "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE",
                             # the Runs tab reads this store
                             "LORA_WORKBENCH_TRACKING": f"sqlite:///{log.parent / 'runs.db'}"}):
        yield url


def _tab(page, title: str) -> None:
    page.locator(".bk-tab", has_text=title).click()


def test_dashboard_renders_offline_and_answers(dashboard, page, screenshots):
    page.set_default_timeout(180_000)
    page.set_viewport_size({"width": 1400, "height": 1000})
    outside, failed = [], []
    page.on("request", lambda r: r.url.startswith((dashboard, "data:", "blob:")) or outside.append(r.url))
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.goto(dashboard)

    # the angle matrix: the notebook widget's module, 4 x 4; a click is answered by Python's breakdown
    matrix = page.locator(".lw-angle-matrix")
    matrix.locator(".lw-matrix .lw-cell").first.wait_for()
    assert matrix.locator(".lw-matrix .lw-cell").count() == 16
    page.get_by_text("arithmetic, code, language, topic").wait_for()  # the title (in a shadow root)
    page.screenshot(path=str(screenshots / "dashboard_page.png"))
    matrix.locator('.lw-matrix .lw-cell[data-row="arithmetic"][data-col="code"]').click()
    title = matrix.locator(".lw-breakdown:not(.lw-stale) .lw-title")
    title.wait_for()
    assert title.text_content().startswith("arithmetic · code")
    assert matrix.locator(".lw-breakdown .lw-cell").count() == 4 * 30
    matrix.screenshot(path=str(screenshots / "dashboard_angle_matrix.png"))

    # the interference map: unticking an adapter recomputes in Python
    _tab(page, "Interference map")
    imap = page.locator(".lw-interference-map")
    imap.locator(".lw-cell").first.wait_for()
    assert imap.locator(".lw-status").text_content() == "current"
    assert "topic×1" in imap.locator(".lw-title").text_content()
    imap.locator("label", has_text="topic").locator("input").uncheck()
    page.wait_for_function(
        "(el) => el.querySelector('.lw-status').textContent === 'current'"
        " && !el.querySelector('.lw-title').textContent.includes('topic')", arg=imap.element_handle())
    imap.screenshot(path=str(screenshots / "dashboard_interference_map.png"))

    # the merge builder: another method, answered with current previews
    _tab(page, "Merge builder")
    builder = page.locator(".lw-merge-builder")
    builder.locator(".lw-preview .lw-cell").first.wait_for()
    builder.locator(".lw-method").select_option("svd")
    page.wait_for_function(
        "(b) => b.querySelector('.lw-merge-status').textContent === 'current'"
        " && b.querySelector('.lw-summary').textContent.includes('svd of')"
        " && !b.querySelector('.lw-preview.lw-stale')", arg=builder.element_handle())
    # its evaluate button: model.send through the twin reaches Python, the scores come back
    limit = builder.locator(".lw-limit")
    limit.fill("1")
    limit.dispatch_event("change")
    builder.locator("button", has_text="evaluate").click()
    page.wait_for_function(
        "(b) => b.querySelector('.lw-eval-status').textContent === 'scores: current'"
        " && b.querySelectorAll('.lw-scores tr').length === 5", arg=builder.element_handle())
    scored = builder.locator(".lw-scores tr td:first-child").all_text_contents()
    assert sorted(scored) == ["arithmetic", "code", "language", "topic"], scored
    assert "evaluate failed" not in builder.locator(".lw-notice").text_content()
    builder.screenshot(path=str(screenshots / "dashboard_merge_builder.png"))

    # the evaluation tab: the shipped scores, and a live run of the chosen adapter and the base
    _tab(page, "Evaluation")
    page.get_by_text("Scores shipped with the adapters").wait_for()
    page.locator(".lw-evaluate button").click()
    page.get_by_text("done: 8 examples per task").wait_for()
    live = page.locator(".lw-eval-result table").inner_text()  # (the table is in a shadow root)
    assert "base" in live and "arithmetic" in live, live
    page.screenshot(path=str(screenshots / "dashboard_evaluation.png"))

    # the runs tab: the server's run store holds the four adapters it took in and the evaluation above
    _tab(page, "Runs")
    page.locator(".lw-runs-refresh button").click()
    said = page.get_by_text(re.compile(r"\d+ runs \(experiment"))
    said.wait_for()
    runs = int(re.search(r"(\d+) runs", said.text_content()).group(1))
    assert runs >= 5, said.text_content()  # the 4 adapters taken in, the live evaluation
    listed = page.locator(".lw-runs-table table").inner_text()
    assert "evaluated" in listed and "topic" in listed, listed
    page.screenshot(path=str(screenshots / "dashboard_runs.png"))

    assert outside == [], f"the dashboard fetched from outside its server: {outside}"
    assert failed == [], failed
