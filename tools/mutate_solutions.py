"""Mutation testing of the graded checks: do the checks of the exercises catch a learner's plausible mistake?

For every task of every solved notebook in `solutions/` (a cell with nbgrader ``"solution": true`` whose
``<grade_id>_check`` cell calls a check), this script makes *mutants* of the reference solution: copies of
the cell with one plausible single-line mistake inside ``### BEGIN SOLUTION`` ... ``### END SOLUTION``
(an operator, a comparison's boundary, a constant off by one, a dropped statement or keyword argument,
swapped arguments, the wrong reduction or dimension, eval/train swapped, a dropped ``.clone()``,
``.detach()``, ``.to(device)`` or ``with torch.no_grad()``, a buffer kept as a plain attribute, ``weight``
read as ``weight.data``, ...), plus the plausible mistakes of the catalogue,
`mistakes/lessonNN.toml` (tools/mistakes.py), each of which must also be caught with its own message.

Each mutant runs the way a learner's notebook runs it: the lesson's setup cell, the reference solutions
of the earlier tasks, the mutated cell, then the task's check cell, in a forked process of its own (so a
mutant that hangs or corrupts global state cannot affect another one). A mutant is *caught* when the check
fails with a ``✗`` verdict (its message is recorded, so a human can judge that it names the bug), when the
mutated code raises outside the check's verdicts (*crashed*), or when it runs past the time limit
(*timeout*); it *survives* when the check passes. Mutants that cannot change behaviour are listed by
hand, each with a reason, in `mistakes/equivalent.toml` and left out of the score:
score = caught / (mutants - equivalent).

    python -m tools.mutate_solutions                          # every lesson, report per lesson
    python -m tools.mutate_solutions --lessons 01 02 --jobs 2
    python -m tools.mutate_solutions --tasks t03_train_step   # some tasks
    python -m tools.mutate_solutions --list --lessons 02      # print the mutants without running them
    python -m tools.mutate_solutions --repeat 20              # also run each reference 20 times: no false failure
    python -m tools.mutate_solutions --sample 5 --seed 0 --fail-under 90   # a quick deterministic subset
    python -m tools.mutate_solutions --json out.json          # every mutant's result as JSON
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import coursework.tasks  # the one reader of the solved notebooks
from tools import mistakes, mutation  # the catalogue; the engine shared with tools/mutate.py

ROOT = Path(__file__).resolve().parent.parent

SOLUTIONS = ROOT / "solutions"
DATA = mistakes.CATALOGUE

# statuses of a mutant; the first three are "caught"
CAUGHT = ("check", "crashed", "timeout")


# -- reading the solved notebooks (coursework.tasks) --------------------------------------------------
def lessons():
    """{"01": "01_self_supervised_likelihood", ...} for every solved notebook."""
    return {p.stem[:2]: p.stem for p in coursework.tasks.solution_notebooks(SOLUTIONS)}


def read_tasks(notebook):
    """The graded tasks of solutions/<notebook>.py that have a check cell and a solution block, in notebook
    order: coursework.tasks.Task (lesson, grade_id, source, first_line, blocks, check, setup, earlier)."""
    tasks = coursework.tasks.read_tasks(SOLUTIONS / f"{notebook}.py")
    return [task for task in tasks if task.check is not None and task.blocks]


# -- making mutants --------------------------------------------------------------------------------------
METHODS = {  # a call of the first name becomes a call of the second
    **mutation.METHODS,
    "any": "all",
    "all": "any",
    "zeros_like": "ones_like",
    "ones_like": "zeros_like",
    "log": "log2",
    "log2": "log",
    "log10": "log",
    "stack": "cat",
    "cat": "stack",
    "rand": "randn",
    "randn": "rand",
}
DROPPED_CALLS = mutation.DROPPED_CALLS | {"bool", "cpu", "item"}  # x.clone() -> x (without arguments)
DROPPED_CALLS_WITH_ARGS = {"to", "expand_as", "expand"}  # x.to(device) -> x
DIMENSION_METHODS = {  # x.sum(1) -> x.sum(): the dimension forgotten
    "sum",
    "mean",
    "flatten",
    "softmax",
    "log_softmax",
    "logsumexp",
    "any",
    "all",
    "max",
    "min",
    "argmax",
    "argmin",
    "prod",
    "std",
    "var",
}
DATA_ATTRIBUTES = {"weight", "bias"}  # self.weight -> self.weight.data: the gradient never reaches the parameter


def _plus(expr, k):
    """`expr + k` (k = 1) or `expr - 1` (k = -1) as a new node."""
    return ast.BinOp(copy.deepcopy(expr), ast.Add() if k > 0 else ast.Sub(), ast.Constant(1))


@dataclass
class Site:
    statement: ast.stmt  # the statement whose line changes
    mutation: str  # what changes, e.g. "`<` -> `<=`"
    apply: object  # callable: makes the change in the tree
    render: str = "statement"  # how the changed line is written: statement, header, pass, if_true
    first: int = 0  # the source lines it replaces (in the cell, 1-based), taken before the change
    last: int = 0


class _Sites(mutation.SiteVisitor):
    """Collects every mutable place inside the solution blocks, in a fixed order."""

    methods = METHODS
    dropped_calls = DROPPED_CALLS
    dropped_calls_with_args = DROPPED_CALLS_WITH_ARGS
    droppable = (ast.AugAssign, ast.Continue, ast.Break)

    def __init__(self, blocks):
        super().__init__()
        self.blocks = blocks

    def inside(self, statement):
        return any(first <= statement.lineno and statement.end_lineno <= last for first, last in self.blocks)

    def add(self, node, text, apply, render="statement", statement=None):
        statement = statement or (self.statements[-1] if self.statements else None)
        if statement is None or not self.inside(statement):
            return
        if render == "statement" and _is_compound(statement):
            render = "header"
        last = _header_end(statement) if render in ("header", "if_true") else statement.end_lineno
        self.sites.append(Site(statement, text, apply, render, statement.lineno, last))

    # the mutations besides the shared ones
    def visit_With(self, node):
        if _plain_with(node):
            text = f"drop `with {ast.unparse(node.items[0].context_expr)}`"
            self.add(node, text, lambda: None, render="if_true")
        self.generic_visit(node)

    def visit_Expr(self, node):
        call = node.value
        if (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and call.func.attr == "register_buffer"
            and len(call.args) == 2
            and isinstance(call.args[0], ast.Constant)
            and isinstance(call.args[0].value, str)
        ):
            owner, name, value = call.func.value, call.args[0].value, call.args[1]

            def apply(node=node, owner=owner, name=name, value=value):
                mutation.replace(
                    node,
                    ast.Assign(
                        targets=[ast.Attribute(copy.deepcopy(owner), name, ast.Store())],
                        value=copy.deepcopy(value),
                        lineno=node.lineno,
                    ),
                )

            self.add(node, f"register_buffer -> a plain attribute `{name}`", apply)
        self.generic_visit(node)

    def visit_Attribute(self, node):
        if node.attr in DATA_ATTRIBUTES and isinstance(node.ctx, ast.Load):
            self.add(
                node,
                f"`.{node.attr}` -> `.{node.attr}.data`",
                lambda n=node: mutation.replace(n, ast.Attribute(copy.deepcopy(n), "data", ast.Load())),
            )
        self.generic_visit(node)

    def visit_Slice(self, node):
        for part in ("lower", "upper"):
            bound = getattr(node, part)
            if isinstance(bound, (ast.Name, ast.Attribute)):
                text = ast.unparse(bound)
                for k in (1, -1):
                    self.add(
                        node,
                        f"slice bound `{text}` -> `{text} {'+' if k > 0 else '-'} 1`",
                        lambda n=node, part=part, k=k: setattr(n, part, _plus(getattr(n, part), k)),
                    )
        self.generic_visit(node)

    def visit_Constant(self, node):
        super().visit_Constant(node)
        v = node.value
        if isinstance(v, str) and len(v) == 1 and v.isalpha() and v.isupper():
            # a one-letter choice like mask_type == "A": the other letter
            new = "B" if v == "A" else ("A" if v == "B" else None)
            if new:
                self.add(node, f"`{v!r}` -> `{new!r}`", lambda n=node, new=new: setattr(n, "value", new))

    def call_sites(self, node, name):
        f = node.func
        self.renamed_call(node, name)
        if name == "train" and isinstance(f, ast.Attribute):
            if not node.args and not node.keywords:
                self.add(node, "`train` -> `eval`", lambda f=f: setattr(f, "attr", "eval"))
            else:
                self.add(node, "drop the argument of `train`", lambda n=node: (n.args.clear(), n.keywords.clear()))
        self.dropped_call(node, name)
        if isinstance(f, ast.Attribute) and name in DIMENSION_METHODS and node.args and _dimension_like(node.args[0]):
            self.add(node, f"drop the dimension of `.{name}()`", lambda n=node: n.args.clear())
        if name == "range" and len(node.args) == 1 and not node.keywords:
            self.add(node, "`range(n)` -> `range(n - 1)`", lambda n=node: n.args.__setitem__(0, _plus(n.args[0], -1)))
            self.add(node, "`range(n)` -> `range(1, n)`", lambda n=node: n.args.insert(0, ast.Constant(1)))
        self.dropped_keywords(node)
        self.swapped_arguments(node)


def _dimension_like(arg):
    if isinstance(arg, ast.Constant):
        return isinstance(arg.value, int) and not isinstance(arg.value, bool)
    if isinstance(arg, ast.UnaryOp) and isinstance(arg.op, ast.USub):
        return _dimension_like(arg.operand)
    if isinstance(arg, ast.Tuple):
        return all(_dimension_like(e) for e in arg.elts)
    return False


def _plain_with(node):
    """The context expression of `with X:` (one item, no `as`), else None."""
    if len(node.items) == 1 and node.items[0].optional_vars is None:
        return node.items[0].context_expr
    return None


def _is_compound(statement):
    return isinstance(statement, (ast.If, ast.For, ast.While, ast.With, ast.Try, ast.FunctionDef, ast.ClassDef))


def _header_end(statement):
    """The last line of a compound statement's header (`if ...:`, `for ... in ...:`, `with ...:`)."""
    end = statement.lineno
    for name, value in ast.iter_fields(statement):
        if name in ("body", "orelse", "handlers", "finalbody", "decorator_list"):
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, ast.AST):
                for node in ast.walk(item):
                    end = max(end, getattr(node, "end_lineno", None) or end)
    return end


def _render(site, lines):
    """(first line, last line, new text) of the source lines a site replaces (1-based, in the cell)."""
    s, first, last = site.statement, site.first, site.last
    original = lines[first - 1]
    indent = original[: len(original) - len(original.lstrip())]
    if site.render == "pass":
        return first, last, indent + "pass"
    if site.render == "if_true":
        return first, last, indent + "if True:"
    if site.render == "header":
        header = ast.unparse(s).splitlines()[0]
        if original.lstrip().startswith("elif ") and header.startswith("if "):
            header = "el" + header
        return first, last, indent + header
    return first, last, indent + ast.unparse(s)


@dataclass
class Mutant:
    lesson: str
    task: str
    index: int  # position in the task's list of mutants
    line: int  # line number in solutions/<notebook>.py
    original: str  # the original source line, stripped
    mutated: str  # the line that replaces it, stripped
    mutation: str  # what changed, e.g. "`<` -> `<=`", or the catalogue's `why`
    origin: str = "generated"  # generated or catalogue
    says: tuple = ()  # a catalogue mistake: the fragments its verdict must contain
    status: str = ""  # equivalent, check, crashed, timeout, survived (or skipped)
    message: str = ""  # the ✗ verdict, the exception, or the equivalence reason
    seconds: float = 0.0
    source: str = field(default="", repr=False)  # the mutated cell

    @property
    def key(self):
        return (self.task, self.original, self.mutation)


def generated_mutants(task):
    """The mutants made with `ast` from the solution blocks of `task`: a list of Mutant."""
    lines = task.source.split("\n")
    reference = ast.dump(ast.parse(task.source))
    out, distinct = [], mutation.Distinct()
    for _, site in mutation.applied(task.source, lambda tree: _Sites.collect(tree, task.blocks)):
        try:
            first, last, text = _render(site, lines)
        except Exception:  # a mutation ast.unparse cannot write is no mutant
            continue
        new_lines = lines[: first - 1] + [text] + lines[last:]
        source = "\n".join(new_lines)
        try:
            if ast.dump(ast.parse(source)) == reference:
                continue
            compile(source, "<mutant>", "exec")
        except (SyntaxError, ValueError):
            continue
        if not distinct.first(source):
            continue
        original = lines[first - 1].strip()
        out.append(
            Mutant(
                task.lesson,
                task.grade_id,
                len(out),
                task.first_line + first - 1,
                original,
                text.strip(),
                distinct.describe(original, site.mutation),
                source=source,
            )
        )
    return out


def load_catalogue(lesson):
    """The catalogue's mistakes of lesson `lesson` (mistakes/lesson<NN>.toml): a list of tools.mistakes.Mistake."""
    return [m for m in mistakes.read_catalogue(DATA) if m.lesson == lesson]


def catalogue_mutants(task, entries):
    """The catalogue's mistakes of `task`, planted (each `old` inside a solution block); the mutant's line is
    the first one that changed."""
    out = []
    lines = task.source.split("\n")
    for entry in entries:
        if entry.task != task.grade_id:
            continue
        source = mistakes.plant(task, entry)
        changed = source.split("\n")
        n = next(k for k in range(len(lines)) if k >= len(changed) or lines[k] != changed[k]) + 1
        compile(source, f"<catalogue {task.grade_id}>", "exec")
        out.append(
            Mutant(
                task.lesson,
                task.grade_id,
                len(out),
                task.first_line + n - 1,
                lines[n - 1].strip(),
                changed[n - 1].strip() if n <= len(changed) else "",
                entry.why,
                origin="catalogue",
                says=entry.says,
                source=source,
            )
        )
    return out


def _in_blocks(n, blocks):
    return any(first <= n <= last for first, last in blocks)


def mutants_of(task, catalogue=None, generate=True):
    """Every mutant of a task: the generated ones (unless `generate` is false), then the catalogue's
    (`catalogue`: a list of tools.mistakes.Mistake, default: mistakes/lesson<NN>.toml)."""
    generated = generated_mutants(task) if generate else []
    entries = load_catalogue(task.lesson) if catalogue is None else catalogue
    sources = {m.source: m for m in generated}
    extra = []
    for m in catalogue_mutants(task, entries):
        if m.source in sources:  # made already: not made twice, but its message is checked
            sources[m.source].says = m.says
        else:
            extra.append(m)
    for k, m in enumerate(extra):
        m.index = len(generated) + k
    return generated + extra


def load_equivalents(path=None):
    """{(task, original line, mutation): reason} from mistakes/equivalent.toml."""
    return mutation.load_equivalents([path or DATA / "equivalent.toml"], lambda path, entry: entry["task"])


# -- running them --------------------------------------------------------------------------------------
PRELOAD = ("torch", "torch.nn.functional", "torch.optim", "torchvision", "numpy", "matplotlib.pyplot", "tqdm.auto")


def preload():
    """Quiet, single-threaded, fast mode; import the heavy packages once: every mutant runs in a fork."""
    mutation.preload(PRELOAD + ("course_lib", "coursework", "coursework.checks"), COURSE_FAST="1")
    import torch

    torch.set_num_threads(1)


def _register(source, filename):
    """Make tracebacks (and the checks' "at `line`" notes) show the cell's lines, as a notebook does."""
    import linecache

    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    return compile(source, filename, "exec")


def _describe(error):
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _run_job(job, namespace, result_path):
    """In a forked child: the earlier tasks, the (mutated) cell, then the check cell; the verdict as JSON."""
    import torch

    from coursework.checks import CheckFailed

    if job["reseed"]:
        torch.manual_seed(int.from_bytes(os.urandom(4), "little"))
    result = {"status": "survived", "message": ""}
    try:
        for grade_id, source in job["earlier"]:
            exec(_register(source, f"<{job['lesson']} {grade_id}>"), namespace)
    except BaseException as error:  # the reference itself fails: reported as an error
        result = {"status": "error", "message": f"an earlier reference solution raised {_describe(error)}"}
    else:
        try:
            exec(_register(job["source"], f"<{job['lesson']} {job['task']}>"), namespace)
        except BaseException as error:
            result = {"status": "crashed", "message": f"the cell raised {_describe(error)}"}
        else:
            try:
                exec(_register(job["check"], f"<{job['lesson']} {job['task']}_check>"), namespace)
            except CheckFailed as error:
                result = {"status": "check", "message": str(error)}
            except BaseException as error:  # not a verdict: the learner's code escaped `call`
                result = {"status": "crashed", "message": f"the check cell raised {_describe(error)}"}
    Path(result_path).write_text(json.dumps(result))


def _fork_job(job, namespace, workdir):
    result_path = Path(workdir) / f"{job['id']}.json"
    log = Path(workdir) / f"{job['id']}.log"
    pid = os.fork()
    if pid:
        return pid, result_path
    code = 0
    try:  # the child: its own process group (a timeout kills whatever it started), its output in a log
        os.setsid()
        os.chdir(job["cwd"])
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(out, 1)
        os.dup2(out, 2)
        _run_job(job, namespace, result_path)
    except BaseException:
        code = 99
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _lesson_setup(setup):
    """Run the setup cell once (quietly); every job of the lesson forks from here."""
    namespace = {"__name__": "__main__"}
    saved = os.dup(1), os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    try:
        exec(_register(setup, "<setup>"), namespace)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)
    return namespace


def run_jobs(jobs, setup, n_workers, timeout_for, progress=None):
    """Run `jobs` (dicts) with `n_workers` forked children at a time after running `setup`; returns
    {job id: {"status", "message", "seconds"}}. Runs in a process of its own (see `run_lesson`)."""
    namespace = _lesson_setup(setup)
    import torch

    torch.set_num_threads(1)
    results = {}
    with tempfile.TemporaryDirectory(prefix="solution-mutants-") as workdir:
        queue, running = list(jobs), {}
        while queue or running:
            while queue and len(running) < n_workers:
                job = queue[0]
                limit = timeout_for(job, results)
                if limit is None:  # waits for a result (the baseline of its task) still running
                    break
                queue.pop(0)
                job["cwd"] = workdir
                pid, path = _fork_job(job, namespace, workdir)
                running[pid] = (job, path, time.perf_counter(), limit)
            pid, status = mutation.wait_child({p: r[2] + r[3] for p, r in running.items()}, pause=0.02)
            if pid not in running:
                continue
            job, path, t0, limit = running.pop(pid)
            seconds = time.perf_counter() - t0
            try:
                result = json.loads(path.read_text())
            except (OSError, ValueError):
                if os.WIFSIGNALED(status) and seconds > limit:
                    result = {"status": "timeout", "message": f"ran past the time limit of {limit:.0f} s"}
                else:
                    code = os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
                    result = {"status": "crashed", "message": f"the process died (code {code}) before a verdict"}
            result["seconds"] = seconds
            results[job["id"]] = result
            if progress:
                progress(job, result)
    return results


def run_lesson(jobs, setup, n_workers, timeout_for, progress=None):
    """Fork a process for the lesson (its setup cell changes global state), run the jobs there, return
    the results."""
    with tempfile.NamedTemporaryFile(prefix="solution-mutants-", suffix=".json", delete=False) as f:
        out = Path(f.name)
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            out.write_text(json.dumps(run_jobs(jobs, setup, n_workers, timeout_for, progress)))
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    try:
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            return json.loads(out.read_text())
        raise SystemExit(f"the run of lesson {jobs[0]['lesson'] if jobs else '?'} failed (see the error above)")
    finally:
        out.unlink(missing_ok=True)


# -- the report ----------------------------------------------------------------------------------------
@dataclass
class LessonReport:
    lesson: str
    total: int = 0
    equivalent: int = 0
    check: int = 0
    crashed: int = 0
    timeout: int = 0
    survived: int = 0
    skipped: int = 0
    repeats: int = 0
    wrong_message: list = field(default_factory=list)  # catalogue mistakes caught without their message
    false_failures: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def caught(self):
        return self.check + self.crashed + self.timeout

    @property
    def counted(self):
        return self.caught + self.survived

    @property
    def score(self):
        return 100.0 * self.caught / self.counted if self.counted else 100.0


def _short(text, width=150):
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def select_tasks(lesson_keys=None, task_ids=None):
    """{lesson: [Task]} for the selected lessons and tasks."""
    available = lessons()
    keys = lesson_keys or list(available)
    unknown = [k for k in keys if k not in available]
    if unknown:
        raise SystemExit(f"unknown lesson(s) {', '.join(unknown)}; choose from {', '.join(available)}")
    selected = {}
    for key in keys:
        tasks = [t for t in read_tasks(available[key]) if not task_ids or t.grade_id in task_ids]
        if tasks:
            selected[key] = tasks
    if task_ids:
        found = {t.grade_id for ts in selected.values() for t in ts}
        missing = sorted(set(task_ids) - found)
        if missing:
            raise SystemExit(f"unknown task(s) {', '.join(missing)} in the selected lessons")
    return selected


def mark_equivalents(mutants, equivalents):
    for m in mutants:
        reason = equivalents.get(m.key)
        if reason:
            m.status, m.message = "equivalent", reason


def sample(mutants, n, seed, lesson):
    """A deterministic subset of `n` of the lesson's non-equivalent mutants (all, if fewer)."""
    candidates = [m for m in mutants if m.status != "equivalent"]
    if n is None or n >= len(candidates):
        return mutants
    chosen = random.Random(f"{seed}:{lesson}").sample(range(len(candidates)), n)
    keep = {id(candidates[i]) for i in chosen}
    return [m for m in mutants if id(m) in keep]


def evaluate(
    selected,
    *,
    jobs=1,
    repeat=0,
    sample_n=None,
    seed=0,
    timeout=None,
    equivalents=None,
    catalogue=None,
    generate=True,
    progress=True,
    run_mutants=True,
):
    """Make, run and score the mutants of the selected tasks. Returns (reports, mutants)."""
    equivalents = load_equivalents() if equivalents is None else equivalents
    reports, everything = [], []
    for lesson, tasks in selected.items():
        start = time.perf_counter()
        mutants = []
        for task in tasks:
            mutants += mutants_of(task, catalogue, generate)
        mark_equivalents(mutants, equivalents)
        mutants = sample(mutants, sample_n, seed, lesson)
        by_task = {t.grade_id: t for t in tasks}
        job_list, owner = [], {}
        sampled = {m.task for m in mutants}
        for task in tasks:  # the unmutated references first: they must pass, and they set the time limits
            if repeat or sample_n is None or task.grade_id in sampled:
                job_list.append(_job(task, task.source, f"base-{task.grade_id}", reseed=False))
        if run_mutants:
            for m in mutants:
                if m.status != "equivalent":
                    jid = f"m-{m.task}-{m.index}"
                    owner[jid] = m
                    job_list.append(_job(by_task[m.task], m.source, jid, reseed=False))
        for k in range(repeat):
            for task in tasks:
                job_list.append(_job(task, task.source, f"rep{k}-{task.grade_id}", reseed=True))

        def timeout_for(job, results, tasks=tasks):
            if job["id"].startswith("base-"):
                return 600.0
            base = results.get(f"base-{job['task']}")
            if base is None:
                return None
            return timeout or max(60.0, 10 * base["seconds"])

        def show(job, result, owner=owner):
            if not progress:
                return
            m = owner.get(job["id"])
            if m is None:
                if result["status"] != "survived":
                    print(f"  FALSE FAILURE {job['id']}: {_short(result['message'])}", file=sys.stderr, flush=True)
                return
            print(
                f"  {m.task}:{m.line} {_short(m.mutation, 40):<40} {result['status']:<8} {_short(result['message'], 90)}",
                file=sys.stderr,
                flush=True,
            )

        results = run_lesson(job_list, tasks[0].setup, jobs, timeout_for, show)
        report = LessonReport(lesson)
        for jid, m in owner.items():
            r = results.get(jid, {"status": "crashed", "message": "no result", "seconds": 0.0})
            m.status, m.message, m.seconds = r["status"], r["message"], r["seconds"]
            if m.status == "error":  # an earlier reference failed: not the mutant's doing
                m.status = "crashed"
            if (
                m.says
                and m.status != "equivalent"
                and not (m.status == "check" and mistakes.says_all(m.message, m.says))
            ):
                report.wrong_message.append(f"{m.task} {m.mutation}: {m.status} {_short(m.message, 160)}")
        for jid, r in results.items():
            if (jid.startswith("base-") or jid.startswith("rep")) and r["status"] != "survived":
                report.false_failures.append(
                    {"run": jid, "task": jid.split("-", 1)[1], "status": r["status"], "message": r["message"]}
                )
        report.repeats = repeat
        report.total = len(mutants)
        for m in mutants:
            if m.status in ("equivalent", "check", "crashed", "timeout", "survived"):
                setattr(report, m.status, getattr(report, m.status) + 1)
            else:
                report.skipped += 1
        report.seconds = time.perf_counter() - start
        reports.append(report)
        everything += mutants
    return reports, everything


def _job(task, source, jid, reseed):
    return {
        "id": jid,
        "lesson": task.lesson,
        "task": task.grade_id,
        "source": source,
        "check": task.check,
        "earlier": task.earlier,
        "reseed": reseed,
    }


def print_report(reports, mutants, *, details=True, out=sys.stdout):
    if details:
        for m in mutants:
            if m.status in CAUGHT:
                print(
                    f"{m.status:<8} {m.lesson}:{m.line} {m.task:<28} {_short(m.mutation, 44):<44} {_short(m.message, 200)}",
                    file=out,
                )
        print(file=out)
    survivors = [m for m in mutants if m.status == "survived"]
    for m in survivors:
        print(f"survived {m.lesson}:{m.line} {m.task:<28} {m.mutation:<44} {m.mutated}", file=out)
    if survivors:
        print(file=out)
    header = (
        f"{'lesson':<7} {'mutants':>7} {'equiv.':>6} {'caught':>6} {'(check':>6} {'crash':>6} {'timeout)':>8} "
        f"{'survived':>8} {'score':>7} {'false fail.':>11} {'minutes':>7}"
    )
    print(header, file=out)
    for r in reports:
        ff = str(len(r.false_failures))
        print(
            f"{r.lesson:<7} {r.total:>7} {r.equivalent:>6} {r.caught:>6} {r.check:>6} {r.crashed:>6} {r.timeout:>8} "
            f"{r.survived:>8} {r.score:>6.1f}% {ff:>11} {r.seconds / 60:>7.1f}",
            file=out,
        )
    caught = sum(r.caught for r in reports)
    counted = sum(r.counted for r in reports)
    print(
        f"{'all':<7} {sum(r.total for r in reports):>7} {sum(r.equivalent for r in reports):>6} {caught:>6} "
        f"{sum(r.check for r in reports):>6} {sum(r.crashed for r in reports):>6} "
        f"{sum(r.timeout for r in reports):>8} {sum(r.survived for r in reports):>8} "
        f"{100.0 * caught / counted if counted else 100.0:>6.1f}% "
        f"{sum(len(r.false_failures) for r in reports):>11}",
        file=out,
    )
    for r in reports:
        for line in r.wrong_message:
            print(f"CAUGHT WITHOUT ITS MESSAGE lesson {r.lesson} {line}", file=out)
        for f in r.false_failures:
            print(f"FALSE FAILURE lesson {r.lesson} {f['run']}: {f['status']} {_short(f['message'], 200)}", file=out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lessons", nargs="*", help="lessons to mutate, e.g. 01 03 (default: all)")
    parser.add_argument("--tasks", nargs="*", help="tasks (grade_ids) to mutate, e.g. t03_train_step")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at the same time (default 1)")
    parser.add_argument("--list", action="store_true", help="print the mutants and stop")
    parser.add_argument("--json", help="write every mutant's result (and the false failures) to this file")
    parser.add_argument("--repeat", type=int, default=0, help="also run each unmutated reference K times")
    parser.add_argument("--fail-under", type=float, help="exit 1 when a lesson scores below this percentage")
    parser.add_argument("--sample", type=int, help="run only N non-equivalent mutants per lesson")
    parser.add_argument("--seed", type=int, default=0, help="which N mutants --sample picks")
    parser.add_argument("--timeout", type=float, help="seconds per mutant (default: max(60, 10 x the reference))")
    parser.add_argument("--quiet", action="store_true", help="no line per mutant (only survivors and the table)")
    args = parser.parse_args(argv)
    lesson_keys = [k.zfill(2) for k in args.lessons] if args.lessons else None
    selected = select_tasks(lesson_keys, args.tasks)
    if args.list:
        equivalents = load_equivalents()
        for lesson, tasks in selected.items():
            mutants = [m for t in tasks for m in mutants_of(t)]
            mark_equivalents(mutants, equivalents)
            for m in sample(mutants, args.sample, args.seed, lesson):
                tag = " (equivalent)" if m.status == "equivalent" else ""
                print(f"{m.lesson}:{m.line} {m.task:<28} {m.mutation:<44} {m.mutated}{tag}")
        return 0
    preload()
    start = time.perf_counter()
    reports, mutants = evaluate(
        selected,
        jobs=max(1, args.jobs),
        repeat=max(0, args.repeat),
        sample_n=args.sample,
        seed=args.seed,
        timeout=args.timeout,
        progress=not args.quiet,
    )
    print_report(reports, mutants, details=not args.quiet)
    print(f"wall time {(time.perf_counter() - start) / 60:.1f} min with --jobs {args.jobs}")
    if args.json:
        data = {
            "lessons": [
                {**asdict(r), "caught": r.caught, "score": r.score, "false_failures": r.false_failures} for r in reports
            ],
            "mutants": [{k: v for k, v in asdict(m).items() if k != "source"} for m in mutants],
        }
        Path(args.json).write_text(json.dumps(data, indent=1, ensure_ascii=False))
    failed = False
    if any(r.false_failures for r in reports):
        print("the unmutated reference solutions failed a check (false failures above)")
        failed = True
    if args.fail_under is not None:
        low = [r for r in reports if r.score < args.fail_under]
        for r in low:
            print(f"lesson {r.lesson} scores {r.score:.1f}%, below --fail-under {args.fail_under:g}%")
        failed = failed or bool(low)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
