"""Grading a class: several notebooks at once, a class split over machines, and a feedback file per student.

`grade_all` is what ``pixelcnn-grade PATH`` runs once its options are checked (`coursework.grade.main`):

- ``--jobs N`` grades N notebooks at once, from N threads of the grader; each notebook still runs in its own
  executor process and sandbox (`coursework.grade.run_notebook`), and each kernel gets ``max(1, cores // N)``
  OpenMP/MKL threads (`job_threads`) so that N kernels do not fight over the cores. The reports, gradebook and
  JSON come out as a one-at-a-time run writes them: in the order of the sorted notebooks.
- The journal (`Journal`: the CSV's name with ``.progress.jsonl``) gets one line per graded notebook, appended
  under one lock and flushed to disk, after a first line saying which slice of which folder it holds.
  ``--resume`` grades what it lacks. Ctrl-C (or a KeyboardInterrupt) stops every running kernel and writes
  what was graded; a notebook that crashes the grader gets an error report and costs no one else anything.
- ``--shard K/N`` grades the notebooks at positions K, K+N, K+2N, ... (counting from 1) of the folder's sorted
  notebooks (`Shard`), and ``pixelcnn-grade merge`` (`merge_main`) joins the shards' journals into the
  gradebook one run over the whole folder writes. It refuses when a shard is missing, given twice, unfinished
  or from another split. On a Slurm cluster, as a job array::

      #!/bin/bash
      #SBATCH --array=1-10
      #SBATCH --cpus-per-task=2
      #SBATCH --time=02:00:00
      pixelcnn-grade submissions/ --shard $SLURM_ARRAY_TASK_ID/10 --csv grades-$SLURM_ARRAY_TASK_ID.csv

  then, once the ten have finished (e.g. ``sbatch --dependency=afterok:JOBID``)::

      pixelcnn-grade merge grades-*.csv --csv grades.csv --json grades.json

- ``--feedback DIR`` (default for a folder: ``feedback/`` beside the CSV; a shard writes none unless asked, the
  merge does) gets one UTF-8 text file per student (`write_feedback`): per task the points and the check's
  verdict with its hint, the total and the run's status. The student is the first folder below the graded
  folder (``submissions/alice/01_x.ipynb``: alice), or the notebook's stem for a notebook directly in it;
  the file names are made safe (`safe_file_name`) and unique.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import unicodedata
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path, PurePath

from .grade import (
    Report,
    _number,
    failed_report,
    format_report,
    journal_path,
    printable,
    read_journal,
    stop_running,
    student_of,
    write_gradebook,
    write_json,
)

JOURNAL_VERSION = 1


class ClassError(Exception):
    """A class run or a merge that cannot go on; the message is one sentence saying why and what to do."""


# ------------------------------------------------------------------------------- shards and threads
@dataclass(frozen=True)
class Shard:
    """The `index`-th (from 1) of `count` slices of a sorted list: the items at index-1, index-1+count, ..."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """ "K/N" as a shard; ValueError (a sentence for the user) otherwise."""
        k, slash, n = str(text).partition("/")
        try:
            index, count = int(k), int(n)
        except ValueError:
            index = count = 0
        if not slash or not 1 <= index <= count:
            raise ValueError(f"--shard takes K/N with 1 <= K <= N, such as 3/10, not {text!r}")
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def select(self, items: list) -> list:
        return items[self.index - 1 :: self.count]

    def position(self, j: int) -> int:
        """Where the `j`-th item of this slice sits in the whole list."""
        return self.index - 1 + j * self.count


WHOLE = Shard(1, 1)


def available_cores() -> int:
    """The cores this process may keep busy: its CPU affinity (which Slurm and taskset set), no more than its
    CPU quota (a container's or a hub's; `course_lib.device.cpu_threads`)."""
    from course_lib.device import cpu_threads

    return cpu_threads()


def job_threads(jobs: int, environ=None) -> int:
    """OpenMP/MKL threads for each kernel when `jobs` notebooks are graded at once: an equal share of the cores,
    at least 1. 0 (leave the kernels' own choice, or OMP_NUM_THREADS, alone) for one job or when
    OMP_NUM_THREADS is set."""
    environ = os.environ if environ is None else environ
    if jobs <= 1 or environ.get("OMP_NUM_THREADS", "").strip():
        return 0
    return max(1, available_cores() // jobs)


# ------------------------------------------------------------------------------- the journal
def read_header(path: Path) -> dict | None:
    """The last header line of a journal (which slice of which folder it holds), or None."""
    header = None
    if not path.exists():
        return None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("journal"), dict):
            header = data["journal"]
    return header


class Journal:
    """A folder run's journal: a header line, then one report per line as each notebook finishes (for
    ``--resume`` and ``merge``). Lines are appended under one lock and flushed to disk one at a time."""

    def __init__(self, path: Path, shard: Shard, folder: str, class_size: int, notebooks: list[str]):
        self.path = path
        self.header = dict(
            version=JOURNAL_VERSION, shard=str(shard), folder=folder, class_size=class_size, notebooks=notebooks
        )
        self.lock = threading.Lock()

    def start(self, resume: bool) -> dict[str, Report]:
        """Start afresh, or (`resume`) keep the reports already there; raises ClassError when the journal
        holds another slice, or another version of this slice, of the class."""
        if not resume:
            self.path.write_text("", encoding="utf-8")
            self._write({"journal": self.header})
            return {}
        before = read_header(self.path)
        if before is not None and before.get("shard") != self.header["shard"]:
            raise ClassError(
                f"{self.path} holds shard {before.get('shard')}, not {self.header['shard']}: resume with "
                f"--shard {before.get('shard')}, or grade shard {self.header['shard']} into another --csv"
            )
        if before is not None and self.header["shard"] != str(WHOLE) and before != self.header:
            raise ClassError(
                f"the folder changed since shard {self.header['shard']} was started ({before.get('class_size')} "
                f"notebooks then, {self.header['class_size']} now): grade the shards again without --resume"
            )
        if before != self.header:
            self._write({"journal": self.header})
        return read_journal(self.path)

    def append(self, report: Report) -> None:
        with self.lock:
            self._write(report.to_dict())

    def _write(self, data: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(data, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


# ------------------------------------------------------------------------------- grading in threads
def grade_in_threads(todo: list[tuple[int, Path]], grade_one: Callable, jobs: int, record: Callable) -> bool:
    """Grade each (position, path) of `todo` with `grade_one`, `jobs` at a time, and hand each report to
    `record(position, report)` (called from the grading threads). A notebook whose grading raises gets an
    error report. Ctrl-C (or a KeyboardInterrupt from `grade_one`) stops the run: no new notebook starts,
    the running executors are killed and their notebooks are not recorded. SIGTERM (what Slurm sends at the
    end of a job's time) counts as Ctrl-C (`_stop_on_signals`). True when interrupted."""
    stop, interrupted = threading.Event(), threading.Event()

    def work(position: int, path: Path) -> None:
        if stop.is_set():
            return
        try:
            report = grade_one(path)
        except KeyboardInterrupt:
            interrupted.set()
            stop.set()
            return
        except Exception as error:  # one notebook never stops the class
            report = failed_report(path, error)
        if not stop.is_set():  # a notebook stopped by an interruption is graded again on --resume
            record(position, report)

    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="pixelcnn-grade")
    futures: list = []
    previous = _stop_on_signals(stop, interrupted)
    try:
        futures = [pool.submit(work, position, path) for position, path in todo]
        pending = set(futures)
        while pending and not stop.is_set():
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in finished:
                future.result()  # a failure to record (a full disk, ...) stops the run
    except KeyboardInterrupt:  # where no handler could be installed (not the main thread)
        interrupted.set()
    finally:
        stop.set()
        for future in futures:
            future.cancel()
        stop_running()  # kills only executors still running: none after a run that finished
        pool.shutdown(wait=True)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return interrupted.is_set()


def _stop_on_signals(stop: threading.Event, interrupted: threading.Event) -> dict:
    """Make Ctrl-C (SIGINT) and SIGTERM set `interrupted` and `stop` instead of raising KeyboardInterrupt in
    the middle of whatever the main thread is doing (inside `concurrent.futures.wait` that can leave a
    future's lock held, and the run would then never end); the main loop sees `stop` within half a second.
    Returns the handlers replaced ({} outside the main thread, where signals cannot be handled)."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def on_signal(signum, frame):
        interrupted.set()
        stop.set()

    return {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}


def write_outputs(
    reports: list[Report], json_path: Path | None, gradebook: Path | None, folder: str | None, folder_run: bool
) -> None:
    """The JSON report (a list for a folder, else one object) and the CSV gradebook, where asked for."""
    if json_path:
        write_json([r.to_dict() for r in reports] if folder_run else reports[0].to_dict(), json_path)
    if gradebook is not None:
        write_gradebook(reports, gradebook, folder)


def grade_all(args, notebooks: list[Path], shard: Shard | None, grade_one: Callable[[Path], Report]) -> int:
    """Grade `notebooks` (all a folder holds, sorted, or one notebook) as the command line `args` say: the
    slice `shard`, `args.jobs` at a time, with journal, gradebook, JSON and feedback. The exit code."""
    folder_run = args.path.is_dir()
    folder = printable(str(args.path)) if folder_run else None
    selected = (shard or WHOLE).select(notebooks)
    names = [printable(str(path)) for path in selected]
    gradebook = args.csv or (Path("grades.csv") if folder_run else None)
    feedback = args.feedback or (gradebook.parent / "feedback" if folder_run and shard is None else None)
    journal, done = None, {}
    for output in (gradebook, args.json):
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
    if folder_run:
        journal = Journal(journal_path(gradebook), shard or WHOLE, folder, len(notebooks), names)
        try:
            done = journal.start(args.resume)
        except ClassError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    if shard is not None:
        print(f"shard {shard}: {len(selected)} of the {len(notebooks)} notebooks in {folder}", flush=True)
    results: list[Report | None] = [done.get(name) for name in names]
    taken = sum(r is not None for r in results)
    lock = threading.Lock()

    def record(position: int, report: Report) -> None:
        with lock:
            results[position] = report
            if journal is not None:
                journal.append(report)
            print(format_report(report), flush=True)
            if folder_run:
                write_outputs([r for r in results if r is not None], args.json, gradebook, folder, folder_run)

    todo = [(position, path) for position, path in enumerate(selected) if results[position] is None]
    interrupted = grade_in_threads(todo, grade_one, args.jobs, record)
    reports = [r for r in results if r is not None]
    if taken:
        print(f"{taken} notebooks taken from {printable(str(journal.path))} (--resume)")
    _finish(reports, args.json, gradebook, feedback, folder, folder_run)
    if interrupted:
        print(f"interrupted: {len(reports)} of {len(selected)} notebooks graded; finish with --resume", file=sys.stderr)
        return 130
    return 0


def _finish(reports: list[Report], json_path, gradebook, feedback, folder, folder_run: bool) -> None:
    """The class's total, then its gradebook, JSON and feedback files, each named once written."""
    if len(reports) > 1 or folder_run:
        total, top = sum(r.total for r in reports), sum(r.max for r in reports)
        print(f"{len(reports)} notebooks graded; {_number(total)}/{_number(top)} points in all")
    if reports:
        write_outputs(reports, json_path, gradebook, folder, folder_run)
    if gradebook is not None:
        print(f"gradebook: {printable(str(gradebook))}")
    if feedback is not None and reports:
        count = write_feedback(reports, folder, feedback)
        print(f"feedback: {count} files in {printable(str(feedback))}")


# ------------------------------------------------------------------------------- feedback files
RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{k}" for k in range(1, 10)), *(f"LPT{k}" for k in range(1, 10))}


def safe_file_name(name: str, limit: int = 80) -> str:
    """`name` as a file name that is safe everywhere: control and formatting characters removed, letters,
    digits and ``-_.+@=`` kept, everything else (path separators, backslashes, quotes, ...) as ``_``; no
    leading dot, dash or space (not a hidden file, not an option), no trailing dot or space, at most `limit` characters, not a Windows device name
    and never empty."""
    text = unicodedata.normalize("NFC", str(name))
    text = "".join(c for c in text if not unicodedata.category(c).startswith(("C", "Z")) or c == " ")
    text = "".join(c if c.isalnum() or c in "-_.+@= " else "_" for c in text)
    text = text[:limit].lstrip(".- ").rstrip(". ")
    if not text:
        return "student"
    if text.split(".")[0].upper() in RESERVED:
        text = "_" + text
    return text


def feedback_files(students: list[str], suffix: str = ".txt") -> dict[str, str]:
    """A file name for each student: `safe_file_name` plus `suffix`, made unique (also where case is not
    told apart) by ``-2``, ``-3``, ... in the order given."""
    taken: set[str] = set()
    names = {}
    for student in students:
        base = safe_file_name(student)
        name, k = base + suffix, 1
        while name.casefold() in taken:
            k += 1
            name = f"{base}-{k}{suffix}"
        taken.add(name.casefold())
        names[student] = name
    return names


def _shown(notebook: str, folder: str | None) -> str:
    """The notebook's path below the graded folder (the student knows no more of the instructor's folders)."""
    path = PurePath(notebook)
    try:
        return str(path.relative_to(folder)) if folder is not None else path.name
    except ValueError:
        return path.name


def feedback_text(student: str, reports: list[Report], folder: str | None) -> str:
    """What one student gets: per notebook, the run's status, per task the points and the verdict (with the
    check's hint), and the total. Every text made printable."""
    title = f"Feedback for {printable(student)}"
    lines = [title, "=" * len(title)]
    for report in reports:
        lines += ["", f"Notebook: {printable(_shown(report.notebook, folder))}"]
        if report.reference:
            lines.append(f"Graded against: {printable(PurePath(report.reference).stem)}")
        lines += [f"Run: {printable(report.status)}", ""]
        width = max([len(t.grade_id) for t in report.tasks] + [4])
        for task in report.tasks:
            score = f"{_number(task.points)}/{_number(task.max_points)}"
            lines.append(f"  {printable(task.grade_id):<{width}}  {score:>7}  {printable(task.message)}")
        if not report.tasks:
            lines.append("  (no graded task)")
        lines += ["", f"Total: {_number(report.total)}/{_number(report.max)} points"]
    return "\n".join(lines) + "\n"


def write_feedback(reports: list[Report], folder: str | None, target: Path) -> int:
    """One feedback file per student in `target` (made if missing); the number of files written."""
    by_student: dict[str, list[Report]] = {}
    for report in reports:
        by_student.setdefault(student_of(report.notebook, folder), []).append(report)
    names = feedback_files(list(by_student))
    target.mkdir(parents=True, exist_ok=True)
    for student, own in by_student.items():
        path = target / names[student]
        partial = path.with_name(path.name + ".partial")
        partial.write_text(feedback_text(student, own, folder), encoding="utf-8")
        os.replace(partial, path)
    return len(by_student)


# ------------------------------------------------------------------------------- merging shards
def journal_of(path: Path) -> Path:
    """A shard's journal: `path` itself if it is one, else the journal beside the gradebook `path`."""
    return path if path.name.endswith(".progress.jsonl") else journal_path(path)


def _read_shards(journals: list[Path]) -> dict:
    """{shard: (journal path, header)} of the journals; ClassError when one is missing, unnamed or given twice."""
    shards: dict[Shard, tuple[Path, dict]] = {}
    for path in journals:
        if not path.is_file():
            raise ClassError(f"{path} does not exist: a shard's journal lies beside its gradebook, with its name")
        header = read_header(path)
        try:
            shard = Shard.parse(header["shard"]) if header else None
        except (ValueError, KeyError, TypeError):
            shard = None
        if shard is None:
            raise ClassError(f"{path} does not say which shard it holds: grade it again with this pixelcnn-grade")
        if shard in shards:
            raise ClassError(f"shard {shard} is given twice ({shards[shard][0]} and {path}): pass each shard once")
        shards[shard] = (path, header)
    return shards


def merge_shards(journals: list[Path]) -> tuple[str | None, list[Report]]:
    """The graded folder and every report of the class, in the order one run over the whole folder gives,
    from the journals of all the shards of one ``--shard K/N`` split; ClassError (one sentence) when a shard is
    missing, given twice, unfinished, from another split or of another folder."""
    shards = _read_shards(journals)
    if not shards:
        raise ClassError("no gradebook to merge: pass the gradebooks of every shard")
    splits = sorted({s.count for s in shards})
    if len(splits) > 1:
        raise ClassError(f"the gradebooks come from different splits (into {splits} shards): merge one split")
    classes = {(h.get("folder"), h.get("class_size")) for _, h in shards.values()}
    if len(classes) > 1:
        raise ClassError(f"the shards graded different folders or versions of a folder ({sorted(map(str, classes))})")
    count = splits[0]
    missing = [f"{k}/{count}" for k in range(1, count + 1) if Shard(k, count) not in shards]
    if missing:
        raise ClassError(f"shard {', '.join(missing)} is missing: pass the gradebooks of all {count} shards")
    folder, size = classes.pop()
    merged: list[Report | None] = [None] * int(size)
    for shard, (path, header) in sorted(shards.items(), key=lambda item: item[0].index):
        reports, names = read_journal(path), header.get("notebooks") or []
        lacking = sum(name not in reports for name in names)
        if lacking or len(names) != len(shard.select(merged)):
            raise ClassError(
                f"shard {shard} ({path}) is unfinished ({len(names) - lacking} of its "
                f"{len(shard.select(merged))} notebooks graded): finish it with --resume"
            )
        for j, name in enumerate(names):
            merged[shard.position(j)] = reports[name]
    return folder, merged


def merge_main(argv: list[str]) -> int:
    """``pixelcnn-grade merge GRADEBOOK ... [--csv FILE] [--json FILE] [--feedback DIR]``."""
    parser = argparse.ArgumentParser(
        prog="pixelcnn-grade merge",
        description="Join the gradebooks of the shards of one class (pixelcnn-grade FOLDER --shard K/N --csv "
        "grades-K.csv) into the gradebook one run over the whole folder writes: the same rows in the same "
        "order, from the reports in the shards' journals (each gradebook's name with .progress.jsonl).",
    )
    parser.add_argument("gradebooks", nargs="+", type=Path, help="every shard's CSV gradebook (or its journal)")
    parser.add_argument("--csv", type=Path, default=Path("grades.csv"), help="the merged gradebook (grades.csv)")
    parser.add_argument("--json", type=Path, help="also write the merged report as JSON (a list)")
    parser.add_argument("--feedback", type=Path, help="folder of feedback files (default: feedback/ beside the CSV)")
    args = parser.parse_args(argv)
    inputs = {p.resolve() for p in args.gradebooks}
    if args.csv.resolve() in inputs or journal_path(args.csv).resolve() in inputs:
        print(f"error: the merged gradebook {args.csv} would replace a shard's; choose another --csv", file=sys.stderr)
        return 2
    try:
        folder, reports = merge_shards([journal_of(p) for p in args.gradebooks])
    except ClassError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for output in (args.csv, args.json):
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
    write_outputs(reports, args.json, args.csv, folder, folder_run=True)
    feedback = args.feedback or args.csv.parent / "feedback"
    count = write_feedback(reports, folder, feedback)
    total, top = sum(r.total for r in reports), sum(r.max for r in reports)
    print(f"{len(args.gradebooks)} shards merged: {len(reports)} notebooks; {_number(total)}/{_number(top)} points")
    print(f"gradebook: {printable(str(args.csv))}\nfeedback: {count} files in {printable(str(feedback))}")
    return 0
