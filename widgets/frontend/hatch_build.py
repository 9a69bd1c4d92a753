"""Hatch build hook: bundle the widget front ends (``npm ci`` when needed, then ``npm run build``).

Runs with every ``pip install .`` / ``pip install -e .`` (so ``make`` builds them too), beside the
jupyter-builder hook that builds the JupyterLab extension. Writes ``widgets/static/dist/<name>.{js,css}``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class WidgetFrontendHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        here = Path(self.root) / "widgets" / "frontend"
        dist = Path(self.root) / "widgets" / "static" / "dist"
        npm = shutil.which("npm")
        if npm is None:
            if any(dist.glob("*.js")):  # an sdist carries the bundles
                return
            raise RuntimeError("the widget front ends (widgets/frontend) are built with npm: install "
                               "Node.js 20 or later (with npm), then install again")
        lock, installed = here / "package-lock.json", here / "node_modules" / ".package-lock.json"
        if not installed.is_file() or installed.stat().st_mtime < lock.stat().st_mtime:
            subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=here, check=True)
        subprocess.run([npm, "run", "build"], cwd=here, check=True)
