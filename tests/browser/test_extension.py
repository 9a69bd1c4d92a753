"""The LoRA Workbench extension in a real JupyterLab: active, launcher, palette, sidebar and its actions.

One notebook on the real SmolLM2 and the ready adapters. The sidebar shows a hint before the kernel
has a workbench, lists the adapters after the cell that makes one, follows ``lab.use``, and its
actions insert cells that run and render (angle matrix with a click answered by Python, merge
builder, evaluation table, export to PEFT directories). Screenshots: ``extension_*.png``.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.browser.helpers import CURRENT, rerun_cell

pytestmark = pytest.mark.browser

SIDEBAR = "#lora-workbench-sidebar"
SOURCE = f"(i) => ({CURRENT})().content.widgets[i].model.sharedModel.getSource()"
NOTEBOOK = "lw_extension.ipynb"
CELLS = [
    "import os\nos.getcwd()",
    "import workbench as wb\nfrom workbench import ready\n\n"
    'lab = wb.Workbench.from_zoo("smollm2-135m")\nready.load_all(lab)\nlab',
    'lab.use("topic")',
]


def _api(url: str, method: str = "GET", body: dict | None = None) -> dict | None:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        text = r.read().decode()
    return json.loads(text) if text else None


def _write_notebook(url: str) -> None:
    cells = [{"cell_type": "code", "source": s, "metadata": {}, "outputs": [], "execution_count": None}
             for s in CELLS]
    nb = {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
          "nbformat": 4, "nbformat_minor": 5}
    _api(f"{url}/api/contents/tutorials/{NOTEBOOK}", "PUT", {"type": "notebook", "format": "json",
                                                               "content": nb})


def _wait_idle(page) -> None:
    page.wait_for_function(
        f"() => {{ const w = ({CURRENT})(); return w && w.sessionContext && w.sessionContext.session"
        " && w.sessionContext.session.kernel && w.sessionContext.session.kernel.status === 'idle'; }")


def _action_cell(page, action: str, starts_with: str) -> int:
    """Click an action button; wait until the cell it inserted has run; return the cell's index."""
    page.locator(f'{SIDEBAR} [data-action="{action}"]').first.click()
    index = page.wait_for_function(
        f"(start) => {{ const w = ({CURRENT})(); const i = w.content.widgets.findIndex("
        " c => c.model.sharedModel.getSource().startsWith(start));"
        " if (i < 0) return false; const c = w.content.widgets[i];"
        " return c.model.executionCount !== null && w.sessionContext.session.kernel.status === 'idle'"
        " ? i + 1 : false; }", arg=starts_with, timeout=10 * 60_000, polling=500).json_value() - 1
    errors = page.evaluate(
        f"(i) => {{ const o = ({CURRENT})().content.widgets[i].model.outputs; const out = [];"
        " for (let k = 0; k < o.length; k++) { const j = o.get(k).toJSON();"
        " if (j.output_type === 'error') out.push(j.ename + ': ' + j.evalue); } return out; }", index)
    assert errors == [], errors
    return index


def test_extension_is_active_with_launcher_and_palette(lab_server, page, screenshots):
    page.set_default_timeout(120_000)
    page.set_viewport_size({"width": 1400, "height": 900})
    logs: list[str] = []
    page.on("console", lambda m: logs.append(m.text))
    page.goto(f"{lab_server}/lab?reset")
    page.wait_for_function("window.jupyterapp && window.jupyterapp.started")
    assert page.evaluate("window.jupyterapp.isPluginActivated('lora-workbench:plugin')")
    page.wait_for_function("() => document.querySelector('#lora-workbench-sidebar') !== null")
    assert any("lora-workbench is activated" in m for m in logs), logs

    # the launcher has one card per tutorial; a click opens that notebook
    page.evaluate("window.jupyterapp.commands.execute('launcher:create')")
    cards = page.locator(".jp-LauncherCard", has_text="Tutorial 00 · quickstart")
    cards.first.wait_for()
    page.screenshot(path=str(screenshots / "extension_launcher.png"))
    cards.first.click()
    page.wait_for_function(
        f"() => {{ const w = ({CURRENT})(); return w && w.context && w.context.path"
        " === 'tutorials/00_quickstart.ipynb'; }")
    page.evaluate(f"async () => {{ const w = ({CURRENT})(); await w.sessionContext.shutdown();"
                  " w.dispose(); }")

    # the palette lists the panel and its actions
    page.evaluate("window.jupyterapp.commands.execute('apputils:activate-command-palette')")
    page.locator(".lm-CommandPalette-input").fill("LoRA Workbench")
    items = page.locator(".lm-CommandPalette-item")
    items.first.wait_for()
    labels = items.all_text_contents()
    for label in ["Show the LoRA Workbench panel", "Compare the selected adapters",
                  "Merge the selected adapters", "Evaluate the selected adapters",
                  "Export the selected adapters", "Tutorial 00 · quickstart"]:
        assert any(label in t for t in labels), (label, labels)
    page.screenshot(path=str(screenshots / "extension_palette.png"))
    page.keyboard.press("Escape")


def test_sidebar_lists_the_workbench_and_its_actions_run(lab_server, page, screenshots):
    page.set_default_timeout(300_000)  # SmolLM2 loads in the kernel meanwhile (2 busy cores)
    page.set_viewport_size({"width": 1500, "height": 1000})
    _write_notebook(lab_server)
    page.goto(f"{lab_server}/lab/tree/tutorials/{NOTEBOOK}?reset")
    page.wait_for_function("window.jupyterapp && window.jupyterapp.started")
    page.wait_for_selector(".jp-Notebook .jp-Cell", state="attached")
    _wait_idle(page)
    page.evaluate("window.jupyterapp.commands.execute('lora-workbench:open')")
    sidebar = page.locator(SIDEBAR)
    sidebar.wait_for()
    try:
        # a kernel without workbench: a clear hint, and asking imported nothing there
        rerun_cell(page, "import os")
        page.wait_for_selector(f"{SIDEBAR} .jp-LoraWorkbench-empty")
        assert "No workbench in this kernel" in sidebar.text_content()
        sidebar.screenshot(path=str(screenshots / "extension_sidebar_no_workbench.png"))

        # the cell that makes a workbench: the sidebar lists its base and adapters
        rerun_cell(page, "import workbench as wb")
        page.wait_for_selector(f'{SIDEBAR} [data-adapter="code"]')
        assert sidebar.locator("[data-adapter]").count() == 4
        assert "smollm2-135m · LlamaForCausalLM" in sidebar.locator(".jp-LoraWorkbench-base").text_content()
        topic = sidebar.locator('[data-adapter="topic"]')
        assert "r=8" in topic.text_content()
        assert "k_proj, o_proj, q_proj, v_proj × 30 layers (120 modules)" in topic.text_content()
        assert "train_lora on topic (80 steps)" in topic.text_content()
        assert "921.6k params · 3.5 MiB · standard" in topic.locator(".jp-LoraWorkbench-size").text_content()
        assert "using: base only" in sidebar.text_content()

        # the next executed cell refreshes it: topic is now in use
        rerun_cell(page, 'lab.use("topic")')
        page.wait_for_selector(f'{SIDEBAR} [data-adapter="topic"].jp-mod-active')
        assert "using: topic" in sidebar.text_content()
        page.screenshot(path=str(screenshots / "extension_sidebar_page.png"))
        sidebar.screenshot(path=str(screenshots / "extension_sidebar.png"))

        # compare: needs two; inserts and runs an AngleMatrix cell; a click there reaches Python
        compare = sidebar.locator('[data-action="compare"]')
        sidebar.locator('[data-adapter="topic"] input').check()
        assert compare.is_disabled()
        sidebar.locator('[data-adapter="language"] input').check()
        assert compare.is_enabled()
        index = _action_cell(page, "compare", "from widgets import AngleMatrix")
        source = page.evaluate(SOURCE, index)
        assert 'for name in ["topic", "language"]' in source
        matrix = page.locator(".lw-angle-matrix")
        matrix.wait_for()
        assert matrix.locator(".lw-matrix .lw-cell").count() == 4
        matrix.locator('.lw-matrix .lw-cell[data-row="topic"][data-col="language"]').click()
        page.wait_for_function(
            "() => { const t = document.querySelector("
            "'.lw-angle-matrix .lw-breakdown:not(.lw-stale) .lw-title');"
            " return t && t.textContent.startsWith('topic · language'); }")
        matrix.scroll_into_view_if_needed()
        page.screenshot(path=str(screenshots / "extension_action_compare.png"))

        # merge: a MergeBuilder on the same two
        _action_cell(page, "merge", "from widgets import MergeBuilder")
        builder = page.locator(".lw-merge-builder")
        builder.wait_for()
        builder.scroll_into_view_if_needed()
        page.screenshot(path=str(screenshots / "extension_action_merge.png"))

        # evaluate: one adapter and the base, on the task it was trained on -> a table
        sidebar.locator('[data-adapter="language"] input').uncheck()
        assert compare.is_disabled()
        index = _action_cell(page, "evaluate", "import workbench as wb\n\nscores")
        source = page.evaluate(SOURCE, index)
        assert 'lab.evaluate(["topic", None], wb.tasks.load(["topic"]))' in source
        table = page.locator(".jp-Cell").nth(index).locator(".jp-OutputArea table")
        table.wait_for()
        assert "topic" in table.text_content() and "base" in table.text_content()
        table.scroll_into_view_if_needed()
        page.screenshot(path=str(screenshots / "extension_action_evaluate.png"))

        # export: PEFT directories next to the notebook
        _action_cell(page, "export", "for name in")
        listing = _api(f"{lab_server}/api/contents/tutorials/exported/topic")
        assert {"adapter_config.json", "adapter_model.safetensors"} <= {f["name"] for f in listing["content"]}
    finally:
        for s in _api(f"{lab_server}/api/sessions") or []:  # free the kernel (SmolLM2) for the next tests
            if s["path"].endswith(NOTEBOOK):
                _api(f"{lab_server}/api/sessions/{s['id']}", "DELETE")
