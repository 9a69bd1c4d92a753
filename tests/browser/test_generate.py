"""14_generate in a real JupyterLab: the notebook runs (the generator panel on the ready LoRAs, the full
results read), then the panel answers in the browser: a typed description gives the proximity bars and
the map, "generate N" lists the samples, "evaluate" fills the scores with the progress done."""

from __future__ import annotations

import pytest

from tests.browser.helpers import run_notebook

pytestmark = pytest.mark.browser

PANEL = ".lw-generator"
STATUS = "() => document.querySelector('.lw-generator .lw-status').textContent"


def test_generator_panel_in_the_browser(lab_server, page, screenshots):
    page.set_default_timeout(120_000)
    page.set_viewport_size({"width": 1400, "height": 1100})
    run_notebook(page, lab_server, "14_generate.ipynb", screenshots)
    panel = page.locator(PANEL).first
    panel.scroll_into_view_if_needed()
    page.wait_for_function("() => document.querySelectorAll('.lw-generator .lw-prox-bar').length === 4")

    box = panel.locator("textarea.lw-description")
    box.fill("identify the language a sentence is written in, german or dutch")
    box.blur()  # the change event sends the description to Python; the worker answers
    page.wait_for_function(f"() => ({STATUS})().startsWith('nearest: language')")
    assert panel.locator(".lw-gen-map .lw-query").count() == 1
    assert panel.locator(".lw-gen-map .lw-expert").count() == 4

    panel.locator("button.lw-generate").click()
    page.wait_for_function("() => document.querySelector('.lw-generator .lw-samples').textContent"
                           ".includes('sg_panel_1')")
    panel.locator("button.lw-evaluate").click()
    page.wait_for_function("() => document.querySelectorAll('.lw-generator .lw-gen-scores tr').length === 6")
    labels = panel.locator(".lw-gen-scores td:first-child").all_text_contents()
    assert labels[:2] == ["sg_panel_0", "sg_panel_1"] and labels[2].startswith("nearest: ")
    assert labels[3:] == ["uniform average", "base"]
    assert "5/5 done" in page.evaluate(STATUS)
    panel.screenshot(path=str(screenshots / "generator_panel.png"))
