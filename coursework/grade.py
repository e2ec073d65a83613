"""The autograder: run a notebook (or a folder of submissions) and score its check cells.

    pixelcnn-grade exercises/01_self_supervised_likelihood.ipynb
    pixelcnn-grade submissions/ --csv gradebook.csv --json report.json --jobs 4
    pixelcnn-grade PATH [--json FILE] [--csv FILE] [--feedback DIR] [--jobs N] [--shard K/N] [--resume]
                        [--timeout SECONDS] [--reference DIR] [--lesson NN] [--memory GIB]
                        [--trust-own-checks] [--unsafe-no-sandbox]
    pixelcnn-grade merge grades-1.csv grades-2.csv ... [--csv FILE] [--json FILE] [--feedback DIR]

How a notebook is graded:

1. The notebook is prepared against its reference (`coursework.notebooks`): the reference's check cells,
   points and order replace whatever the submission has. A notebook that matches no reference scores 0
   unless ``--trust-own-checks`` is given; with ``--lesson``, a notebook of another lesson is reported as
   such and not scored.
2. The prepared notebook runs in a fresh kernel inside a throwaway bubblewrap sandbox of its own
   (`coursework.sandbox`): its own user (uid 65534, no capabilities), PID, network, IPC and mount
   namespaces; a read-only view of the system, the Python environment and a snapshot of the checks taken
   before the first submission; nothing of the repository or of other submissions; a private home, /tmp and
   working folder (a copy of the notebook's folder: no other notebooks, hidden folders or caches; at most
   200 MB) discarded afterwards; limits on memory (``--memory``, default 8 GiB of address space), processes,
   file size and time. Every process the submission starts dies with its kernel. Without bubblewrap the
   grader stops and says how to install it; ``--unsafe-no-sandbox`` runs the kernels as you, without
   isolation. A separate process (`python -m coursework.executor`) drives the kernel and reports on a pipe
   only it holds. Errors do not stop the run (every later check still runs); the time limit (``--timeout``,
   default 900 s) is for the whole notebook, after which the remaining cells are not run. ``COURSE_FAST``
   is passed through from the environment.
3. A check cell earns its points when it ran without an error (and printed no ✗ verdict); it runs in the
   grader's own mode (``COURSE_FAST`` as the grader's environment has it, whatever the notebook set), and
   the notebook's setting is given back after it. A written answer (a markdown cell nbgrader grades by hand:
   "grade" and "solution" true) is listed as awaiting a person, in ``awaiting`` (the CSV says "pending"),
   and counts neither in the total nor in the max. Its message is the
   check's verdict (the last line starting with ✓ or ✗), else the error's last line, or "time limit
   exceeded" / "not executed".

The grader prints a table per notebook and the total (control characters shown as escapes). ``--json FILE``
writes the report (one object for a notebook, a list for a folder); a folder also writes a CSV gradebook
(``--csv FILE``, default ``grades.csv`` in the current folder), one row per notebook: the student (the first
folder below the graded folder, or the notebook's name for a notebook directly in it), the notebook, one
column per check, total, max and status, with text cells made safe for spreadsheets; and one feedback file
per student (``--feedback DIR``, default ``feedback/`` beside the CSV): the points, verdict and hint of each
task, the total and the run's status. For a folder, the JSON and CSV are rewritten as each notebook
finishes, and each report is appended to a journal (the CSV's name with ``.progress.jsonl``): an
interrupted run (Ctrl-C) keeps what it graded, and ``--resume`` grades only the notebooks the journal lacks.

A class (`coursework.classroom`): ``--jobs N`` grades N notebooks at once, each in its own executor and
sandbox as above, with max(1, cores // N) OpenMP/MKL threads per kernel; the outputs are those of a run with
``--jobs 1`` (only the ``seconds`` differ). ``--shard K/N`` grades the K-th of N slices of the folder's
sorted notebooks (positions K, K+N, ...; one per machine or Slurm array task), and ``pixelcnn-grade merge``
joins the shards' gradebooks (from their journals) into the one a single run writes, and writes the
feedback; it refuses when a shard is missing, given twice or unfinished. On Slurm, as a job array::

    #SBATCH --array=1-10
    pixelcnn-grade submissions/ --shard $SLURM_ARRAY_TASK_ID/10 --csv grades-$SLURM_ARRAY_TASK_ID.csv

and once all ten have finished::

    pixelcnn-grade merge grades-*.csv --csv grades.csv --json grades.json

What stays out of reach: the submission runs in the same kernel as the checks, so code there can still
patch Python, PyTorch or the checks in that kernel (a check sees what such code lets it see; the grader
re-imports the checks before each check cell, which undoes a monkeypatched check function but not a
patched torch). It cannot reach the grader, other submissions, the reference solutions or your files.
A check whose task `course_lib` implements fails code that calls that implementation (the task's text
says which library functions are allowed); a pasted copy of the library's source is not detected.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePath

from .executor import FAIL_MARK, MESSAGE_CAP
from .notebooks import (
    Reference,
    default_reference,
    empty_notebook,
    find_notebooks,
    lesson_of,
    load_references,
    match_reference,
    other_lesson,
    prepare,
    read_notebook,
)
from .sandbox import DEFAULT_LIMITS, KERNEL_NAME, Limits, Sandbox, SandboxUnavailable, Snapshot, bwrap_path, probe

DEFAULT_TIMEOUT = 900  # seconds per notebook


STARTUP_GRACE = 120  # extra seconds for the executor and kernel to start and stop


COPY_BUDGET = (200_000_000, 2_000)  # bytes and files copied from a notebook's folder, at most


COPY_DEPTH = 16  # folders below a notebook's folder that are copied, at most


@dataclass(frozen=True)
class Isolation:
    """How kernels are isolated: a bubblewrap sandbox (`bwrap`), or none (`unsafe`), with `limits`."""

    bwrap: str | None
    unsafe: bool = False
    limits: Limits = DEFAULT_LIMITS

    @classmethod
    def sandboxed(cls, limits: Limits = DEFAULT_LIMITS) -> Isolation:
        """bubblewrap, checked to work here; raises `SandboxUnavailable` (why, and how to fix it) otherwise."""
        bwrap = bwrap_path()
        probe(bwrap)
        return cls(bwrap, False, limits)


@functools.lru_cache(maxsize=1)
def default_isolation() -> Isolation:
    return Isolation.sandboxed()


AWAITING = "awaiting a person: a written answer, graded by hand (nbgrader's manual grading)"


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
    awaiting: list[Task] = field(default_factory=list)  # written answers a person grades: not in total or max

    def to_dict(self) -> dict:
        return asdict(self)


def _number(x: float) -> float | int:
    return int(x) if float(x).is_integer() else round(float(x), 3)


_RUNNING: set[int] = set()  # the executors running now (their process ids), for `stop_running`
_RUNNING_LOCK = threading.Lock()


def stop_running() -> None:
    """Kill every executor running now (and with it its sandbox): what an interrupted class run does. Their
    notebooks end with an error status, which the class run does not keep."""
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for pid in running:
        _kill_group(pid)


def _kill_group(pid: int | None) -> None:
    """Kill the process group led by `pid` (the executor or the kernel: each starts its own session)."""
    if not pid:
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


def copy_folder(source: Path, target: Path, budget: tuple[int, int] = COPY_BUDGET, depth: int = COPY_DEPTH) -> None:
    """Copy the files a notebook may read from its folder: hidden folders, virtual environments, caches and
    other notebooks are left out, folders deeper than `depth` too, and copying stops at `budget` (bytes,
    files) so that grading a notebook that sits in a big folder stays cheap. A file or folder that cannot be
    copied (a name too long, a vanished file) is skipped."""
    max_bytes, max_files = budget
    used_bytes = used_files = 0
    target.mkdir(parents=True, exist_ok=True)
    for folder, subfolders, files in os.walk(source):
        here = Path(folder)
        relative = here.relative_to(source)
        subfolders[:] = (
            []
            if len(relative.parts) >= depth
            else sorted(
                d
                for d in subfolders
                if not d.startswith(".") and d not in ("__pycache__", "node_modules", "venv", "site-packages")
            )
        )
        destination = target / relative
        try:
            destination.mkdir(parents=True, exist_ok=True)
        except OSError:
            subfolders[:] = []
            continue
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


def run_notebook(
    nb, folder: Path, timeout: float, snapshot: Snapshot | None = None, isolation: Isolation | None = None
) -> dict:
    """Execute `nb` in a fresh sandbox holding a copy of `folder`, in a separate process; the per-cell results.

    `isolation`: bubblewrap (default, checked once per process) or none (`Isolation(None, unsafe=True)`).
    The executor runs on the grader's side and reports on a pipe that only it holds, each record carrying a
    token it read before the kernel started (`coursework.executor`); the kernel runs in the sandbox and
    reaches the executor only through its own sockets. Records are trusted when the executor exits
    normally, or when the grader stopped it at the time limit; an executor that stops any other way voids
    them. Never raises for anything the notebook does: the result says "ok", "time limit exceeded",
    "kernel died" or "error: ..." and holds one record per executed cell index (with its `seconds`), and
    under "timing" the seconds of each phase (sandbox setup, `PHASES`, teardown; not in the report).
    """
    import nbformat

    isolation = isolation or default_isolation()
    started = time.perf_counter()
    sandbox = Sandbox(snapshot or Snapshot.take(), isolation.bwrap, isolation.limits, isolation.unsafe)
    timing: dict = {}
    try:
        copy_folder(folder, sandbox.work)
        given = sandbox.root / "home" / "input.ipynb"
        nbformat.write(nb, given)
        timing["sandbox_setup"] = time.perf_counter() - started
        outcome = _execute(sandbox, given, timeout, timing)
    finally:
        closing = time.perf_counter()
        sandbox.close()
        timing["teardown"] = time.perf_counter() - closing
    outcome["timing"] = {k: round(v, 3) for k, v in timing.items()}
    return outcome


def _execute(sandbox: Sandbox, given: Path, timeout: float, timing: dict) -> dict:
    """Run the executor on `given` in `sandbox` (see `run_notebook`); adds the phases' seconds to `timing`."""
    read_end = write_end = None
    try:
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
            "--transport",
            "ipc",
        ]
        for cgroup in sandbox.cgroups:
            command += ["--cgroup", str(cgroup)]
        records: list[dict] = []
        reader = threading.Thread(target=_read_records, args=(read_end, records), daemon=True)
        stopped_by_grader = False
        log_path = sandbox.root / "home" / "executor.log"
        with open(log_path, "wb") as log:
            launched = time.time()
            process = subprocess.Popen(
                command,
                cwd=sandbox.root / "home",
                env=sandbox.env,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=(write_end,),
            )
            os.close(write_end)
            write_end = None
            with _RUNNING_LOCK:
                _RUNNING.add(process.pid)
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
            finally:
                with _RUNNING_LOCK:
                    _RUNNING.discard(process.pid)
        reader.join(timeout=10)
        ended = time.time()
        records = [r for r in records if r.get("token") == token]
        for record in records:
            _kill_group(record.get("kernel_pid"))  # normally gone already; never leave a kernel behind
        cells = {str(r["cell"]): r for r in records if isinstance(r.get("cell"), int)}
        final = next((r for r in records if r.get("done")), None)
        timing.update(_phases(launched, next((r["timing"] for r in records if "timing" in r), None), ended))
        if stopped_by_grader:
            return {"status": "time limit exceeded", "cells": cells}
        if process.returncode == 0 and final is not None:
            return {"status": final.get("status") or "error", "cells": cells}
        tail = log_path.read_bytes()[-600:].decode("utf-8", "replace").strip()
        last = tail.splitlines()[-1] if tail else f"exit code {process.returncode}"
        return {"status": f"error: the executor stopped before the end ({last[:200]})", "cells": {}}
    finally:
        for fd in (read_end, write_end):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass


PHASES = (
    ("executor_start", "imported"),  # the executor's Python starts and imports nbclient
    ("kernel_start", "kernel_ready"),  # bwrap, the launcher, ipykernel, until the kernel answers
    ("cells", "cells_done"),  # every code cell (each cell's own seconds are in its record)
    ("kernel_stop", "kernel_stopped"),  # shutting the kernel down
)


def _phases(launched: float, marks, ended: float) -> dict:
    """Seconds of each phase of a run, from the executor's time marks (wall-clock times; none: one phase)."""
    if not isinstance(marks, dict) or not all(isinstance(marks.get(m), (int, float)) for _, m in PHASES):
        return {"executor": ended - launched}
    phases, previous = {}, launched
    for name, mark in PHASES:
        phases[name] = marks[mark] - previous
        previous = marks[mark]
    phases["executor_exit"] = ended - previous
    return phases


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


def _scored(gid: str, max_points: float, record: dict | None, run_status: str) -> Task:
    """One task's points and message from its check cell's record (None: the cell never ran)."""
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
    return Task(printable(gid), _number(points), _number(max_points), printable(str(message))[:MESSAGE_CAP])


def grade_notebook(
    path: Path,
    references: list[Reference],
    timeout: float = DEFAULT_TIMEOUT,
    *,
    lesson: str | None = None,
    trust_own_checks: bool = False,
    snapshot: Snapshot | None = None,
    isolation: Isolation | None = None,
) -> Report:
    """Execute one notebook in a fresh sandbox and score it against its reference.

    A notebook that matches no reference scores 0 (its status says why and how to fix it) unless
    `trust_own_checks` is set, in which case its own check cells grade it. With `lesson`, a notebook whose
    check cells belong to another lesson is reported as such and not scored. `isolation`: see `run_notebook`.
    """
    start = time.perf_counter()
    shown = printable(str(path))
    try:
        notebook = read_notebook(path)
    except Exception as error:  # an unreadable submission still gets a report
        notebook, problem = None, f"error: cannot read the notebook ({type(error).__name__}: {str(error)[:150]})"
    else:
        problem = None
    reference = match_reference(path, notebook, references, lesson)
    elsewhere = other_lesson(notebook, references, reference) if lesson is not None else None
    if elsewhere is not None:
        return Report(
            notebook=shown,
            total=0,
            max=0,
            status=printable(
                f"another lesson: this notebook's graded cells are those of {elsewhere.path.name}, not of lesson "
                f"{lesson}, so it was not graded; grade it with --lesson {lesson_of(elsewhere)}"
            ),
            seconds=round(time.perf_counter() - start, 1),
        )
    if reference is None and not trust_own_checks:
        return Report(
            notebook=shown,
            total=0,
            max=0,
            status=printable(_unmatched_status(references, lesson)),
            seconds=round(time.perf_counter() - start, 1),
        )
    try:
        nb, checks = prepare(notebook if notebook is not None else empty_notebook(), reference)
    except Exception as error:  # a malformed notebook still gets a report
        problem = problem or f"error: malformed notebook ({type(error).__name__}: {str(error)[:150]})"
        nb, checks = prepare(empty_notebook(), reference)
    if problem:
        outcome = {"status": problem, "cells": {}}
    elif not checks:
        outcome = {"status": "ok", "cells": {}}
    else:
        outcome = run_notebook(nb, path.parent, timeout, snapshot, isolation)
    run_status = outcome.get("status") or "error"
    cells = outcome.get("cells", {})
    tasks = [_scored(gid, points, cells.get(str(index)), run_status) for gid, points, index in checks]
    manual = reference.manual if reference else []
    awaiting = [Task(printable(gid), 0, _number(points), AWAITING) for gid, points in manual]
    return Report(
        notebook=shown,
        total=_number(sum(t.points for t in tasks)),
        max=_number(sum(t.max_points for t in tasks)),
        tasks=tasks,
        awaiting=awaiting,
        reference=printable(str(reference.path)) if reference else None,
        status=printable(run_status),
        seconds=round(time.perf_counter() - start, 1),
    )


def printable(text: str) -> str:
    """`text` with control and formatting characters (escape sequences, carriage returns, bidirectional
    overrides, ...) and undecodable bytes of file names shown as escapes, so that it prints as what it is."""
    out = []
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # a byte of a file name that is not UTF-8 (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


def spreadsheet_safe(value: object) -> object:
    """A CSV cell that a spreadsheet shows as text: a leading =, +, -, @, tab or carriage return is escaped
    with a quote (OWASP's advice against formula injection)."""
    if isinstance(value, str) and value.startswith(("=", "+", "-", "@", "\t", "\r")):
        return "'" + value
    return value


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
    """The report as a table for the terminal (every text made printable)."""
    name_width = max([len(t.grade_id) for t in report.tasks + report.awaiting] + [5])
    reference = report.reference or ("none" if not report.tasks else "none: its own check cells")
    lines = [
        f"{printable(report.notebook)}  (reference: {printable(reference)}; {report.seconds:.0f} s; {printable(report.status)})"
    ]
    for task in report.tasks:
        score = f"{_number(task.points)}/{_number(task.max_points)}"
        lines.append(f"  {printable(task.grade_id):<{name_width}}  {score:>7}  {printable(task.message)}")
    lines.append(f"  {'total':<{name_width}}  {f'{_number(report.total)}/{_number(report.max)}':>7}")
    for task in report.awaiting:
        lines.append(f"  {printable(task.grade_id):<{name_width}}  {f'?/{_number(task.max_points)}':>7}  {AWAITING}")
    return "\n".join(lines)


def student_of(notebook: str, folder: str | None) -> str:
    """Whose notebook it is: the first folder below the graded `folder` (submissions/alice/01_x.ipynb ->
    alice), or the notebook's stem when it sits directly in `folder` (or `folder` is None)."""
    path = PurePath(notebook)
    if folder is not None:
        try:
            parts = path.relative_to(folder).parts
        except ValueError:
            parts = ()
        if len(parts) > 1:
            return parts[0]
    return path.stem


def write_gradebook(reports: list[Report], path: Path, folder: str | None = None) -> None:
    """One row per notebook: the student (`student_of` with the graded `folder`) and the notebook, one
    column per check (in order of first appearance), then total, max and status; text cells made safe for
    spreadsheets. Written to a temporary file, then put in place."""
    columns: list[str] = []
    for report in reports:
        for task in report.tasks + report.awaiting:
            if task.grade_id not in columns:
                columns.append(task.grade_id)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([spreadsheet_safe(c) for c in ["student", "notebook", *columns, "total", "max", "status"]])
        for report in reports:
            points = {t.grade_id: _number(t.points) for t in report.tasks}
            points.update({t.grade_id: "pending" for t in report.awaiting})  # a person grades them
            row = [
                student_of(report.notebook, folder),
                report.notebook,
                *(points.get(c, "") for c in columns),
                report.total,
                report.max,
                report.status,
            ]
            writer.writerow([spreadsheet_safe(cell) for cell in row])
    os.replace(partial, path)


def write_json(data, path: Path) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(partial, path)


def journal_path(csv_path: Path) -> Path:
    """Where a folder run appends each report as it finishes (for --resume)."""
    return csv_path.with_name(csv_path.stem + ".progress.jsonl")


def read_journal(path: Path) -> dict[str, Report]:
    """The reports a journal holds, by notebook (a line cut short by an interruption is skipped)."""
    reports = {}
    if not path.exists():
        return reports
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            data = json.loads(line)
            data["tasks"] = [Task(**t) for t in data.get("tasks", [])]
            data["awaiting"] = [Task(**t) for t in data.get("awaiting", [])]
            report = Report(**data)
        except (ValueError, TypeError):
            continue
        reports[report.notebook] = report
    return reports


def failed_report(path: Path, error: BaseException) -> Report:
    return Report(
        notebook=printable(str(path)),
        total=0,
        max=0,
        status=printable(
            f"error: the grader could not grade this notebook ({type(error).__name__}: {str(error)[:200]})"
        ),
    )


def _parser() -> argparse.ArgumentParser:
    """The command line of `pixelcnn-grade PATH`."""
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
        "the notebooks are called; a notebook of another lesson is reported as such",
    )
    parser.add_argument(
        "--memory",
        type=float,
        default=DEFAULT_LIMITS.memory / 2**30,
        help="address space a submission's kernel may use, in GiB (default %(default)g)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="grade only the notebooks of the folder that the journal of an interrupted run lacks",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="notebooks graded at once, each in its own sandbox (default 1); each kernel then gets "
        "max(1, cores // jobs) OpenMP/MKL threads unless OMP_NUM_THREADS is set",
    )
    parser.add_argument(
        "--shard",
        help="K/N: grade only the K-th of N slices of the folder's sorted notebooks (those at positions K, "
        "K+N, K+2N, ...); join the shards' gradebooks with `pixelcnn-grade merge`",
    )
    parser.add_argument(
        "--feedback",
        type=Path,
        help="folder of one feedback file per student (default for a folder: feedback/ beside the CSV; "
        "for a shard: none, the merge writes it)",
    )
    parser.add_argument(
        "--trust-own-checks",
        action="store_true",
        help="grade a notebook that matches no reference by its own check cells (a submission can edit those)",
    )
    parser.add_argument(
        "--unsafe-no-sandbox",
        action="store_true",
        help="run the kernels without a sandbox, as you: a submission can then read your files, start "
        "processes that outlive it and change other submissions' grades (only for submissions you trust)",
    )
    return parser


def _usage_error(args) -> str | None:
    """What is wrong with the command line's values, in one sentence (None when nothing is)."""
    from . import classroom

    if not args.path.exists():
        return f"{printable(str(args.path))} does not exist"
    try:
        shard = classroom.Shard.parse(args.shard) if args.shard is not None else None
    except ValueError as error:
        return str(error)
    if args.jobs < 1:
        return "--jobs takes a positive number of notebooks graded at once"
    if shard is not None and not args.path.is_dir():
        return "--shard splits a folder of notebooks; give a folder"
    if args.reference is not None and not args.reference.is_dir():
        return f"the reference folder {args.reference} does not exist"
    if args.lesson is not None and not (len(args.lesson) == 2 and args.lesson.isdigit()):
        return f"--lesson takes a two-digit lesson number such as 03, not {args.lesson!r}"
    if not args.memory > 0:
        return "--memory takes a positive number of GiB"
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["merge"]:
        from .classroom import merge_main

        return merge_main(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    if args.path is None:
        parser.error("the following arguments are required: path")
    from . import classroom

    problem = _usage_error(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    shard = classroom.Shard.parse(args.shard) if args.shard is not None else None
    notebooks = find_notebooks(args.path)
    if not notebooks:
        print(f"error: no .ipynb notebook in {printable(str(args.path))}", file=sys.stderr)
        return 2
    reference_dir = args.reference if args.reference is not None else default_reference()
    references = load_references(reference_dir)
    if not references and not args.trust_own_checks:
        print(
            f"error: no reference notebooks in {reference_dir}; pass --reference FOLDER (the solved notebooks, "
            "such as the course's solutions/), or --trust-own-checks to grade each notebook by its own check "
            "cells, which a submission can edit",
            file=sys.stderr,
        )
        return 2
    limits = Limits(memory=int(args.memory * 2**30), threads=classroom.job_threads(args.jobs))
    if args.unsafe_no_sandbox:
        isolation = Isolation(None, unsafe=True, limits=limits)
        print("warning: --unsafe-no-sandbox: submissions run as you, without isolation", file=sys.stderr)
    else:
        try:
            isolation = Isolation.sandboxed(limits)
        except SandboxUnavailable as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    snapshot = Snapshot.take()  # the checks and the library as they are now, before any submission runs

    def grade_one(path: Path) -> Report:
        return grade_notebook(
            path,
            references,
            args.timeout,
            lesson=args.lesson,
            trust_own_checks=args.trust_own_checks,
            snapshot=snapshot,
            isolation=isolation,
        )

    return classroom.grade_all(args, notebooks, shard, grade_one)


if __name__ == "__main__":  # python -m coursework.grade: run the module that coursework.classroom imports,
    from coursework.grade import main as module_main  # whose registry of running executors it stops

    sys.exit(module_main())
