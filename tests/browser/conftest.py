"""A real JupyterLab started by ``lora-workbench lab`` (headless), driven by Debian chromium."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / "tests" / "browser" / "screenshots"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(cmd: list[str], probe: str, log_path: Path, *, what: str, timeout: float, **popen):
    """Start ``cmd`` (output to ``log_path``), wait until ``probe`` answers 200, yield; stop it after.

    The process is stopped by its handle (terminate, then kill after 20 s) whatever the test did.
    """
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, **popen)
    try:
        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(probe, timeout=30) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                log.flush()
                raise RuntimeError(f"{what} did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not Path(CHROMIUM).exists():
        pytest.skip("browser tests need Debian chromium: apt-get install chromium (make test does it)")
    return {**browser_type_launch_args, "executable_path": CHROMIUM,
            "args": ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--disable-dev-shm-usage"]}


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory):
    """Start ``lora-workbench lab --no-browser`` on a temp copy of tutorials/; yield its URL."""
    tmp = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "tutorials", tmp / "tutorials",
                    ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints"))
    settings = tmp / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    port = _free_port()
    env = {**os.environ, "LW_TEST_WORKSPACES": str(tmp / "workspaces"),
           "LW_TEST_SETTINGS": str(tmp / "settings"), "HF_HUB_OFFLINE": "1",
           "LORA_WORKBENCH_QUICK": "1",  # tutorials read it: short schedules under make test
           # two workers' kernels share the 2 cores (with chromium): one torch thread each, waits that
           # sleep; two processes at two spinning threads each slow each other down 10-20x
           "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    cmd = [sys.executable, "-m", "workbench.cli", "lab", "--dir", str(tmp / "tutorials"),
           "--port", str(port), "--no-browser",
           f"--config={ROOT / 'tests' / 'browser' / 'jupyter_server_test_config.py'}"]
    url = f"http://127.0.0.1:{port}"
    with running_server(cmd, f"{url}/api/status", tmp / "jupyterlab.log", what="JupyterLab", timeout=120,
                        cwd=tmp, env=env):
        yield url


def shut_down_kernels(url: str) -> None:
    """Stop every kernel of the lab at ``url`` (the test lab has no token), so that one test's
    background work (a trainer thread, say) does not take the CPU from the next."""
    with urllib.request.urlopen(f"{url}/api/kernels", timeout=30) as r:
        kernels = json.loads(r.read())
    for k in kernels:
        request = urllib.request.Request(f"{url}/api/kernels/{k['id']}", method="DELETE")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(request, timeout=60).close()


@pytest.fixture(autouse=True)
def _kernels_stop_after_each_test(request):
    yield
    if "lab_server" in request.fixturenames:
        shut_down_kernels(request.getfixturevalue("lab_server"))


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS
