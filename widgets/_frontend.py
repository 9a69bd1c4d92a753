"""Where the widgets' front ends are: one ES module and one stylesheet per view, built from TypeScript.

The sources are ``widgets/frontend/src`` (one module per view, shared helpers imported from ``lib/``);
esbuild bundles them into ``widgets/static/dist/<name>.js`` and ``<name>.css`` when the package is
installed (the build hook in ``widgets/frontend/hatch_build.py``, run by ``pip install -e .`` and thus by
``make``). anywidget reads a path as the file's contents; the dashboard twins the same modules.
"""

from __future__ import annotations

from pathlib import Path

from workbench.errors import WorkbenchError

FRONTEND = Path(__file__).parent / "frontend"
DIST = Path(__file__).parent / "static" / "dist"


def _built(name: str) -> Path:
    path = DIST / name
    if not path.is_file():
        raise WorkbenchError(
            f"the widget front end {path} is not built; run `make` (or `pip install -e .`), or build it "
            f"alone with `cd {FRONTEND} && npm ci && npm run build` (needs Node.js 20 or later)")
    return path


def bundle(name: str) -> Path:
    """The ES module of the view ``name`` (``widgets/frontend/src/<name>.ts``, bundled)."""
    return _built(f"{name}.js")


def stylesheet(name: str) -> Path:
    """The stylesheet of the view ``name`` (the CSS its module imports, bundled)."""
    return _built(f"{name}.css")
