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

    python -m tools.mutate                       # every module, report per module
    python -m tools.mutate masks data --jobs 2   # some modules
    python -m tools.mutate --list masks          # print the mutants without running them
    python -m tools.mutate --json out.json       # also write the full result as JSON
"""

import argparse
import ast
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

from tools import mutation  # the engine shared with tools/mutate_solutions.py

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
        "tests/test_cached_sampling.py",
    ],
    "heads": [
        "tests/test_heads.py",
        "tests/test_sampling.py",  # probabilities, draw, distribution_at: one sub-pixel's draw
        "tests/test_models.py",
        "tests/test_logistic.py",
        "tests/test_cached_sampling.py",  # channel_logits: the cached sampler's view of the head
    ],
    "device": ["tests/test_device.py", "tests/test_sampling.py"],  # the cached sampler's thread policy
    "likelihood": ["tests/test_likelihood.py"],
    "data": ["tests/test_data.py", "tests/test_natural_images.py"],
    "train": ["tests/test_training.py"],
    "checkpoint": ["tests/test_checkpoint.py", "tests/test_training.py"],
    "sampling": ["tests/test_sampling.py"],
    "cached_sampling": ["tests/test_cached_sampling.py"],
    "finetune": ["tests/test_finetune.py"],
    "distributed": ["tests/test_distributed.py"],
    "causality": ["tests/test_causality.py"],
    "logistic": ["tests/test_logistic.py", "tests/test_cached_sampling.py", "tests/test_causality.py"],
    "made": ["tests/test_made.py"],
    "attention": ["tests/test_attention.py"],
}

METHODS = {**mutation.METHODS, "relu": "elu", "elu": "relu"}
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
class Site(NamedTuple):
    line: int  # where the changed node starts
    statement: str  # the first line of the statement being visited, as ast.unparse writes it
    mutation: str
    apply: Callable[[], None]


class _Sites(mutation.SiteVisitor):
    """Collects a Site for every mutable place of a library module, in a fixed order. The statements right
    inside a def, class or module are neither dropped nor bound: only those of nested blocks are."""

    methods = METHODS
    drops_in_definitions = False

    def add(self, node, text, apply, render="statement", statement=None):
        # a mutant is named by the statement being visited (for a dropped line: the one around it), as the
        # lists of equivalent mutants name it; `render` and `statement` serve mutate_solutions
        statement = ast.unparse(self.statements[-1]).splitlines()[0] if self.statements else ""
        self.sites.append(Site(node.lineno, statement, text, apply))

    def visit_FunctionDef(self, node):
        if node.name in SKIPPED_FUNCTIONS:
            return
        for dec in node.decorator_list:
            if ast.unparse(dec) in ("torch.no_grad()", "torch.no_grad"):
                self.add(dec, f"drop @{ast.unparse(dec)}", lambda n=node, d=dec: n.decorator_list.remove(d))
        super().visit_FunctionDef(node)

    def visit_AnnAssign(self, node):  # dataclass fields: their defaults are the documented settings
        if node.value is not None:
            self.visit(node.value)


def mutants(module):
    """All mutants of course_lib/<module>.py: a list of (Mutant, mutated source)."""
    path = ROOT / LIB / f"{module}.py"
    source = path.read_text()
    reference = ast.unparse(ast.parse(source))
    out, distinct = [], mutation.Distinct()
    for tree, site in mutation.applied(source, _Sites.collect):
        try:
            mutated = ast.unparse(ast.fix_missing_locations(tree))
            compile(mutated, str(path), "exec")
        except (SyntaxError, ValueError, TypeError):
            continue
        if mutated == reference or not distinct.first(mutated):
            continue
        text = distinct.describe(site.statement, site.mutation)
        out.append((Mutant(module, len(out), site.line, site.statement, text), mutated))
    return out


def load_equivalents():
    """{(module, original line, mutation): reason} from tools/equivalent_mutants/<module>.toml."""
    paths = sorted((ROOT / "tools" / "equivalent_mutants").glob("*.toml"))
    return mutation.load_equivalents(paths, lambda path, entry: path.stem)


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
    mutation.preload(PRELOAD)
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
        sys.dont_write_bytecode = True
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(out, 1)
        os.dup2(out, 2)
        import pytest
        import torch

        torch.set_num_threads(1)
        args = ["-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "--no-header", "-W", "ignore", "-rf"]
        args += ["-o", f"pythonpath={shlex.quote(str(mirror))}"]  # first on the path: the mirror's course_lib
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
        pid, status = mutation.wait_child({p: r[3] + timeout for p, r in running.items()}, pause=0.05)
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
