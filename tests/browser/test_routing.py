"""04_rank_experts and 05_adapter_mixtures in a real JupyterLab: the route views render and respond."""

from __future__ import annotations

import pytest

from tests.browser.helpers import rerun_cell, run_notebook

pytestmark = pytest.mark.browser


def test_rank_experts_views_in_the_browser(lab_server, page, screenshots):
    page.set_default_timeout(120_000)
    page.set_viewport_size({"width": 1400, "height": 1000})
    run_notebook(page, lab_server, "04_rank_experts.ipynb", screenshots)

    # RankActivations: one button per task; SMoRA's map is layer × rank (30 × 16), the overlap 3 × 3
    ranks = page.locator(".lw-chooser").first
    ranks.scroll_into_view_if_needed()
    assert ranks.locator(".lw-button").all_text_contents() == ["arithmetic", "topic", "language"]
    assert ranks.locator(".lw-main .lw-cell").count() == 30 * 16
    ranks.screenshot(path=str(screenshots / "routing_rank_activations.png"))
    # a click on "topic": the front end sets `choice`, Python answers with topic's map (not dimmed)
    ranks.locator(".lw-button", has_text="topic").click()
    page.wait_for_function(
        "() => { const c = document.querySelector('.lw-chooser');"
        " return c.querySelector('.lw-button.lw-on').textContent === 'topic'"
        " && !c.querySelector('.lw-main').classList.contains('lw-stale')"
        " && c.querySelector('.lw-main .lw-title').textContent.startsWith('topic'); }")
    assert rerun_cell(page, "smora_map.choice  # click") == "'topic'"

    # ExpertLoad renders one row per layer
    load = page.locator(".lw-chooser").nth(2)
    load.scroll_into_view_if_needed()
    assert load.locator(".lw-button").first.text_content() == "all modules"
    assert load.locator(".lw-main .lw-row").count() >= 30
    load.screenshot(path=str(screenshots / "routing_expert_load.png"))
    # a click on one module: Python answers with that module's loads (its title is made in Python)
    load.locator(".lw-button", has_text="self_attn.v_proj").click()
    page.wait_for_function(
        "() => { const c = document.querySelectorAll('.lw-chooser')[2];"
        " const t = c.querySelector('.lw-main:not(.lw-stale) .lw-title');"
        " return t && t.textContent.startsWith('self_attn.v_proj: load per expert'); }")

    # TokenRouting: choosing another module in the select reaches Python
    tokens = page.locator(".lw-token-routing")
    tokens.scroll_into_view_if_needed()
    option = tokens.locator("select option").nth(5).get_attribute("value")
    tokens.locator("select").select_option(option)
    assert rerun_cell(page, "token_view.module  # the module") == repr(option)
    tokens.screenshot(path=str(screenshots / "routing_token_routing.png"))
    page.screenshot(path=str(screenshots / "routing_rank_experts_page.png"))


def test_adapter_mixture_views_in_the_browser(lab_server, page, screenshots):
    page.set_default_timeout(120_000)
    page.set_viewport_size({"width": 1400, "height": 1000})
    run_notebook(page, lab_server, "05_adapter_mixtures.ipynb", screenshots)

    # the gate-accuracy figure and the token view with adapter names in its legend
    assert page.locator(".js-plotly-plot").count() >= 2
    view = page.locator(".lw-token-routing").first
    view.scroll_into_view_if_needed()
    legend = view.locator(".lw-legend .lw-token").all_text_contents()
    assert legend == ["arithmetic", "topic", "language", "code"]
    view.screenshot(path=str(screenshots / "routing_meteora_tokens.png"))

    # ExpertLoad over the bank, with the gate loss of the 60 training steps drawn under it
    load = page.locator(".lw-chooser").filter(has=page.locator(".lw-curve")).first
    load.scroll_into_view_if_needed()
    assert load.locator(".lw-curve polyline").count() == 1
    load.screenshot(path=str(screenshots / "routing_meteora_load.png"))

    # PromptWhatIf: type a new prompt, press route; Python reroutes and redraws; then freeze
    what_if = page.locator(".widget-vbox").filter(has=page.locator("textarea")).last
    box = what_if.locator("textarea")
    box.scroll_into_view_if_needed()
    box.fill("Which language is this: 'Guten Morgen, wie geht es dir?'")
    what_if.locator("button", has_text="route").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.widget-html-content')]"
        ".some(e => /tokens routed by 'meteora'/.test(e.textContent))")
    assert rerun_cell(page, "what_if.prompt.value") == repr(
        "Which language is this: 'Guten Morgen, wie geht es dir?'")
    what_if.locator("button", has_text="freeze").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.widget-html-content')]"
        ".some(e => /added adapter meteora_frozen_1/.test(e.textContent))")
    what_if.screenshot(path=str(screenshots / "routing_prompt_what_if.png"))
    assert "meteora_frozen_1" in rerun_cell(page, "[a.name for a in what_if.frozen]")
    page.screenshot(path=str(screenshots / "routing_adapter_mixtures_page.png"))
