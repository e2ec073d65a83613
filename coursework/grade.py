"""The autograder: run a notebook (or a folder of submissions) and score its check cells.

    pixelcnn-grade exercises/01_self_supervised_likelihood.ipynb
    pixelcnn-grade submissions/ --csv gradebook.csv --json report.json
    pixelcnn-grade PATH [--json FILE] [--csv FILE] [--timeout SECONDS] [--reference DIR] [--lesson NN]
                        [--trust-own-checks]

How a notebook is graded:

1. The notebook is prepared against its reference (`coursework.notebooks`): the reference's check cells,
   points and order replace whatever the submission has. A notebook that matches no reference scores 0
   unless ``--trust-own-checks`` is given.
2. The prepared notebook runs in a fresh kernel inside a sandbox of its own (`coursework.sandbox`,
   `coursework.kernel`): a temporary copy of the notebook's folder (without other notebooks, hidden folders
   and caches; at most 200 MB), its own HOME, a snapshot of the checks taken before the first submission,
   and the reference folders out of its sight. A separate process (`python -m coursework.executor`) drives
   it and reports on a pipe only it holds: the grader survives a kernel that raises,
   loops forever or prints megabytes. Errors do not stop the run (every later check still runs); the time
   limit (``--timeout``, default 900 s) is for the whole notebook, after which the remaining cells are not
   run. ``COURSE_FAST`` is passed through from the environment.
3. A check cell earns its points when it ran without an error (and printed no ✗ verdict). Its message is the
   check's verdict (the last line starting with ✓ or ✗), else the error's last line, or "time limit
   exceeded" / "not executed".

The grader prints a table per notebook and the total. ``--json FILE`` writes the report (one object for a
notebook, a list for a folder); a folder also writes a CSV gradebook (``--csv FILE``, default
``grades.csv`` in the current folder), one row per notebook and one column per check.

Grading runs the submission's code with your permissions, in the same kernel as the checks: code there can
patch torch or IPython, read files your account can read, or start processes that outlive it. Grade
high-stakes work in a fresh container per submission.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .executor import FAIL_MARK, MESSAGE_CAP
from .notebooks import (
    Reference,
    default_reference,
    empty_notebook,
    find_notebooks,
    load_references,
    match_reference,
    prepare,
    read_notebook,
)
from .sandbox import KERNEL_NAME, Sandbox, Snapshot, can_hide

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


def run_notebook(nb, folder: Path, timeout: float, snapshot: Snapshot | None = None, references=()) -> dict:
    """Execute `nb` in a fresh sandbox holding a copy of `folder`, in a separate process; the per-cell results.

    `references`: folders of reference notebooks the kernel must not see (`coursework.sandbox`).
    The executor reports on a pipe that only it holds, each record carrying a token it read before the kernel
    started (`coursework.executor`). Its records are trusted when
    it exits normally, or when the grader stopped it at the time limit; an executor that stops any other way
    (a kernel that kills it, say) voids them. Never raises for anything the notebook does: the result says
    "ok", "time limit exceeded", "kernel died" or "error: ..." and holds one record per executed cell index.
    """
    import nbformat

    sandbox = Sandbox(snapshot or Snapshot.take(), list(references))
    read_end = write_end = None
    try:
        copy_folder(folder, sandbox.work)
        given = sandbox.root / "input.ipynb"
        nbformat.write(nb, given)
        read_end, write_end = os.pipe()
        command = [
            sys.executable,
            "-m",
            "coursework.executor",
            str(given),
            "--results-fd",
            str(write_end),
            "--timeout",
            str(timeout),
            "--cwd",
            str(sandbox.work),
            "--kernel",
            KERNEL_NAME,
        ]
        records: list[dict] = []
        reader = threading.Thread(target=_read_records, args=(read_end, records), daemon=True)
        stopped_by_grader = False
        with open(sandbox.root / "executor.log", "wb") as log:
            process = subprocess.Popen(
                command,
                cwd=sandbox.root,
                env=sandbox.env,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=(write_end,),
            )
            os.close(write_end)
            write_end = None
            token = secrets.token_hex(16)
            try:
                process.stdin.write(token.encode() + b"\n")
                process.stdin.close()
            except OSError:  # the executor is already gone: no record will carry the token
                pass
            reader.start()
            try:
                process.wait(timeout=timeout + STARTUP_GRACE)
            except subprocess.TimeoutExpired:
                stopped_by_grader = True
                _kill_group(process.pid)
                process.wait()
        reader.join(timeout=10)
        records = [r for r in records if r.get("token") == token]
        for record in records:
            _kill_group(record.get("kernel_pid"))  # normally gone already; never leave a kernel behind
        cells = {str(r["cell"]): r for r in records if isinstance(r.get("cell"), int)}
        final = next((r for r in records if r.get("done")), None)
        if stopped_by_grader:
            return {"status": "time limit exceeded", "cells": cells}
        if process.returncode == 0 and final is not None:
            return {"status": final.get("status") or "error", "cells": cells}
        tail = (sandbox.root / "executor.log").read_bytes()[-600:].decode("utf-8", "replace").strip()
        last = tail.splitlines()[-1] if tail else f"exit code {process.returncode}"
        return {"status": f"error: the executor stopped before the end ({last[:200]})", "cells": {}}
    finally:
        for fd in (read_end, write_end):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        sandbox.close()


def _read_records(fd: int, records: list) -> None:
    """Collect the executor's JSON lines until it closes the pipe (lines that are not JSON are ignored)."""
    with os.fdopen(fd, "r", encoding="utf-8", errors="replace", closefd=False) as stream:
        for line in stream:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)


def grade_notebook(
    path: Path,
    references: list[Reference],
    timeout: float = DEFAULT_TIMEOUT,
    *,
    lesson: str | None = None,
    trust_own_checks: bool = False,
    snapshot: Snapshot | None = None,
) -> Report:
    """Execute one notebook in a fresh sandbox and score it against its reference.

    A notebook that matches no reference scores 0 (its status says why and how to fix it) unless
    `trust_own_checks` is set, in which case its own check cells grade it.
    """
    start = time.perf_counter()
    try:
        notebook = read_notebook(path)
    except Exception as error:  # noqa: BLE001 - an unreadable submission still gets a report
        notebook, problem = None, f"error: cannot read the notebook ({type(error).__name__}: {str(error)[:150]})"
    else:
        problem = None
    reference = match_reference(path, notebook, references, lesson)
    if reference is None and not trust_own_checks:
        return Report(
            notebook=str(path),
            total=0,
            max=0,
            status=_unmatched_status(references, lesson),
            seconds=round(time.perf_counter() - start, 1),
        )
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
        folders = {r.path.parent for r in references} | (
            {default_reference()} if default_reference().is_dir() else set()
        )
        outcome = run_notebook(nb, path.parent, timeout, snapshot, sorted(folders))
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


def _unmatched_status(references: list[Reference], lesson: str | None) -> str:
    if lesson is not None:
        return f"no reference: no reference notebook has the lesson number {lesson}; check --lesson and --reference"
    folders = ", ".join(sorted({str(r.path.parent) for r in references})) or "the reference folder"
    return (
        f"no reference: this notebook matches none of the reference notebooks in {folders} (by file name, "
        "check-cell ids or lesson number), so it was not graded; name its lesson with --lesson NN (or start "
        "the file name with the lesson number, e.g. 01_...), or point --reference at the right folder"
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
        f"{report.notebook}  (reference: {report.reference or ('none' if not report.tasks else 'none: its own check cells')}; "
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
    parser.add_argument(
        "--lesson",
        help="grade against the reference notebook of this lesson (its two-digit number, e.g. 03), whatever "
        "the notebooks are called",
    )
    parser.add_argument(
        "--trust-own-checks",
        action="store_true",
        help="grade a notebook that matches no reference by its own check cells (a submission can edit those)",
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
    if args.lesson is not None and not (len(args.lesson) == 2 and args.lesson.isdigit()):
        print(f"error: --lesson takes a two-digit lesson number such as 03, not {args.lesson!r}", file=sys.stderr)
        return 2
    references = load_references(reference_dir)
    if not references and not args.trust_own_checks:
        print(
            f"error: no reference notebooks in {reference_dir}; pass --reference FOLDER (the solved notebooks, "
            "such as the course's solutions/), or --trust-own-checks to grade each notebook by its own check "
            "cells, which a submission can edit",
            file=sys.stderr,
        )
        return 2
    snapshot = Snapshot.take()  # the checks and the library as they are now, before any submission runs
    if not can_hide():
        print(
            "warning: this system does not allow private mount namespaces, so the reference notebooks stay "
            "readable to a submission that searches the disk; grade high-stakes work in a container",
            file=sys.stderr,
        )
    reports = []
    for path in notebooks:
        report = grade_notebook(
            path,
            references,
            args.timeout,
            lesson=args.lesson,
            trust_own_checks=args.trust_own_checks,
            snapshot=snapshot,
        )
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
