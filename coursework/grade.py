"""The autograder: run a notebook (or a folder of submissions) and score its check cells.

    python -m course_lib.grade exercises/01_self_supervised_likelihood.ipynb
    python -m course_lib.grade submissions/ --csv gradebook.csv --json report.json
    python -m course_lib.grade PATH [--json FILE] [--csv FILE] [--timeout SECONDS] [--reference DIR]

How a notebook is graded:

1. Its reference is the solved notebook with the same name in the reference folder (default: the
   repository's ``solutions/``); failing that, the one sharing the most check-cell ``grade_id``s, then the one
   with the same two-digit lesson number.
2. Every cell whose nbgrader ``grade_id`` is one of the reference's check cells gets the reference's source
   and metadata (editing a check cell changes nothing), deleted check cells are put back after the cell that
   precedes them in the reference, and all outputs are cleared. Points come from the reference too. Before a
   check cell that calls ``checks.…``, ``course_lib.checks`` is imported afresh, so a monkeypatched check
   function is not the one that grades.
3. The prepared notebook runs in a fresh kernel, in a temporary copy of the notebook's folder (without
   other notebooks, hidden folders and caches; at most 200 MB), driven by a
   separate process (this file run as a script with ``--_execute``): the grader survives a kernel that raises,
   loops forever or prints megabytes. Errors do not stop the run (every later check still runs); the time
   limit (``--timeout``, default 900 s) is for the whole notebook, after which the remaining cells are not
   run. ``COURSE_FAST`` is passed through from the environment.
4. A check cell earns its points when it ran without an error (and printed no ✗ verdict). Its message is the
   check's verdict (the last line starting with ✓ or ✗), else the error's last line, or "time limit
   exceeded" / "not executed".

The grader prints a table per notebook and the total. ``--json FILE`` writes the report (one object for a
notebook, a list for a folder); a folder also writes a CSV gradebook (``--csv FILE``, default
``grades.csv`` in the current folder), one row per notebook and one column per check.

Grading runs the submission's code with your permissions. It keeps honest mistakes from breaking the
grading, not a determined attacker: grade untrusted submissions in a container or a throwaway account.
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_TIMEOUT = 900          # seconds per notebook
STARTUP_GRACE = 120            # extra seconds for the executor and kernel to start and stop
OUTPUT_CAP = 200_000           # characters of output kept per cell while executing
MESSAGE_CAP = 500              # characters of a task's message
PASS_MARK, FAIL_MARK = "✓", "✗"
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
COPY_BUDGET = (200_000_000, 2_000)  # bytes and files copied from a notebook's folder, at most


def default_reference() -> Path:
    """The repository's solutions/ folder, next to the course_lib package."""
    return PACKAGE_ROOT / "solutions"


# --------------------------------------------------------------------------------------------- reports
@dataclass
class Task:
    grade_id: str
    points: float
    max_points: float
    message: str


@dataclass
class Report:
    notebook: str
    total: float
    max: float
    tasks: list[Task] = field(default_factory=list)
    reference: str | None = None
    status: str = "ok"            # ok | time limit exceeded | kernel died | error: ...
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _number(x: float) -> float | int:
    return int(x) if float(x).is_integer() else round(float(x), 3)


# ------------------------------------------------------------------------------------------- notebooks
def read_notebook(path: Path):
    """A notebook from .ipynb or a jupytext .py file."""
    import jupytext
    import nbformat
    if path.suffix == ".ipynb":
        return nbformat.read(path, as_version=4)
    return jupytext.read(path)


def grade_id(cell) -> str | None:
    meta = cell.get("metadata", {}).get("nbgrader")
    if isinstance(meta, dict) and isinstance(meta.get("grade_id"), str):
        return meta["grade_id"]
    return None


def is_check_cell(cell) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader")
    return (cell.get("cell_type") == "code" and isinstance(meta, dict) and bool(meta.get("grade"))
            and isinstance(meta.get("grade_id"), str))


def cell_points(cell) -> float:
    try:
        points = float(cell.metadata["nbgrader"].get("points", 0) or 0)
    except (TypeError, ValueError):
        return 0.0
    return points if math.isfinite(points) and points >= 0 else 0.0


@dataclass
class Reference:
    path: Path
    notebook: object

    @property
    def checks(self) -> list:
        return [c for c in self.notebook.cells if is_check_cell(c)]

    @property
    def check_ids(self) -> list[str]:
        return [grade_id(c) for c in self.checks]


def load_references(folder: Path | None) -> list[Reference]:
    """Every solved notebook in `folder` with at least one check cell (the .py source preferred)."""
    if folder is None or not folder.is_dir():
        return []
    by_stem: dict[str, Path] = {}
    for path in sorted(folder.glob("*.ipynb")) + sorted(folder.glob("*.py")):
        by_stem[path.stem] = path  # .py wins: it is the source of truth
    references = []
    for stem in sorted(by_stem):
        try:
            reference = Reference(by_stem[stem], read_notebook(by_stem[stem]))
        except Exception:  # noqa: BLE001 - a stray file in the folder is not a reference
            continue
        if reference.checks:
            references.append(reference)
    return references


def match_reference(path: Path, notebook, references: list[Reference]) -> Reference | None:
    """Same file name, else most shared check grade_ids, else same two-digit lesson number."""
    for reference in references:
        if reference.path.stem == path.stem:
            return reference
    ids = {grade_id(c) for c in notebook.cells} if notebook is not None else set()
    overlap = [(len(ids & set(r.check_ids)), r) for r in references]
    best = max(overlap, key=lambda pair: pair[0], default=(0, None))
    if best[0] > 0:
        return best[1]
    prefix = path.name[:2]
    if prefix.isdigit():
        for reference in references:
            if reference.path.name[:2] == prefix:
                return reference
    return None


# Run before a reference check cell that uses `checks`: a fresh import of course_lib.checks from disk, so that
# a submission that monkeypatched a check function (checks.lesson01.check_nll = ...) is graded by the real one.
FRESH_CHECKS = (
    "import importlib as _grader_importlib, sys as _grader_sys\n"
    "[_grader_sys.modules.pop(_n) for _n in list(_grader_sys.modules) if _n.startswith('course_lib.checks')]\n"
    "checks = _grader_importlib.import_module('course_lib.checks')\n"
    "del _grader_importlib, _grader_sys\n"
)


def _check_source(source: str) -> str:
    return FRESH_CHECKS + source if "checks." in source else source


def prepare(notebook, reference: Reference | None):
    """A copy of `notebook` with outputs cleared and the reference's check cells in place.

    Returns (notebook, checks) where checks lists (grade_id, max_points, cell index) in reference order.
    """
    import nbformat
    nb = copy.deepcopy(notebook)
    nb.nbformat, nb.nbformat_minor = 4, max(5, nb.get("nbformat_minor", 5))
    cells = []
    for cell in nb.cells:
        cell.setdefault("metadata", {})
        if cell.get("cell_type") == "code":
            cell.outputs, cell.execution_count = [], None
        cells.append(cell)
    if reference is None:  # no reference: the notebook's own check cells (trust them)
        nb.cells = cells
        for cell in nb.cells:
            cell["id"] = nbformat.v4.new_code_cell().id
        checks = [(grade_id(c), cell_points(c), i) for i, c in enumerate(cells) if is_check_cell(c)]
        return nb, checks
    reference_cells = {grade_id(c): c for c in reference.checks}
    kept, seen = [], set()
    for cell in cells:
        gid = grade_id(cell)
        if gid in reference_cells:
            if gid in seen:
                continue  # a duplicated check cell runs once
            seen.add(gid)
            fresh = nbformat.v4.new_code_cell(_check_source(reference_cells[gid].source),
                                              metadata=copy.deepcopy(dict(reference_cells[gid].metadata)))
            cell = fresh
        kept.append(cell)
    # put back deleted check cells, right after the cell that precedes them in the reference
    anchor = None
    for ref_cell in reference.notebook.cells:
        gid = grade_id(ref_cell)
        if gid is None:
            continue
        position = next((i for i, c in enumerate(kept) if grade_id(c) == gid), None)
        if position is not None:
            anchor = position
        elif gid in reference_cells:
            fresh = nbformat.v4.new_code_cell(_check_source(ref_cell.source),
                                              metadata=copy.deepcopy(dict(ref_cell.metadata)))
            anchor = len(kept) if anchor is None else anchor + 1
            kept.insert(anchor, fresh)
    nb.cells = kept
    for cell in nb.cells:  # ids must be unique and valid for nbformat 4.5
        cell["id"] = nbformat.v4.new_code_cell().id
    checks = []
    for gid in reference.check_ids:
        index = next(i for i, c in enumerate(nb.cells) if grade_id(c) == gid)
        checks.append((gid, cell_points(reference_cells[gid]), index))
    return nb, checks


# ------------------------------------------------------------------------------------------- execution
def _kill_group(pid: int | None) -> None:
    """Kill the process group led by `pid` (the executor or the kernel: each starts its own session)."""
    if not pid:
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


def copy_folder(source: Path, target: Path, budget: tuple[int, int] = COPY_BUDGET) -> None:
    """Copy the files a notebook may read from its folder: hidden folders, virtual environments, caches and
    other notebooks are left out, and copying stops at `budget` (bytes, files) so that grading a notebook
    that sits in a big folder stays cheap."""
    max_bytes, max_files = budget
    used_bytes = used_files = 0
    target.mkdir(parents=True, exist_ok=True)
    for folder, subfolders, files in os.walk(source):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(".") and d not in
                               ("__pycache__", "node_modules", "venv", "site-packages"))
        here = Path(folder)
        destination = target / here.relative_to(source)
        destination.mkdir(parents=True, exist_ok=True)
        for name in sorted(files):
            path = here / name
            if name.startswith(".") or name.endswith((".ipynb", ".pyc")) or path.is_symlink():
                continue
            try:
                size = path.stat().st_size
                if used_bytes + size > max_bytes or used_files >= max_files:
                    return
                shutil.copy2(path, destination / name)
            except OSError:
                continue
            used_bytes, used_files = used_bytes + size, used_files + 1


def run_notebook(nb, folder: Path, timeout: float) -> dict:
    """Execute `nb` in a temporary copy of `folder`, in a separate process; the per-cell results.

    Never raises for anything the notebook does: the result says "ok", "time limit exceeded", "kernel died"
    or "error: ..." and holds one record per executed cell index.
    """
    import nbformat
    scratch = Path(tempfile.mkdtemp(prefix="course-grade-"))
    work = scratch / "work"
    try:
        copy_folder(folder, work)
        given, result, pidfile = scratch / "input.ipynb", scratch / "result.json", scratch / "kernel.pid"
        nbformat.write(nb, given)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
        env.setdefault("TQDM_DISABLE", "1")
        env.setdefault("MPLBACKEND", "Agg")
        # run this file as a script: the executor needs neither torch nor the rest of course_lib
        command = [sys.executable, str(Path(__file__).resolve()), "--_execute", str(given), str(result),
                   "--timeout", str(timeout), "--_pidfile", str(pidfile), "--_cwd", str(work)]
        status = None
        with open(scratch / "executor.log", "wb") as log:
            process = subprocess.Popen(command, cwd=work, env=env, stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                process.wait(timeout=timeout + STARTUP_GRACE)
            except subprocess.TimeoutExpired:
                status = "time limit exceeded"
                _kill_group(process.pid)
                process.wait()
        kernel_pid = _read_pid(pidfile)
        _kill_group(kernel_pid)  # normally gone already; never leave a kernel behind
        outcome = _read_json(result) or {"status": None, "cells": {}}
        if status:
            outcome["status"] = status
        elif outcome.get("status") in (None, "running"):
            tail = (scratch / "executor.log").read_bytes()[-600:].decode("utf-8", "replace").strip()
            last = tail.splitlines()[-1] if tail else f"exit code {process.returncode}"
            outcome["status"] = f"error: the executor stopped ({last[:200]})"
        return outcome
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data), encoding="utf-8")
    os.replace(temporary, path)


def _cell_record(cell, reply_status: str | None) -> dict:
    """Status, verdict line and error line of one executed cell (small: no outputs are kept)."""
    text, error = [], None
    for out in cell.get("outputs", []):
        kind = out.get("output_type")
        if kind == "stream":
            text.append(out.get("text", ""))
        elif kind in ("execute_result", "display_data"):
            text.append(str(out.get("data", {}).get("text/plain", "")))
        elif kind == "error":
            error = f"{out.get('ename', 'Error')}: {out.get('evalue', '')}".strip().rstrip(":")
    lines = [line.strip() for chunk in text for line in chunk.splitlines()]
    verdicts = [line for line in lines if line.startswith((PASS_MARK, FAIL_MARK))]
    verdict = verdicts[-1] if verdicts else None
    if error and FAIL_MARK in error and not (verdict or "").startswith(FAIL_MARK):
        verdict = error[error.index(FAIL_MARK):]
    failed = error is not None or (reply_status not in (None, "ok"))
    return {"status": "error" if failed else "ok",
            "verdict": verdict[:MESSAGE_CAP] if verdict else None,
            "error": error.splitlines()[0][:MESSAGE_CAP] if error else (None if not failed else "the cell failed"),
            "last_line": next((line for line in reversed(lines) if line), "")[:MESSAGE_CAP]}


def execute(given: Path, result: Path, timeout: float, pidfile: Path | None, cwd: Path) -> int:
    """The executor (child process): run every code cell, record each one as soon as it finishes."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    class CappedClient(NotebookClient):
        """Keeps at most OUTPUT_CAP characters of output per cell; the rest is dropped."""
        sizes: dict = {}

        def output(self, outs, msg, display_id, cell_index):
            content = msg.get("content", {})
            size = len(str(content.get("text", ""))) + sum(len(str(v)) for v in content.get("data", {}).values())
            used = self.sizes.get(cell_index, 0)
            self.sizes[cell_index] = used + size
            if msg.get("msg_type") != "error" and used + size > OUTPUT_CAP:
                if used <= OUTPUT_CAP:
                    outs.append(nbformat.v4.new_output(
                        "stream", name="stderr", text=f"\n[grader: output cut after {OUTPUT_CAP} characters]\n"))
                return None
            return super().output(outs, msg, display_id, cell_index)

    nb = nbformat.read(given, as_version=4)
    replies: dict[int, str] = {}

    def on_cell_executed(cell, cell_index, execute_reply):
        replies[cell_index] = (execute_reply or {}).get("content", {}).get("status")

    client = CappedClient(nb, timeout=120, kernel_name="python3", allow_errors=True, interrupt_on_timeout=False,
                          shutdown_kernel="immediate", record_timing=False, iopub_timeout=15,
                          on_cell_executed=on_cell_executed, resources={"metadata": {"path": str(cwd)}})
    outcome: dict = {"status": "running", "cells": {}}
    _write_json(result, outcome)
    try:
        with client.setup_kernel(cwd=str(cwd)):
            process = getattr(getattr(client.km, "provisioner", None), "process", None)
            if pidfile is not None and process is not None:
                pidfile.write_text(str(process.pid))
            client.wait_for_reply(client.kc.kernel_info())
            deadline = time.monotonic() + timeout
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code" or not cell.source.strip():
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    outcome["status"] = "time limit exceeded"
                    break
                client.timeout_func = lambda _cell, r=remaining: max(1, int(math.ceil(r)))
                try:
                    client.execute_cell(cell, index, execution_count=index + 1)
                except CellTimeoutError:
                    outcome["cells"][str(index)] = {"status": "timeout", "verdict": None, "error": None,
                                                    "last_line": ""}
                    outcome["status"] = "time limit exceeded"
                    break
                except DeadKernelError:
                    outcome["cells"][str(index)] = {"status": "dead", "verdict": None, "error": None,
                                                    "last_line": ""}
                    outcome["status"] = "kernel died"
                    break
                outcome["cells"][str(index)] = _cell_record(cell, replies.get(index))
                cell.outputs = []  # records are all we keep
                _write_json(result, outcome)
            else:
                outcome["status"] = "ok"
    except Exception as error:  # noqa: BLE001 - the kernel failed to start, or the channel broke
        if outcome["status"] == "running":
            outcome["status"] = f"error: {type(error).__name__}: {str(error)[:200]}"
    _write_json(result, outcome)
    return 0


# ---------------------------------------------------------------------------------------------- grading
def grade_notebook(path: Path, references: list[Reference], timeout: float = DEFAULT_TIMEOUT) -> Report:
    """Execute one notebook in a fresh kernel and score it against its reference."""
    start = time.perf_counter()
    try:
        notebook = read_notebook(path)
    except Exception as error:  # noqa: BLE001 - an unreadable submission still gets a report
        notebook, problem = None, f"error: cannot read the notebook ({type(error).__name__}: {str(error)[:150]})"
    else:
        problem = None
    reference = match_reference(path, notebook, references)
    try:
        nb, checks = prepare(notebook if notebook is not None else _empty_notebook(), reference)
    except Exception as error:  # noqa: BLE001 - a malformed notebook still gets a report
        problem = problem or f"error: malformed notebook ({type(error).__name__}: {str(error)[:150]})"
        nb, checks = prepare(_empty_notebook(), reference)
    if problem:
        outcome = {"status": problem, "cells": {}}
    elif not checks:
        outcome = {"status": "ok", "cells": {}}
    else:
        outcome = run_notebook(nb, path.parent, timeout)
    run_status = outcome.get("status") or "error"
    tasks = []
    for gid, max_points, index in checks:
        record = outcome.get("cells", {}).get(str(index))
        points, message = 0.0, _missing_message(run_status)
        if record is not None:
            state = record.get("status")
            verdict = record.get("verdict")
            if state == "timeout":
                message = "time limit exceeded"
            elif state == "dead":
                message = "the kernel died while running this check"
            elif state == "error":
                message = verdict if (verdict or "").startswith(FAIL_MARK) else (record.get("error") or "error")
            elif (verdict or "").startswith(FAIL_MARK):
                message = verdict  # the check failed but its exception was swallowed
            else:
                points = max_points
                message = verdict or record.get("last_line") or "passed"
        tasks.append(Task(gid, _number(points), _number(max_points), message[:MESSAGE_CAP]))
    return Report(notebook=str(path), total=_number(sum(t.points for t in tasks)),
                  max=_number(sum(t.max_points for t in tasks)), tasks=tasks,
                  reference=str(reference.path) if reference else None, status=run_status,
                  seconds=round(time.perf_counter() - start, 1))


def _missing_message(run_status: str) -> str:
    if run_status == "time limit exceeded":
        return "time limit exceeded"
    if run_status == "kernel died":
        return "not executed (the kernel died earlier)"
    if run_status.startswith("error"):
        return f"not executed ({run_status})"
    return "not executed"


def _empty_notebook():
    import nbformat
    return nbformat.v4.new_notebook()


def find_notebooks(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*.ipynb")
                      if not any(part.startswith(".") for part in p.relative_to(path).parts))
    return [path]


# --------------------------------------------------------------------------------------------- printing
def format_report(report: Report) -> str:
    name_width = max([len(t.grade_id) for t in report.tasks] + [5])
    lines = [f"{report.notebook}  (reference: {report.reference or 'none: its own check cells'}; "
             f"{report.seconds:.0f} s; {report.status})"]
    for task in report.tasks:
        score = f"{_number(task.points)}/{_number(task.max_points)}"
        lines.append(f"  {task.grade_id:<{name_width}}  {score:>7}  {task.message}")
    lines.append(f"  {'total':<{name_width}}  {f'{_number(report.total)}/{_number(report.max)}':>7}")
    return "\n".join(lines)


def write_gradebook(reports: list[Report], path: Path) -> None:
    """One row per notebook, one column per check (in order of first appearance), then total and max."""
    columns: list[str] = []
    for report in reports:
        for task in report.tasks:
            if task.grade_id not in columns:
                columns.append(task.grade_id)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["notebook", *columns, "total", "max", "status"])
        for report in reports:
            points = {t.grade_id: _number(t.points) for t in report.tasks}
            writer.writerow([report.notebook, *(points.get(c, "") for c in columns),
                             _number(report.total), _number(report.max), report.status])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.grade", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path, nargs="?", help="a notebook, or a folder of notebooks (searched recursively)")
    parser.add_argument("--json", type=Path, help="write the report as JSON (a list for a folder)")
    parser.add_argument("--csv", type=Path, help="write the CSV gradebook (default for a folder: grades.csv)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per notebook (default 900)")
    parser.add_argument("--reference", type=Path, default=None,
                        help="folder of solved notebooks whose check cells are used (default: solutions/)")
    parser.add_argument("--_execute", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--_pidfile", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--_cwd", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._execute:  # the executor process started by run_notebook
        given, result = args._execute
        return execute(given, result, args.timeout, args._pidfile, args._cwd or given.parent)
    if args.path is None:
        parser.error("the following arguments are required: path")

    if not args.path.exists():
        print(f"error: {args.path} does not exist", file=sys.stderr)
        return 2
    notebooks = find_notebooks(args.path)
    if not notebooks:
        print(f"error: no .ipynb notebook in {args.path}", file=sys.stderr)
        return 2
    reference_dir = args.reference if args.reference is not None else default_reference()
    if args.reference is not None and not reference_dir.is_dir():
        print(f"error: the reference folder {reference_dir} does not exist", file=sys.stderr)
        return 2
    references = load_references(reference_dir)
    if not references:
        print(f"warning: no reference notebooks in {reference_dir}: each notebook is graded with its own "
              "check cells, which a submission can edit", file=sys.stderr)
    reports = []
    for path in notebooks:
        report = grade_notebook(path, references, args.timeout)
        reports.append(report)
        print(format_report(report), flush=True)
    if len(reports) > 1 or args.path.is_dir():
        total, top = sum(r.total for r in reports), sum(r.max for r in reports)
        print(f"{len(reports)} notebooks graded; {_number(total)}/{_number(top)} points in all")
    if args.json:
        data = [r.to_dict() for r in reports] if args.path.is_dir() else reports[0].to_dict()
        args.json.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.path.is_dir() or args.csv:
        target = args.csv or Path("grades.csv")
        write_gradebook(reports, target)
        print(f"gradebook: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
