"""A small AST mutation tester (dev script): which one-token changes of a file do the tests miss?

Usage (from the repository root)::

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD .venv/bin/python scripts/mutate.py \
        workbench/routing/mechanisms/smora.py --lines 58,65-84 --timeout 120 -- \
        tests/routing/test_routing_smora.py tests/routing/test_routing_all.py -k smora

Everything after ``--`` goes to pytest (``-x -q -p no:cacheprovider`` are added). Each mutant changes one
place of the file:

    compare   < ↔ <=, > ↔ >=, == ↔ !=, is ↔ is not, in ↔ not in
    binop     + ↔ -, * ↔ /, // → *, ** → *, & ↔ |, also in augmented assignments (+= ↔ -=)
    boolop    and ↔ or
    unary     drop a unary minus, ``not`` or ``~``
    negate    ``if c`` / ``while c`` / ``a if c else b`` → ``not c``
    const     0 → 1, 1 → 0, n → n + 1, x.y → x.y + 1, True ↔ False
    minmax    min ↔ max, amin ↔ amax, argmin ↔ argmax (functions and methods)
    unwrap    drop a wrapper: sigmoid(x) / softmax / relu / gelu / abs / sqrt / exp / log / normalize → x,
              x.detach() / x.abs() / … → x
    swap      f(a, b) → f(b, a) for calls with exactly two positional arguments
    delete    an expression statement, assignment or augmented assignment → ``pass``

Docstrings, decorators (registry metadata), ``raise`` statements and string constants are not mutated.
The file on disk is never written: each mutant runs in a forked child (the parent pre-imports the heavy
third-party packages once) whose import system serves the mutated source for the file's module, so the
mutant cannot leak into the tree or into ``__pycache__``. Mutants run one at a time, each under a
timeout. A mutant is ``killed`` when pytest fails, ``survived`` when it passes, ``timeout`` when it
runs past ``--timeout``. Survivors are printed with their line numbers and diffs.

The parent also imports the mutated file's top-level package (and ``--purge`` packages, default
``tests``) to warm their third-party imports and collects the tests once; each child then drops
those packages and every module loaded from a file of the working tree from ``sys.modules``, so they
are imported again, with the mutant.

Options: ``--lines A-B[,C-D]`` mutates only nodes starting in those lines; ``--list`` prints the
mutants without running; ``--only i,j`` runs those mutant ids; ``--json PATH`` writes the results;
``--preload mod,mod`` chooses what the parent imports before forking; ``--survivors-of JSON`` reruns
only an earlier run's survivors (after adding tests: a killed mutant stays killed when tests only grow).
"""

from __future__ import annotations

import argparse
import ast
import copy
import difflib
import hashlib
import importlib.abc
import importlib.util
import json
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass

COMPARE = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
           ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn, ast.NotIn: ast.In}
BINOP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Mult,
         ast.Pow: ast.Mult, ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd}
MINMAX = {"min": "max", "max": "min", "amin": "amax", "amax": "amin", "argmin": "argmax", "argmax": "argmin"}
UNWRAP = {"sigmoid", "softmax", "relu", "gelu", "abs", "sqrt", "exp", "log", "normalize", "detach"}
PRELOAD = "torch,numpy,transformers,transformers.models.llama.modeling_llama,peft,safetensors,pytest"


@dataclass
class Mutant:
    id: int
    line: int
    kind: str
    old: str  # the original source line(s)
    new: str  # the mutated line(s)
    status: str = ""
    seconds: float = 0.0


# -- finding and applying mutants -------------------------------------------------------------------
def _skipped(tree: ast.AST) -> set[int]:
    """ids of nodes never mutated: docstrings, decorators, raise statements (and everything inside)."""
    out: set[int] = set()

    def mark(node: ast.AST) -> None:
        out.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                mark(body[0])
            for d in getattr(node, "decorator_list", []):
                mark(d)
        if isinstance(node, ast.Raise | ast.Import | ast.ImportFrom | ast.JoinedStr):
            mark(node)
    return out


def _sites(tree: ast.AST) -> list[tuple[ast.AST, str, object]]:
    """(node, kind, detail) for every place a mutant can be made, in a fixed order."""
    skip = _skipped(tree)
    sites: list[tuple[ast.AST, str, object]] = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Compare):
            sites += [(node, "compare", i) for i, op in enumerate(node.ops) if type(op) in COMPARE]
        elif isinstance(node, ast.BinOp | ast.AugAssign) and type(node.op) in BINOP:
            sites.append((node, "binop", None))
        elif isinstance(node, ast.BoolOp):
            sites.append((node, "boolop", None))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.Not | ast.Invert):
            sites.append((node, "unary", None))
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float, bool):
            sites.append((node, "const", None))
        elif isinstance(node, ast.Call):
            name = _call_name(node)
            if name in MINMAX:
                sites.append((node, "minmax", None))
            if name in UNWRAP and (node.args or isinstance(node.func, ast.Attribute)):
                sites.append((node, "unwrap", None))
            if len(node.args) == 2 and not any(isinstance(a, ast.Starred) for a in node.args):
                sites.append((node, "swap", None))
        if isinstance(node, ast.If | ast.While | ast.IfExp):
            sites.append((node, "negate", None))
        if isinstance(node, ast.Expr | ast.Assign | ast.AugAssign | ast.AnnAssign) and \
                not (isinstance(node, ast.AnnAssign) and node.value is None):
            sites.append((node, "delete", None))
    return sites


def _call_name(call: ast.Call) -> str | None:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None


def _mutated(node: ast.AST, kind: str, detail) -> ast.AST | None:
    """A mutated copy of ``node`` (statement deletions give ``pass``), or None when nothing changes."""
    new = copy.deepcopy(node)
    if kind == "compare":
        new.ops[detail] = COMPARE[type(new.ops[detail])]()
    elif kind == "binop":
        new.op = BINOP[type(new.op)]()
    elif kind == "boolop":
        new.op = ast.Or() if isinstance(new.op, ast.And) else ast.And()
    elif kind == "unary":
        return new.operand
    elif kind == "const":
        v = new.value
        new.value = (not v) if isinstance(v, bool) else 1 if v == 0 else 0 if v == 1 else v + 1
    elif kind == "minmax":
        if isinstance(new.func, ast.Name):
            new.func.id = MINMAX[new.func.id]
        else:
            new.func.attr = MINMAX[new.func.attr]
    elif kind == "unwrap":
        return new.func.value if isinstance(new.func, ast.Attribute) and not (
            isinstance(new.func.value, ast.Name) and new.func.value.id in ("torch", "F", "math", "np")) \
            else new.args[0] if new.args else None
    elif kind == "swap":
        new.args = new.args[::-1]
    elif kind == "negate":
        return ast.UnaryOp(op=ast.Not(), operand=new.test)
    elif kind == "delete":
        return ast.Pass()
    return new


def _replace(source: str, node: ast.AST, new: ast.AST) -> str:
    """``source`` with ``node``'s text replaced by ``new`` (same number of lines, so line numbers hold)."""
    lines = source.splitlines(keepends=True)

    def offset(line: int, col: int) -> int:
        return sum(len(x) for x in lines[: line - 1]) + _col(lines[line - 1], col)

    start, end = offset(node.lineno, node.col_offset), offset(node.end_lineno, node.end_col_offset)
    pad = "\n" * (node.end_lineno - node.lineno)
    if isinstance(node, ast.stmt):  # one logical line; the statement's other lines become `pass`
        text = ast.unparse(new) + "".join("\n" + " " * node.col_offset + "pass" for _ in pad)
    else:
        text = "(" + ast.unparse(new) + pad + ")"
    return source[:start] + text + source[end:]


def _col(line: str, byte_offset: int) -> int:
    """ast column offsets count UTF-8 bytes; the character index of ``byte_offset`` in ``line``."""
    return len(line.encode("utf-8")[:byte_offset].decode("utf-8", errors="ignore"))


def mutants(source: str, lines: set[int] | None = None) -> list[tuple[Mutant, str]]:
    """Every compilable, source-changing mutant of ``source``: (Mutant, mutated source)."""
    out: list[tuple[Mutant, str]] = []
    sites = _sites(ast.parse(source))
    original = source.splitlines()
    for node, kind, detail in sites:
        if lines is not None and node.lineno not in lines:
            continue
        new = _mutated(node, kind, detail)
        if new is None:
            continue
        target = node.test if kind == "negate" else node  # negation rewrites the condition only
        text = _replace(source, target, new)
        if text == source:
            continue
        try:
            compile(text, "<mutant>", "exec")
        except SyntaxError:
            continue
        changed = text.splitlines()
        span = range(target.lineno - 1, target.end_lineno)
        out.append((Mutant(len(out), target.lineno, kind, "\n".join(original[i] for i in span),
                           "\n".join(changed[i] for i in span)), text))
    return out


# -- running one mutant -----------------------------------------------------------------------------
class _Serve(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves ``source`` as module ``name`` (compiled from text: no bytecode cache read or written)."""

    def __init__(self, name: str, path: str, source: str):
        self.name, self.path, self.source = name, path, source

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        spec = importlib.util.spec_from_loader(fullname, self, origin=self.path,
                                               is_package=self.path.endswith("__init__.py"))
        spec.has_location = True
        if spec.submodule_search_locations is not None:
            spec.submodule_search_locations.append(os.path.dirname(self.path))
        return spec

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.__file__ = self.path
        exec(compile(self.source, self.path, "exec"), module.__dict__)


def run(name: str, path: str, source: str, pytest_args: list[str], timeout: float, log: str,
        purge: set[str] = frozenset()) -> tuple[str, float]:
    """Run pytest in a forked child that imports ``source`` as module ``name``: (status, seconds)."""
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # child
        code = 4
        try:
            os.setpgid(0, 0)
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1), os.dup2(fd, 2)
            sys.dont_write_bytecode = True
            for mod in [m for m in sys.modules if m.split(".")[0] in purge or _local(sys.modules[m])]:
                del sys.modules[mod]  # re-imported fresh, so they see the mutant
            sys.meta_path.insert(0, _Serve(name, path, source))
            import pytest
            import torch
            torch.set_num_threads = lambda n: None  # keep the one thread (tests may ask for more)
            code = int(pytest.main(["-x", "-q", "-p", "no:cacheprovider", *pytest_args]))
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os._exit(code)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            return ("survived" if code == 0 else "killed"), time.monotonic() - start
        if time.monotonic() - start > timeout:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            return "timeout", time.monotonic() - start
        time.sleep(0.05)


def _local(module) -> bool:
    """Whether ``module`` was loaded from a file of this tree (tests, conftest: pytest imports them by
    their bare names), not from an installed package."""
    f = getattr(module, "__file__", None) or ""
    return f.startswith(os.getcwd() + os.sep) and "site-packages" not in f


def _collect(pytest_args: list[str], log: str) -> None:
    """Collect the tests once in the parent (output to ``log``): plugins and imports are then cached."""
    import pytest

    saved = os.dup(1), os.dup(2)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1), os.dup2(fd, 2)
    try:
        pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", *pytest_args])
    finally:
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(saved[0], 1), os.dup2(saved[1], 2)
        os.close(fd)


def module_name(path: str) -> str:
    rel = os.path.relpath(os.path.abspath(path), os.getcwd())
    if rel.startswith(".."):
        raise SystemExit(f"{path} is outside the working directory; run from the repository root")
    parts = rel[:-3].split(os.sep)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def parse_lines(spec: str | None) -> set[int] | None:
    if not spec:
        return None
    out: set[int] = set()
    for part in spec.split(","):
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cut = argv.index("--") if "--" in argv else len(argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("path", help="the Python file to mutate")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per mutant (default 120)")
    p.add_argument("--lines", help="only nodes starting in these lines, e.g. 40-60,72")
    p.add_argument("--only", help="only these mutant ids, e.g. 3,7")
    p.add_argument("--list", action="store_true", help="print the mutants, run nothing")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--survivors-of", help="run only the mutants that were not killed in this earlier --json "
                                          "of the same file (before/after: the tests only grow)")
    p.add_argument("--log", default="/tmp/mutate-pytest.log", help="pytest output of the last mutant")
    p.add_argument("--preload", default=PRELOAD, help="modules the parent imports before forking")
    p.add_argument("--purge", default="tests",
                   help="top-level packages imported in the parent (to warm what they import) and dropped in "
                        "each child before pytest runs; the mutated file's own package is always one")
    args = p.parse_args(argv[:cut])
    pytest_args = argv[cut + 1:]
    path = os.path.abspath(args.path)
    with open(path, encoding="utf-8") as f:
        source = f.read()
    found = mutants(source, parse_lines(args.lines))
    digest = hashlib.sha256(source.encode()).hexdigest()
    if args.only:
        keep = {int(i) for i in args.only.split(",")}
        found = [(m, t) for m, t in found if m.id in keep]
    if args.survivors_of:
        with open(args.survivors_of, encoding="utf-8") as f:
            earlier = json.load(f)
        if earlier.get("sha256", digest) != digest or earlier.get("lines", args.lines) != args.lines:
            raise SystemExit(f"{args.survivors_of} was made from another version of {args.path} or other "
                             "--lines: mutant ids would not match")
        keep = {m["id"] for m in earlier["mutants"] if m["status"] != "killed"}
        found = [(m, t) for m, t in found if m.id in keep]
    if args.list:
        for m, _ in found:
            print(f"#{m.id:3d} L{m.line:<4d} {m.kind:8s} {m.old.strip()}  ->  {m.new.strip()}")
        print(f"{len(found)} mutants of {args.path}")
        return 0
    for mod in filter(None, args.preload.split(",")):
        try:
            importlib.import_module(mod)
        except Exception as e:  # noqa: BLE001 (a missing optional package only costs speed)
            print(f"(preload {mod} failed: {e})", file=sys.stderr)
    name = module_name(path)
    purge = {name.split(".")[0], *filter(None, args.purge.split(","))}
    for mod in sorted(purge):  # warm their third-party imports; each child drops them again
        try:
            importlib.import_module(mod)
        except Exception as e:  # noqa: BLE001
            print(f"(preload {mod} failed: {e})", file=sys.stderr)
    _collect(pytest_args, args.log)  # warms pytest's plugins and what the tests import
    status, secs = run(name, path, source, pytest_args, args.timeout * 3, args.log, purge)
    print(f"baseline (unmutated): {status} in {secs:.1f}s", flush=True)
    if status != "survived":
        print(f"the tests fail without any mutant; see {args.log}")
        return 2
    for m, text in found:
        m.status, m.seconds = run(name, path, text, pytest_args, args.timeout, args.log, purge)
        print(f"#{m.id:3d} L{m.line:<4d} {m.kind:8s} {m.status:8s} {m.seconds:5.1f}s  {m.new.strip()[:90]}",
              flush=True)
    report(args.path, [m for m, _ in found])
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"path": args.path, "sha256": digest, "lines": args.lines, "pytest": pytest_args,
                       "mutants": [asdict(m) for m, _ in found]}, f, indent=1)
    return 0


def report(path: str, ms: list[Mutant]) -> None:
    counts = {s: sum(m.status == s for m in ms) for s in ("killed", "survived", "timeout")}
    print(f"\n{path}: {len(ms)} mutants: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    surv = [m for m in ms if m.status == "survived"]
    if surv:
        print("surviving lines: " + ",".join(str(x) for x in sorted({m.line for m in surv})))
    for m in surv:
        print(f"--- #{m.id} line {m.line} ({m.kind})")
        for d in list(difflib.unified_diff(m.old.splitlines(), m.new.splitlines(), lineterm="", n=0))[3:]:
            print("   " + d)


if __name__ == "__main__":
    sys.exit(main())
