"""The autograder: run a notebook (or a folder of submissions) and score its check cells.

    pixelcnn-grade exercises/01_self_supervised_likelihood.ipynb
    pixelcnn-grade submissions/ --csv gradebook.csv --json report.json
    pixelcnn-grade PATH [--json FILE] [--csv FILE] [--timeout SECONDS] [--reference DIR]

How a notebook is graded:

1. The notebook is prepared against its reference (`coursework.notebooks`): the reference's check cells,
   points and order replace whatever the submission has.
2. The prepared notebook runs in a fresh kernel, in a temporary copy of the notebook's folder (without
   other notebooks, hidden folders and caches; at most 200 MB), driven by a
   separate process (`python -m coursework.executor`): the grader survives a kernel that raises,
   loops forever or prints megabytes. Errors do not stop the run (every later check still runs); the time
   limit (``--timeout``, default 900 s) is for the whole notebook, after which the remaining cells are not
   run. ``COURSE_FAST`` is passed through from the environment.
3. A check cell earns its points when it ran without an error (and printed no ✗ verdict). Its message is the
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
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .executor import FAIL_MARK, MESSAGE_CAP
from .notebooks import (
    PACKAGE_ROOT,
    Reference,
    default_reference,
    empty_notebook,
    find_notebooks,
    load_references,
    match_reference,
    prepare,
    read_notebook,
)

DEFAULT_TIMEOUT = 900  # seconds per notebook


STARTUP_GRACE = 120  # extra seconds for the executor and kernel to start and stop


COPY_BUDGET = (200_000_000, 2_000)  # bytes and files copied from a notebook's folder, at most


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
    status: str = "ok"  # ok | time limit exceeded | kernel died | error: ...
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _number(x: float) -> float | int:
    return int(x) if float(x).is_integer() else round(float(x), 3)


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
        subfolders[:] = sorted(
            d
            for d in subfolders
            if not d.startswith(".") and d not in ("__pycache__", "node_modules", "venv", "site-packages")
        )
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
        command = [
            sys.executable,
            "-m",
            "coursework.executor",
            str(given),
            str(result),
            "--timeout",
            str(timeout),
            "--pidfile",
            str(pidfile),
            "--cwd",
            str(work),
        ]
        status = None
        with open(scratch / "executor.log", "wb") as log:
            process = subprocess.Popen(
                command,
                cwd=work,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
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
        nb, checks = prepare(notebook if notebook is not None else empty_notebook(), reference)
    except Exception as error:  # noqa: BLE001 - a malformed notebook still gets a report
        problem = problem or f"error: malformed notebook ({type(error).__name__}: {str(error)[:150]})"
        nb, checks = prepare(empty_notebook(), reference)
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
    return Report(
        notebook=str(path),
        total=_number(sum(t.points for t in tasks)),
        max=_number(sum(t.max_points for t in tasks)),
        tasks=tasks,
        reference=str(reference.path) if reference else None,
        status=run_status,
        seconds=round(time.perf_counter() - start, 1),
    )


def _missing_message(run_status: str) -> str:
    if run_status == "time limit exceeded":
        return "time limit exceeded"
    if run_status == "kernel died":
        return "not executed (the kernel died earlier)"
    if run_status.startswith("error"):
        return f"not executed ({run_status})"
    return "not executed"


def format_report(report: Report) -> str:
    name_width = max([len(t.grade_id) for t in report.tasks] + [5])
    lines = [
        f"{report.notebook}  (reference: {report.reference or 'none: its own check cells'}; "
        f"{report.seconds:.0f} s; {report.status})"
    ]
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
            writer.writerow(
                [
                    report.notebook,
                    *(points.get(c, "") for c in columns),
                    _number(report.total),
                    _number(report.max),
                    report.status,
                ]
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pixelcnn-grade", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "path", type=Path, nargs="?", help="a notebook, or a folder of notebooks (searched recursively)"
    )
    parser.add_argument("--json", type=Path, help="write the report as JSON (a list for a folder)")
    parser.add_argument("--csv", type=Path, help="write the CSV gradebook (default for a folder: grades.csv)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per notebook (default 900)")
    parser.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="folder of solved notebooks whose check cells are used (default: solutions/)",
    )
    args = parser.parse_args(argv)
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
        print(
            f"warning: no reference notebooks in {reference_dir}: each notebook is graded with its own "
            "check cells, which a submission can edit",
            file=sys.stderr,
        )
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
