"""Catalogue rows for the apps: the command line (one error line, exit code 2) and the serve listing."""

from __future__ import annotations

import json

from tests.reliability.case import Case, with_field
from tests.reliability.world import World, copy_adapter
from workbench.cli import main


def _cfg(w: World, mutate) -> None:
    f = copy_adapter(w) / "adapter_config.json"
    value = mutate(json.loads(f.read_text()))
    f.write_bytes(value if isinstance(value, bytes) else json.dumps(value).encode())


def _cli(args):
    return lambda w: main([a(w) if callable(a) else a for a in args])


COMMAND_LINE = [
    Case(
        "cli:inspect-missing",
        _cli(["inspect", lambda w: str(w.root / "nothing")]),
        "not a directory",
        cli=True,
    ),
    Case(
        "cli:inspect-a-file",
        _cli(["inspect", lambda w: str(w.project / "analysis.ipynb")]),
        "not a directory",
        cli=True,
    ),
    Case(
        "cli:inspect-json-list",
        _cli(["inspect", lambda w: str(w.bad / "x")]),
        "JSON list",
        cli=True,
        setup=lambda w: _cfg(w, lambda c: [c]),
    ),
    Case(
        "cli:inspect-non-utf8",
        _cli(["inspect", lambda w: str(w.bad / "x")]),
        "not UTF-8",
        cli=True,
        setup=lambda w: _cfg(w, lambda c: b"\xff\xfe{}"),
    ),
    Case(
        "cli:inspect-alpha-word",
        _cli(["inspect", lambda w: str(w.bad / "x")]),
        "lora_alpha is 'sixteen'",
        cli=True,
        setup=lambda w: _cfg(w, with_field(lora_alpha="sixteen")),
    ),
    Case(
        "cli:inspect-bad-regex",
        _cli(["inspect", lambda w: str(w.bad / "x")]),
        "not a valid regular expression",
        cli=True,
        setup=lambda w: _cfg(w, with_field(rank_pattern={"((": 2})),
    ),
    Case(
        "cli:inspect-truncated-weights",
        _cli(["inspect", lambda w: str(w.bad / "x")]),
        "truncated",
        cli=True,
        setup=lambda w: (copy_adapter(w) / "adapter_model.safetensors").write_bytes(b"\x08" + b"\0" * 9),
    ),
    Case(
        "cli:serve-missing-folder",
        _cli(["serve", "--adapters", lambda w: str(w.root / "nothing"), "--no-browser"]),
        "does not exist",
        cli=True,
    ),
    Case(
        "cli:serve-port-zero",
        _cli(["serve", "--adapters", lambda w: str(w.root / "saved"), "--port", "0"]),
        "is not a TCP port",
        cli=True,
    ),
    Case(
        "cli:serve-port-huge",
        _cli(["serve", "--adapters", lambda w: str(w.root / "saved"), "--port", "70000"]),
        "is not a TCP port",
        cli=True,
    ),
    Case(
        "cli:serve-open-host-no-token",
        _cli(["serve", "--adapters", lambda w: str(w.root / "saved"), "--host", "0.0.0.0", "--no-browser"]),
        "token is required",
        cli=True,
    ),
    Case(
        "cli:serve-lan-host-no-token",
        _cli(
            ["serve", "--adapters", lambda w: str(w.root / "saved"), "--host", "192.168.1.5", "--no-browser"]
        ),
        "token is required",
        cli=True,
    ),
    Case(
        "cli:lab-no-tutorials",
        _cli(["lab", "--dir", lambda w: str(w.root / "nothing")]),
        "not found",
        cli=True,
    ),
]


def _listing(w: World, skipped=None):
    from widgets.dashboard import load_folder

    return load_folder(w.bad, skipped)


def _leftovers_only(w: World) -> None:
    copy_adapter(w, ".a.old")
    copy_adapter(w, ".a.k3j9x0ab")


DASHBOARD = [
    Case("serve-listing:missing", lambda w: _listing_of(w.root / "nothing"), "does not exist"),
    Case("serve-listing:empty", lambda w: _listing(w), "holds no adapter"),
    Case("serve-listing:only-leftovers", lambda w: _listing(w), "holds no adapter", setup=_leftovers_only),
    Case(
        "serve-listing:unreadable-strict",
        lambda w: _listing(w),
        "JSON list",
        setup=lambda w: _cfg(w, lambda c: [c]),
    ),
    Case("serve-listing:one-adapter", lambda w: _board(w), "at least two"),
]


def _listing_of(folder):
    from widgets.dashboard import load_folder

    return load_folder(folder)


def _board(w: World):
    from widgets.dashboard import Dashboard

    return Dashboard({"a": w.lab.adapters["a"]})


CASES = [*COMMAND_LINE, *DASHBOARD]
