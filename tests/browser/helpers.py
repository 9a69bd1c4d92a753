"""Driving a notebook in the lab from Playwright: run it all, rerun one cell and read its output."""

from __future__ import annotations

CURRENT = "() => window.jupyterapp.shell.currentWidget"
CODE_CELLS = f"({CURRENT})().content.widgets.filter(c => c.model.type === 'code')"


def run_notebook(page, url: str, notebook: str, screenshots) -> None:
    """Open ``tutorials/<notebook>`` in the lab, run every cell, and check that none failed."""
    page.goto(f"{url}/lab/tree/tutorials/{notebook}?reset")
    page.wait_for_function("window.jupyterapp && window.jupyterapp.started")
    page.wait_for_selector(".jp-Notebook .jp-Cell", state="attached")
    try:
        page.wait_for_function(
            f"() => {{ const w = ({CURRENT})(); return w && w.sessionContext && w.sessionContext.session"
            " && w.sessionContext.session.kernel && w.sessionContext.session.kernel.status === 'idle'; }")
    except Exception:
        page.screenshot(path=str(screenshots / f"{notebook}_kernel_wait_failed.png"))
        raise
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_function(
        f"() => {{ const cells = {CODE_CELLS}; return cells.length > 0"
        " && cells.every(c => c.model.executionCount !== null)"
        f" && ({CURRENT})().sessionContext.session.kernel.status === 'idle'; }}",
        timeout=15 * 60_000, polling=2000)
    errors = page.evaluate(
        f"() => {CODE_CELLS}.flatMap(c => {{ const o = c.model.outputs; const out = [];"
        " for (let i = 0; i < o.length; i++) { const j = o.get(i).toJSON();"
        "   if (j.output_type === 'error') out.push(j.ename + ': ' + j.evalue); }"
        " return out; })")
    assert errors == [], errors


def rerun_cell(page, starts_with: str) -> str:
    """Run the code cell whose source starts with ``starts_with`` again; return its text output."""
    index, count = page.evaluate(
        "async (start) => { const w = window.jupyterapp.shell.currentWidget;"
        " const i = w.content.widgets.findIndex(c => c.model.sharedModel.getSource().startsWith(start));"
        " if (i < 0) return [i, null]; const count = w.content.widgets[i].model.executionCount;"
        " w.content.activeCellIndex = i; await window.jupyterapp.commands.execute('notebook:run-cell');"
        " return [i, count]; }", starts_with)
    assert index >= 0, f"no cell starts with {starts_with!r}"
    page.wait_for_function(
        "([i, before]) => { const w = window.jupyterapp.shell.currentWidget; const c = w.content.widgets[i];"
        " return c.model.executionCount > before && c.model.outputs.length > 0"
        " && w.sessionContext.session.kernel.status === 'idle'; }",
        arg=[index, count])
    return page.evaluate(
        "(i) => { const o = window.jupyterapp.shell.currentWidget.content.widgets[i].model.outputs;"
        " const j = o.get(o.length - 1).toJSON(); return (j.data && j.data['text/plain']) || j.text || ''; }",
        index)
