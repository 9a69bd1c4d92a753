"""06_vision_mmlora and 07_speech_prompt_aware in a real JupyterLab: the multimodal views render and
the QLadder view's rung choice reaches Python, the prompt-scale explorer reacts to an edited prompt.
ModalityMap has no gesture (it only renders)."""

from __future__ import annotations

import pytest

from tests.browser.helpers import rerun_cell, run_notebook

pytestmark = pytest.mark.browser


def test_vision_mmlora_views(lab_server, page, screenshots):
    page.set_default_timeout(120_000)
    page.set_viewport_size({"width": 1400, "height": 1000})
    run_notebook(page, lab_server, "06_vision_mmlora.ipynb", screenshots)

    mmap = page.locator(".lw-modality-map")
    mmap.scroll_into_view_if_needed()
    visual = mmap.locator('.lw-token[data-modality="vision"]')
    assert visual.count() == 3 * 3 + 4  # 9 patches + 4 ladder tokens
    assert mmap.locator('.lw-bar[data-branch="vision"]').count() == 30  # one per SmolLM2 layer
    assert mmap.locator('.lw-bar[data-branch="language"]').count() == 30
    mmap.screenshot(path=str(screenshots / "multimodal_modality_map.png"))

    ladder = page.locator(".lw-qladder")
    ladder.scroll_into_view_if_needed()
    assert ladder.locator("canvas").count() == 2
    ladder.locator("select").first.select_option("0")  # the view asks Python for rung 0
    page.wait_for_function("() => document.querySelector('.lw-qladder select').value === '0'")
    assert rerun_cell(page, "ladder_view.stage, ") == "(0, 0)"  # the kernel got it and drew rung 0
    ladder.screenshot(path=str(screenshots / "multimodal_qladder_attention.png"))
    page.screenshot(path=str(screenshots / "multimodal_vision_page.png"))


def test_speech_prompt_scale_explorer(lab_server, page, screenshots):
    page.set_default_timeout(120_000)
    page.set_viewport_size({"width": 1400, "height": 1000})
    run_notebook(page, lab_server, "07_speech_prompt_aware.ipynb", screenshots)

    scatter = page.locator(".lw-scale-scatter")
    scatter.scroll_into_view_if_needed()
    assert scatter.locator(".lw-point").count() == 8
    ring = scatter.locator(".lw-highlight")
    before = ring.get_attribute("cx"), ring.get_attribute("cy")
    box = page.locator(".widget-textarea textarea").last
    box.fill("Which digit is spoken? Answer with the word.")
    box.press("Tab")  # continuous_update=False: the change reaches Python when the box loses focus
    page.wait_for_function(
        "([x, y]) => { const r = document.querySelector('.lw-scale-scatter .lw-highlight');"
        " return r && (r.getAttribute('cx') !== x || r.getAttribute('cy') !== y); }", arg=list(before))
    scatter.screenshot(path=str(screenshots / "multimodal_prompt_scale_explorer.png"))
    page.screenshot(path=str(screenshots / "multimodal_speech_page.png"))
