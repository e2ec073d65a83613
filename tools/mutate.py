"""Mutation testing of course_lib: do the unit tests fail when the library has a plausible bug?

For every library module this script makes *mutants*: copies of the module with one plausible
single-line slip (an operator, a comparison's boundary, a constant off by one, a dropped statement or
keyword argument, swapped arguments, the wrong reduction, eval/train swapped, ...). Each mutant runs
the test files that belong to its module; a mutant is *killed* when a test fails (or the run times
out) and *survives* when every test still passes. The score of a module is killed / (mutants -
equivalent), where equivalent mutants (listed by hand in `tools/equivalent_mutants/<module>.toml`, each
with a reason) are slips that cannot change behaviour.

The working tree is never modified: each worker runs in a mirror of the repository (a folder of
symbolic links) whose `course_lib/` is a real copy, and the mutant is written into that copy, so an
interrupted run leaves nothing behind. Tests that start subprocesses see the mutant too.

    python tools/mutate.py                       # every module, report per module
    python tools/mutate.py masks data --jobs 2   # some modules
    python tools/mutate.py --list masks          # print the mutants without running them
    python tools/mutate.py --json out.json       # also write the full result as JSON
"""

import argparse
import ast
import copy
import json
import os
import shutil
import signal
import sys
import tempfile
import time

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIB = "course_lib"

# The test files that protect each module (run in this order; fast files first).
MODULES = {
    "masks": [
        "tests/test_masks.py",
        "tests/test_models.py",
        "tests/test_causality.py",
        "tests/test_cached_sampling.py",
    ],
    "models": [
        "tests/test_models.py",
        "tests/test_masks.py",
        "tests/test_likelihood.py",
        "tests/test_logistic.py",
        "tests/test_causality.py",
        "tests/test_cached_sampling.py",  # head_logits: the cached sampler's view of the head
    ],
    "device": ["tests/test_device.py"],
    "likelihood": ["tests/test_likelihood.py"],
    "data": ["tests/test_data.py"],
    "train": ["tests/test_training.py"],
    "checkpoint": ["tests/test_checkpoint.py", "tests/test_training.py"],
    "sampling": ["tests/test_sampling.py"],
    "cached_sampling": ["tests/test_cached_sampling.py"],
    "finetune": ["tests/test_finetune.py"],
    "distributed": ["tests/test_distributed.py"],
    "causality": ["tests/test_causality.py"],
    "logistic": ["tests/test_logistic.py", "tests/test_cached_sampling.py", "tests/test_causality.py"],
}

BINOPS = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
}
CMPOPS = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
METHODS = {
    "mean": "sum",
    "sum": "mean",
    "max": "min",
    "min": "max",
    "argmax": "argmin",
    "argmin": "argmax",
    "eval": "train",
    "floor": "ceil",
    "ceil": "floor",
    "triu": "tril",
    "tril": "triu",
    "zeros": "ones",
    "ones": "zeros",
    "sigmoid": "tanh",
    "tanh": "sigmoid",
    "relu": "elu",
    "elu": "relu",
    "softmax": "log_softmax",
    "log_softmax": "softmax",
    "bernoulli": "round",
    "randperm": "arange",
}
DROPPED_CALLS = {"clone", "detach", "contiguous", "t", "float", "double", "long"}  # x.clone() -> x
SKIPPED_FUNCTIONS = {"__repr__", "extra_repr"}


@dataclass
class Mutant:
    module: str
    index: int  # position in this module's list of mutants
    line: int  # line number in the original file
    original: str  # the statement it changes, as ast.unparse writes it (first line): formatting-proof
    mutation: str  # what changed, e.g. "`<` -> `<=`"
    status: str = ""  # killed, timeout, survived, equivalent
    seconds: float = 0.0
    reason: str = ""  # why it is equivalent


# -- making mutants ----------------------------------------------------------------------------------
class _Sites(ast.NodeVisitor):
    """Collects (node, line, mutation text, apply function) for every mutable place, in a fixed order."""

    def __init__(self):
        self.sites = []
        self.statements = []  # the statements being visited, innermost last
        self.assigned = [set()]  # names bound so far in each enclosing function

    def add(self, node, text, apply):
        statement = ast.unparse(self.statements[-1]).splitlines()[0] if self.statements else ""
        self.sites.append((node.lineno, statement, text, apply))

    def visit(self, node):
        if isinstance(node, ast.stmt):
            self.statements.append(node)
            try:
                return super().visit(node)
            finally:
                self.statements.pop()
        return super().visit(node)

    # parts that are never mutated: messages, docstrings, annotations, signatures' defaults
    def visit_Raise(self, node):
        if isinstance(node.exc, ast.Call) and node.exc.args:  # the exception type stays, the message too
            return
        self.generic_visit(node)

    def visit_Assert(self, node):
        self.visit(node.test)

    def visit_JoinedStr(self, node):
        return

    def visit_Import(self, node):
        return

    visit_ImportFrom = visit_Import

    def visit_FunctionDef(self, node):
        if node.name in SKIPPED_FUNCTIONS:
            return
        for dec in node.decorator_list:
            if ast.unparse(dec) in ("torch.no_grad()", "torch.no_grad"):
                self.add(dec, f"drop @{ast.unparse(dec)}", lambda n=node, d=dec: n.decorator_list.remove(d))
        names = {a.arg for a in node.args.args + node.args.kwonlyargs + node.args.posonlyargs}
        self.assigned.append(names)
        self._body(node.body)
        self.assigned.pop()

    def visit_ClassDef(self, node):
        self._body(node.body)

    def visit_Module(self, node):
        self._body(node.body)

    def _body(self, body):
        for i, stmt in enumerate(body):
            if i == 0 and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                continue  # docstring
            self.visit(stmt)

    def generic_visit(self, node):
        for _, value in ast.iter_fields(node):
            if isinstance(value, list):
                if value and isinstance(value[0], ast.stmt):
                    self._body_with_drops(value)
                else:
                    for item in value:
                        if isinstance(item, ast.AST):
                            self.visit(item)
            elif isinstance(value, ast.AST):
                self.visit(value)

    def _body_with_drops(self, body):
        for stmt in body:
            self._maybe_drop(stmt, body)
            self.visit(stmt)
            for target in getattr(stmt, "targets", []) + [getattr(stmt, "target", None)]:
                for name in ast.walk(target) if target is not None else ():
                    if isinstance(name, ast.Name):
                        self.assigned[-1].add(name.id)

    def _maybe_drop(self, stmt, body):
        """Dropped lines: a call statement, an augmented assignment, a store into an attribute or an
        element, or the re-assignment of a name that already has a value."""
        droppable = (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)) or isinstance(stmt, ast.AugAssign)
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            t = stmt.targets[0]
            names = [n.id for n in ast.walk(t) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)]
            droppable = isinstance(t, (ast.Attribute, ast.Subscript)) or (
                names and all(n in self.assigned[-1] for n in names)
            )
        if droppable:

            def apply(stmt=stmt, body=body):
                body[body.index(stmt)] = ast.Pass(lineno=stmt.lineno, col_offset=stmt.col_offset)

            self.add(stmt, "drop the line", apply)

    # the mutations
    def visit_AnnAssign(self, node):  # dataclass fields: their defaults are the documented settings
        if node.value is not None:
            self.visit(node.value)

    def visit_arguments(self, node):
        return  # signatures' defaults and annotations are documentation, not behaviour

    def visit_BinOp(self, node):
        new = BINOPS.get(type(node.op))
        if new:
            self.add(node, f"`{_op(node.op)}` -> `{_op(new())}`", lambda n=node, new=new: setattr(n, "op", new()))
        self.generic_visit(node)

    def visit_AugAssign(self, node):
        new = BINOPS.get(type(node.op))
        if new:
            self.add(node, f"`{_op(node.op)}=` -> `{_op(new())}=`", lambda n=node, new=new: setattr(n, "op", new()))
        self.generic_visit(node)

    def visit_Compare(self, node):
        for k, op in enumerate(node.ops):
            new = CMPOPS.get(type(op))
            if new:
                self.add(
                    node, f"`{_op(op)}` -> `{_op(new())}`", lambda n=node, k=k, new=new: n.ops.__setitem__(k, new())
                )
        self.generic_visit(node)

    def visit_BoolOp(self, node):
        new = ast.Or if isinstance(node.op, ast.And) else ast.And
        self.add(node, f"`{_op(node.op)}` -> `{_op(new())}`", lambda n=node, new=new: setattr(n, "op", new()))
        self.generic_visit(node)

    def visit_UnaryOp(self, node):
        if isinstance(node.op, (ast.Not, ast.USub)):
            text = f"drop `{_op(node.op)}`"
            self.add(node, text, lambda n=node: _replace(n, n.operand))
        self.generic_visit(node)

    def visit_If(self, node):
        self.add(node, "negate the condition", lambda n=node: setattr(n, "test", ast.UnaryOp(ast.Not(), n.test)))
        self.generic_visit(node)

    def visit_IfExp(self, node):
        self.add(node, "negate the condition", lambda n=node: setattr(n, "test", ast.UnaryOp(ast.Not(), n.test)))
        self.generic_visit(node)

    def visit_Constant(self, node):
        v = node.value
        if isinstance(v, bool):
            self.add(node, f"`{v}` -> `{not v}`", lambda n=node: setattr(n, "value", not n.value))
        elif isinstance(v, int):
            new = 1 if v == 0 else (0 if v == 1 else v + 1)
            self.add(node, f"`{v}` -> `{new}`", lambda n=node, new=new: setattr(n, "value", new))
        elif isinstance(v, float):
            new = 1.0 if v == 0 else v * 2
            self.add(node, f"`{v!r}` -> `{new!r}`", lambda n=node, new=new: setattr(n, "value", new))

    def visit_Call(self, node):
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else (f.id if isinstance(f, ast.Name) else None)
        if name in METHODS:
            new = METHODS[name]
            attr = "attr" if isinstance(f, ast.Attribute) else "id"
            self.add(node, f"`{name}` -> `{new}`", lambda f=f, attr=attr, new=new: setattr(f, attr, new))
        if isinstance(f, ast.Attribute) and name in DROPPED_CALLS and not node.args and not node.keywords:
            self.add(node, f"drop `.{name}()`", lambda n=node: _replace(n, n.func.value))
        for kw in node.keywords:
            if kw.arg is not None:
                self.add(node, f"drop `{kw.arg}=`", lambda n=node, kw=kw: n.keywords.remove(kw))
        args = node.args
        if (
            len(args) >= 2
            and not any(isinstance(a, ast.Starred) for a in args[:2])
            and ast.unparse(args[0]) != ast.unparse(args[1])
        ):
            self.add(
                node,
                "swap the first two arguments",
                lambda n=node: n.args.__setitem__(slice(0, 2), [n.args[1], n.args[0]]),
            )
        self.generic_visit(node)


def _replace(node, new):
    """Make `node` become a copy of `new` in place (keeps the parent's reference valid)."""
    new = copy.deepcopy(new)
    node.__class__ = new.__class__
    node.__dict__.clear()
    node.__dict__.update(new.__dict__)


def _op(op):
    return {
        ast.Add: "+",
        ast.Sub: "-",
        ast.Mult: "*",
        ast.Div: "/",
        ast.FloorDiv: "//",
        ast.Mod: "%",
        ast.Pow: "**",
        ast.Lt: "<",
        ast.LtE: "<=",
        ast.Gt: ">",
        ast.GtE: ">=",
        ast.Eq: "==",
        ast.NotEq: "!=",
        ast.Is: "is",
        ast.IsNot: "is not",
        ast.In: "in",
        ast.NotIn: "not in",
        ast.And: "and",
        ast.Or: "or",
        ast.Not: "not",
        ast.USub: "-",
    }[type(op)]


def _sites(tree):
    visitor = _Sites()
    visitor.visit(tree)
    return visitor.sites


def mutants(module):
    """All mutants of course_lib/<module>.py: a list of (Mutant, mutated source)."""
    path = ROOT / LIB / f"{module}.py"
    source = path.read_text()
    reference = ast.unparse(ast.parse(source))
    out, seen, count = [], set(), {}
    for k in range(len(_sites(ast.parse(source)))):
        tree = ast.parse(source)
        line, statement, text, apply = _sites(tree)[k]
        apply()
        try:
            mutated = ast.unparse(ast.fix_missing_locations(tree))
            compile(mutated, str(path), "exec")
        except (SyntaxError, ValueError, TypeError):
            continue
        if mutated == reference or mutated in seen:
            continue
        seen.add(mutated)
        n = count[(statement, text)] = count.get((statement, text), 0) + 1
        out.append((Mutant(module, len(out), line, statement, text if n == 1 else f"{text} #{n}"), mutated))
    return out


def load_equivalents():
    """{(module, original line, mutation): reason} from tools/equivalent_mutants/<module>.toml."""
    found = {}
    for path in sorted((ROOT / "tools" / "equivalent_mutants").glob("*.toml")):
        for e in tomllib.loads(path.read_text()).get("equivalent", []):
            found[(path.stem, e["line"], e["mutation"])] = e["reason"]
    return found


# -- running them --------------------------------------------------------------------------------------
def make_mirror(base):
    """A folder of symbolic links to every top-level entry of the repository, except a real copy of
    course_lib (where mutants are written). Returns its path."""
    mirror = Path(tempfile.mkdtemp(prefix="mutant-", dir=base))
    for entry in ROOT.iterdir():
        if entry.name in (LIB, ".git"):
            continue
        (mirror / entry.name).symlink_to(entry)
    shutil.copytree(ROOT / LIB, mirror / LIB, ignore=shutil.ignore_patterns("__pycache__"))
    return mirror


PRELOAD = (
    "torch._dynamo",
    "torch.optim",
    "nbformat",
    "torch",
    "torch.nn.functional",
    "torchvision",
    "numpy",
    "pytest",
    "matplotlib.pyplot",
    "sklearn.datasets",
    "mlxtend.data",
    "tqdm.auto",
    "PIL.Image",
)


def preload():
    """Import the heavy third-party packages once; every test run is a fork of this process (never of
    course_lib, which each fork imports fresh from its mirror)."""
    os.environ.update(
        TQDM_DISABLE="1", MPLBACKEND="Agg", OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", PYTHONDONTWRITEBYTECODE="1"
    )
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    assert LIB not in sys.modules, "course_lib must not be imported before forking"


def start_tests(mirror, tests, log):
    """Fork a process that runs pytest on `tests` (files or test ids) inside `mirror`, its output into `log`;
    returns its pid (exit code 0 = every test passed)."""
    pid = os.fork()
    if pid:
        return pid
    try:  # the child: its own process group (so a timeout kills its subprocesses), in the mirror
        os.setsid()
        os.chdir(mirror)
        os.environ["PYTHONPATH"] = str(mirror)
        sys.path.insert(0, str(mirror))
        sys.dont_write_bytecode = True
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(out, 1)
        os.dup2(out, 2)
        import pytest
        import torch

        torch.set_num_threads(1)
        args = ["-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "--no-header", "-W", "ignore", "-rf"]
        os._exit(int(pytest.main(args + list(tests))))
    except BaseException:
        os._exit(99)


def failed_test(log):
    """The id of the test that failed, from pytest's summary line "FAILED <id> - ...", or None."""
    try:
        text = Path(log).read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("FAILED "):
            return line[len("FAILED ") :].split(" - ")[0].strip()
    return None


def run_module(module, jobs, base, equivalents, progress=True):
    """Mutate one module and run its tests against every mutant. Returns (results, baseline seconds).

    Each mutant first runs the few tests that killed recent mutants (a bug near the last one is usually
    caught by the same test); only when they all pass do the module's whole test files run."""
    files = [f for f in MODULES[module] if (ROOT / f).exists()]
    mirrors = [make_mirror(base) for _ in range(jobs)]
    original = (ROOT / LIB / f"{module}.py").read_text()
    todo = []
    lines = original.splitlines()
    for m, source in mutants(module):
        for text in (m.original, lines[m.line - 1].strip()):  # the statement, or the raw source line
            if (module, text, m.mutation) in equivalents:
                m.status, m.reason = "equivalent", equivalents[(module, text, m.mutation)]
        todo.append((m, source))
    queue = [(None, original, files)] + [(m, s, None) for m, s in todo if not m.status]
    running, free, timeout, baseline, killers = {}, list(mirrors), 1200.0, None, []
    while queue or running:
        while queue and len(running) < jobs and (baseline is not None or not running):
            m, source, tests = queue.pop(0)
            first_pass = tests is None
            if first_pass:
                tests = list(killers) or files
            mirror = free.pop()
            (mirror / LIB / f"{module}.py").write_text(source)
            log = mirror / "pytest.log"
            pid = start_tests(mirror, tests, log)
            running[pid] = (m, source, first_pass and tests is not files, time.perf_counter(), mirror, log)
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            now = time.perf_counter()
            for p, (_, _, _, t0, _, _) in list(running.items()):
                if now - t0 > timeout:
                    os.killpg(p, signal.SIGKILL)
            time.sleep(0.05)
            continue
        m, source, partial, t0, mirror, log = running.pop(pid)
        seconds = time.perf_counter() - t0
        (mirror / LIB / f"{module}.py").write_text(original)
        free.append(mirror)
        killed_by_timeout = os.WIFSIGNALED(status)
        passed = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        if m is None:  # the unmutated library: its tests must pass, and set the time limit
            if not passed:
                raise SystemExit(
                    f"The tests of {module} ({' '.join(files)}) fail on the unmutated library; fix them first."
                )
            baseline, timeout = seconds, max(30.0, 4 * seconds)
            continue
        m.seconds += seconds
        if passed and partial:  # the recent killers pass: run everything
            queue.insert(0, (m, source, files))
            continue
        killer = None if passed or killed_by_timeout else failed_test(log)
        if killer:
            killers = [killer] + [k for k in killers if k != killer][:7]
        m.status = "timeout" if killed_by_timeout else ("survived" if passed else "killed")
        if progress:
            print(f"  {module}:{m.line} {m.mutation:<32} {m.status} ({m.seconds:.0f} s)", file=sys.stderr, flush=True)
    for mirror in mirrors:
        shutil.rmtree(mirror, ignore_errors=True)
    return [m for m, _ in todo], baseline


def score(results):
    counted = [m for m in results if m.status != "equivalent"]
    killed = sum(m.status in ("killed", "timeout") for m in counted)
    return killed, len(counted)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"modules to mutate (default: all of {', '.join(MODULES)})")
    parser.add_argument("--jobs", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    parser.add_argument("--list", action="store_true", help="print the mutants and stop")
    parser.add_argument("--json", help="write every mutant's result to this file")
    parser.add_argument("--quiet", action="store_true", help="no line per mutant while running")
    args = parser.parse_args(argv)
    unknown = set(args.modules) - set(MODULES)
    if unknown:
        parser.error(f"unknown module(s) {', '.join(sorted(unknown))}; choose from {', '.join(MODULES)}")
    modules = args.modules or list(MODULES)
    if args.list:
        for module in modules:
            for m, _ in mutants(module):
                print(f"{module}:{m.line}: {m.mutation:<32} {m.original}")
        return 0
    equivalents = load_equivalents()
    preload()
    rows, everything = [], []
    with tempfile.TemporaryDirectory(prefix="course-mutation-") as base:
        for module in modules:
            start = time.perf_counter()
            results, baseline = run_module(module, args.jobs, base, equivalents, progress=not args.quiet)
            killed, counted = score(results)
            n_eq = sum(m.status == "equivalent" for m in results)
            rows.append((module, len(results), n_eq, killed, counted, time.perf_counter() - start))
            everything += results
            for m in results:
                if m.status == "survived":
                    print(f"survived  {module}:{m.line}  {m.mutation:<30} {m.original}")
    print()
    print(f"{'module':<16} {'mutants':>7} {'equiv.':>6} {'killed':>7} {'timeout':>7} {'score':>7} {'minutes':>7}")
    for module, n, n_eq, killed, counted, seconds in rows:
        pct = 100 * killed / counted if counted else 100.0
        timeouts = sum(m.status == "timeout" for m in everything if m.module == module)
        print(f"{module:<16} {n:>7} {n_eq:>6} {killed:>7} {timeouts:>7} {pct:>6.1f}% {seconds / 60:>7.1f}")
    total_k = sum(r[3] for r in rows)
    total_c = sum(r[4] for r in rows)
    print(
        f"{'all':<16} {sum(r[1] for r in rows):>7} {sum(r[2] for r in rows):>6} {total_k:>7} "
        f"{sum(m.status == 'timeout' for m in everything):>7} {100 * total_k / max(1, total_c):>6.1f}%"
    )
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(m) for m in everything], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
