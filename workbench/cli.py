"""The ``lora-workbench`` command: ``lab`` (JupyterLab on the quickstart), ``notebooks``, ``inspect``,
``serve``, ``reproduce`` (an experiment's full or quick run into results/), ``runs`` (what the run
store holds) and ``merge`` (a recorded merge again, from its recipe).

Subcommands are registered functions (``serve``: the Panel dashboard).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from workbench import ready
from workbench.adapters import read_peft
from workbench.errors import WorkbenchError
from workbench.registry import Registry

COMMANDS: Registry = Registry("command", flags={
    "passes_extra_args": "options it does not know go on to the program it starts (jupyter lab)"})
QUICKSTART = "00_quickstart"


def build_notebooks(tutorials: Path, out: Path | None = None, *, force: bool = False) -> list[Path]:
    """Make ``NN_name.ipynb`` in ``out`` (default: beside) from each jupytext ``tutorials/NN_name.py``.

    An existing notebook is kept (it may hold a user's edits and outputs) unless ``force``.
    """
    import jupytext

    out = out or tutorials
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for src in sorted(tutorials.glob("[0-9][0-9]_*.py")):
        dst = out / (src.stem + ".ipynb")
        if force or not dst.exists():
            nb = jupytext.read(src)
            # A plain notebook: no pairing metadata, so JupyterLab's jupytext contents manager
            # neither refuses it nor writes the user's edits back into the tracked .py source.
            nb.metadata.pop("jupytext", None)
            jupytext.write(nb, dst)
            made.append(dst)
    return made


@COMMANDS.register("notebooks", reference="jupytext (Wouts et al., github.com/mwouts/jupytext)")
def _notebooks(args: argparse.Namespace) -> int:
    """Build the tutorial notebooks from their jupytext sources."""
    made = build_notebooks(Path(args.dir), Path(args.out) if args.out else None, force=args.force)
    print(f"built {len(made)} notebook(s)" + "".join(f"\n  {p}" for p in made))
    return 0


@COMMANDS.register("lab", flags=("passes_extra_args",),
                   reference="JupyterLab (Project Jupyter, jupyterlab.readthedocs.io)")
def _lab(args: argparse.Namespace) -> int:
    """Start JupyterLab on the quickstart tutorial."""
    tutorials = Path(args.dir)
    if not (tutorials / f"{QUICKSTART}.py").exists():
        print(f"error: {tutorials}/{QUICKSTART}.py not found; run from the repository root or "
              "pass --dir path/to/tutorials", file=sys.stderr)
        return 2
    build_notebooks(tutorials)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = lab_command(tutorials, args, root=os.geteuid() == 0)
    print("starting:", " ".join(cmd), flush=True)
    if os.name == "posix":  # become JupyterLab: a signal to this process (Ctrl-C, terminate) reaches it
        os.execve(sys.executable, cmd, env)
    return subprocess.call(cmd, env=env)


def lab_command(tutorials: Path, args: argparse.Namespace, *, root: bool) -> list[str]:
    """The JupyterLab command line. As root it adds ``--allow-root`` (JupyterLab refuses root
    otherwise) and says so on stderr: nothing is added silently."""
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={tutorials.parent.resolve()}",
           f"--port={args.port}", f"{tutorials.name}/{QUICKSTART}.ipynb"]
    if args.no_browser:
        cmd.append("--no-browser")
    if root and "--allow-root" not in args.extra:
        print("note: running as root, so --allow-root is passed to JupyterLab (it refuses root "
              "otherwise); run as a normal user to avoid it", file=sys.stderr)
        cmd.append("--allow-root")
    return cmd + list(args.extra)


@COMMANDS.register("inspect",
                   reference="the PEFT LoRA format (Mangrulkar et al., PEFT, github.com/huggingface/peft)")
def _inspect(args: argparse.Namespace) -> int:
    """Summarize a PEFT LoRA directory: modules, ranks, alphas, scaling, lineage."""
    a = read_peft(args.path)
    print(a)
    ranks = sorted(set(a.ranks.values()))
    print(f"  modules: {len(a.modules)}  ranks: {ranks}  scaling: {a.scaling}")
    print(f"  base fingerprint: {a.base_fingerprint}")
    for k, v in a.lineage.items():
        print(f"  lineage.{k}: {v}")
    return 0


@COMMANDS.register("serve", reference="Panel (HoloViz, panel.holoviz.org)")
def _serve(args: argparse.Namespace) -> int:
    """Serve the dashboard of a folder of adapters (Panel, offline) on 127.0.0.1."""
    token = check_host(args.host, args.token)
    check_port(args.host, args.port)
    folder = Path(args.adapters) if args.adapters else ready.root()
    if not folder.is_dir():
        raise WorkbenchError(f"adapter folder {folder} does not exist; pass --adapters DIR, a folder of "
                             "PEFT adapter directories (e.g. the repository's adapters/)")
    from widgets.dashboard import serve  # late: Panel and plotly load only for `serve`

    serve(folder, args.host, args.port, show=not args.no_browser, load_base=not args.no_model,
          **({"token": token} if token else {}))
    return 0


@COMMANDS.register("reproduce", reference="workbench.experiments (the papers each experiment names)")
def _reproduce(args: argparse.Namespace) -> int:
    """Run an experiment (or all) and write its per-seed table and summary to results/."""
    from workbench.experiments import EXPERIMENTS, reproduce  # late: the experiments load the lab

    names = EXPERIMENTS.names() if args.name in (None, "all") else [args.name]
    if args.index:
        from workbench.experiments.index import write_index

        print(f"wrote {write_index(args.out)}")
        return 0
    if args.list:
        for n in EXPERIMENTS.names():
            print(f"{n}: {EXPERIMENTS.info(n).summary}")
        return 0
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    for name in names:
        command = " ".join(["lora-workbench reproduce", name, *(["--quick"] if args.quick else []),
                            *(["--seeds", *map(str, args.seeds)] if args.seeds else []),
                            *(["--arms", *args.arms] if args.arms else []),
                            *(["--resume"] if args.resume else []),
                            *([f"--threads {args.threads}"] if args.threads is not None else [])])
        done = reproduce(name, quick=args.quick, seeds=args.seeds, arms=args.arms, resume=args.resume,
                         out=args.out, command=command)
        print(f"{name}: wrote {done.csv} and {done.markdown}")
        for v in done.verdicts:
            print(f"  {v.claim}: {v.measure} = {v.interval} -> "
                  f"{ {True: 'holds', False: 'refuted', None: 'not shown'}[v.holds] }")
    return 0


@COMMANDS.register("runs", reference="MLflow tracking (mlflow.org/docs/latest/tracking.html)")
def _runs(args: argparse.Namespace) -> int:
    """List what a run store holds: adapters made, evaluations, search candidates (newest first)."""
    from workbench.runs import DEFAULT_URI, EXPERIMENT, read_runs

    runs = read_runs(args.store or os.environ.get("LORA_WORKBENCH_TRACKING") or DEFAULT_URI,
                     args.experiment or EXPERIMENT, kind=args.kind)
    if runs.empty:
        print("no runs recorded (a lab records to sqlite:///mlflow.db in its working folder by default)")
        return 0
    runs = runs.assign(start=runs.start.dt.strftime("%Y-%m-%d %H:%M"),
                       metrics=[len(m) for m in runs.metrics], params=[len(p) for p in runs.params])
    import pandas as pd

    with pd.option_context("display.width", 160, "display.max_rows", args.limit):
        print(runs.head(args.limit).drop(columns=["artifact_uri"]).to_string(index=False))
    return 0


@COMMANDS.register("merge", reference="workbench.runs.recipe (mergekit's merge configurations)")
def _merge(args: argparse.Namespace) -> int:
    """Re-create a recorded merge from its recipe.json, bit for bit, as a PEFT folder."""
    from workbench.adapters import write_peft
    from workbench.runs import EXPERIMENT, finder, read_recipe, replay

    recipe = read_recipe(args.recipe)
    find = finder(args.store, args.experiment or EXPERIMENT, folders=args.sources or ())
    adapter = replay(recipe, find)
    out = write_peft(adapter, args.out, base_model_name_or_path=recipe["base"]["name"],
                     overwrite=args.overwrite)
    print(f"{recipe['method']} of {[s['name'] for s in recipe['sources']]} -> {out} "
          f"(content {recipe['result']['fingerprint']}, as recorded)")
    return 0


def check_host(host: str, token: str | None) -> str | None:
    """A loopback host needs nothing; any other address is reachable from the network: warn, and
    require ``--token`` (or the LORA_WORKBENCH_TOKEN variable), the password the page then asks for."""
    import ipaddress

    token = token or os.environ.get("LORA_WORKBENCH_TOKEN") or None
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return token
    print(f"warning: --host {host} makes the dashboard reachable from other machines; anyone who can "
          "reach it can run merges and evaluations on this machine", file=sys.stderr)
    if not token:
        raise WorkbenchError(f"--host {host} is not a loopback address, so a token is required: pass "
                             "--token SECRET (or set LORA_WORKBENCH_TOKEN), or serve on 127.0.0.1")
    return token


def check_port(host: str, port: int) -> None:
    """A clear error unless ``port`` is a TCP port number that is free on ``host``."""
    import socket

    if not 1 <= port <= 65535:
        raise WorkbenchError(f"--port {port} is not a TCP port; give a number from 1 to 65535 (default 5006)")
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will: TIME_WAIT is free
        try:
            s.bind((host, port))
        except OSError as e:
            raise WorkbenchError(f"cannot listen on {host}:{port} ({e.strerror or e}); "
                                 "pass another --port (or stop what holds it)") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lora-workbench", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    lab = sub.add_parser("lab", help=COMMANDS.get("lab").__doc__)
    lab.add_argument("--dir", default="tutorials", help="the tutorials folder (default: ./tutorials)")
    lab.add_argument("--port", type=int, default=8888)
    lab.add_argument("--no-browser", action="store_true", help="do not open a browser (headless)")
    lab.epilog = "Other options (e.g. --ServerApp.token=...) are passed on to jupyter lab."
    nb = sub.add_parser("notebooks", help=COMMANDS.get("notebooks").__doc__)
    nb.add_argument("--dir", default="tutorials")
    nb.add_argument("--out", default=None, help="where to write them (default: beside the sources)")
    nb.add_argument("--force", action="store_true", help="rebuild even where a notebook exists")
    ins = sub.add_parser("inspect", help=COMMANDS.get("inspect").__doc__)
    ins.add_argument("path", help="a PEFT LoRA directory")
    srv = sub.add_parser("serve", help=COMMANDS.get("serve").__doc__)
    srv.add_argument("--adapters", default=None,
                     help="a folder of PEFT adapter directories (default: the ready adapters, ./adapters)")
    srv.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: 127.0.0.1)")
    srv.add_argument("--port", type=int, default=5006, help="the port (default: 5006)")
    srv.add_argument("--token", default=None,
                     help="a password the page asks for; required with a non-loopback --host")
    srv.add_argument("--no-browser", action="store_true", help="do not open a browser (headless)")
    srv.add_argument("--no-model", action="store_true",
                     help="do not load the adapters' base model: geometry views only, no merge or evaluation")
    rep = sub.add_parser("reproduce", help=COMMANDS.get("reproduce").__doc__)
    rep.add_argument("name", nargs="?", default=None, help="an experiment (default: all of them)")
    rep.add_argument("--quick", action="store_true",
                     help="a few steps, one seed, a tiny evaluation (a smoke test: results/quick/)")
    rep.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default: the experiment's)")
    rep.add_argument("--arms", nargs="+", default=None,
                     help="run only these arms; the other arms' rows already in the table are kept")
    rep.add_argument("--resume", action="store_true",
                     help="keep the seeds the table already has for every arm; run only the others")
    rep.add_argument("--out", default=None, help="the results folder (default: ./results)")
    rep.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    rep.add_argument("--list", action="store_true", help="list the experiments and exit")
    rep.add_argument("--index", action="store_true",
                     help="rewrite the results folder's README.md (every claim and verdict) from its tables")
    runs = sub.add_parser("runs", help=COMMANDS.get("runs").__doc__)
    runs.add_argument("--store", default=None,
                      help="an MLflow tracking URI (default: $LORA_WORKBENCH_TRACKING or sqlite:///mlflow.db)")
    runs.add_argument("--experiment", default=None, help="the MLflow experiment (default: lora-workbench)")
    runs.add_argument("--kind", default=None, choices=["adapter", "evaluation", "candidate", "sweep"])
    runs.add_argument("--limit", type=int, default=50, help="how many of the newest runs to list")
    mer = sub.add_parser("merge", help=COMMANDS.get("merge").__doc__)
    mer.add_argument("recipe", help="a recipe.json (a recorded merge's artifacts hold one)")
    mer.add_argument("--out", required=True, help="the PEFT folder to write")
    mer.add_argument("--store", default=None, help="the tracking URI where the sources were recorded")
    mer.add_argument("--experiment", default=None, help="the MLflow experiment (default: lora-workbench)")
    mer.add_argument("--sources", nargs="+", default=None, help="PEFT folders to find the sources in")
    mer.add_argument("--overwrite", action="store_true", help="replace --out if it holds only adapter files")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args, extra = p.parse_known_args(argv)
    if extra and not COMMANDS.has(args.command, "passes_extra_args"):
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    try:
        return COMMANDS.get(args.command)(args)
    except (WorkbenchError, ValueError, OSError) as e:  # a user error: one clear line, no traceback
        message = str(e) if isinstance(e, WorkbenchError) else f"{type(e).__name__}: {e}"
        print(f"error: {' '.join(message.split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
