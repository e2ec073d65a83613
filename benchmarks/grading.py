"""Grading a class with `pixelcnn-grade`: the wall time of a folder of lesson-02 submissions graded one at a
time (``--jobs 1``) and two at a time (``--jobs 2``) through the real command line, each run in a fresh
process, and whether both wrote the same gradebook. Also where one submission's time goes (`--breakdown`).
Prints a table, writes a JSON.

    .venv/bin/python -m benchmarks.grading                  # 60 submissions, about 10 minutes on 2 cores
    .venv/bin/python -m benchmarks.grading --count 6        # a quick check of the script
    .venv/bin/python -m benchmarks.grading --jobs 1 2 4 --fast

The class (in a temporary folder): --count students, each with one copy of lesson 02, in turn the solved
notebook (full marks), the solved notebook with its second task left undone (partial) and the exercise
(empty). Each row: the class's wall time, notebooks per minute, and the median and maximum of the
per-notebook ``seconds`` in the JSON report (a notebook's wall time, sandbox to teardown). The breakdown
grades the full-marks notebook --repeats times in this process (`coursework.grade.run_notebook`, with and
without COURSE_FAST) and reports the median seconds of each phase: sandbox setup, executor start, kernel
start, each cell, kernel stop, executor exit, teardown. Leave the machine otherwise idle: the load average
is stored beside the numbers. Needs bubblewrap (as the grader does).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from benchmarks.common import RESULTS, table

ROOT = Path(__file__).resolve().parents[1]

LESSON = "02_masked_convolutions.ipynb"
UNDONE = "t02_conv"  # the task a partial submission leaves as the exercise gives it
KINDS = ("full", "partial", "empty")


def loadavg():
    try:
        return Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        return None


def partial_submission():
    """The solved lesson 02 with the task UNDONE as the exercise gives it."""
    solved = nbformat.read(ROOT / "solutions" / LESSON, as_version=4)
    exercise = nbformat.read(ROOT / "exercises" / LESSON, as_version=4)
    stubs = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in exercise.cells}
    solved.cells = [
        stubs[UNDONE] if c.metadata.get("nbgrader", {}).get("grade_id") == UNDONE else c for c in solved.cells
    ]
    return solved


def make_class(folder: Path, count: int) -> dict:
    """`count` students (student-000, ...), each with one lesson-02 notebook of the kind KINDS[i % 3]."""
    sources = {
        "full": nbformat.read(ROOT / "solutions" / LESSON, as_version=4),
        "partial": partial_submission(),
        "empty": nbformat.read(ROOT / "exercises" / LESSON, as_version=4),
    }
    kinds = {}
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        student = folder / f"student-{i:03d}"
        student.mkdir(parents=True)
        nbformat.write(sources[kind], student / LESSON)
        kinds[student.name] = kind
    return kinds


def grade_class(folder: Path, out: Path, jobs: int, env: dict, timeout: float) -> dict:
    """One run of the real command line over `folder`; its wall time and per-notebook seconds."""
    out.mkdir(parents=True)
    command = [sys.executable, "-m", "coursework.grade", str(folder), "--jobs", str(jobs)]
    command += ["--csv", str(out / "grades.csv"), "--json", str(out / "report.json"), "--timeout", str(timeout)]
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=out)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"pixelcnn-grade --jobs {jobs} failed:\n{result.stderr[-2000:]}")
    reports = json.loads((out / "report.json").read_text(encoding="utf-8"))
    seconds = [r["seconds"] for r in reports]
    return dict(
        jobs=jobs,
        notebooks=len(reports),
        wall_s=round(wall, 1),
        notebooks_per_min=round(60 * len(reports) / wall, 1),
        median_notebook_s=statistics.median(seconds),
        max_notebook_s=max(seconds),
        points=sum(r["total"] for r in reports),
        statuses=sorted({r["status"] for r in reports}),
        load_after=loadavg(),
    )


def breakdown(repeats: int, fast: bool) -> dict:
    """Median seconds of each phase of grading the full-marks notebook (see the module docstring)."""
    from coursework import grade, notebooks
    from coursework.sandbox import Snapshot

    os.environ.pop("COURSE_FAST", None)
    if fast:
        os.environ["COURSE_FAST"] = "1"
    path = ROOT / "solutions" / LESSON
    submitted = notebooks.read_notebook(path)
    reference = notebooks.match_reference(path, submitted, notebooks.load_references(ROOT / "solutions"))
    nb, _ = notebooks.prepare(submitted, reference)
    snapshot, isolation = Snapshot.take(), grade.default_isolation()
    runs = []
    with tempfile.TemporaryDirectory(prefix="grading-breakdown-") as empty:
        for _ in range(repeats):
            start = time.perf_counter()
            outcome = grade.run_notebook(nb, Path(empty), 900, snapshot, isolation)
            total = time.perf_counter() - start
            if outcome["status"] != "ok":
                raise SystemExit(f"the breakdown run ended with {outcome['status']}")
            cells = {
                notebooks.grade_id(nb.cells[int(index)]) or f"cell {index}": record["seconds"]
                for index, record in outcome["cells"].items()
            }
            runs.append(dict(total=total, **outcome["timing"], **{f"cell {k}": v for k, v in cells.items()}))
    return {key: round(statistics.median(run[key] for run in runs), 3) for key in runs[0]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--count", type=int, default=60, help="submissions in the class (default 60)")
    p.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="the --jobs values to time (default 1 2)")
    p.add_argument("--fast", action="store_true", help="grade with COURSE_FAST=1 (as the tests do)")
    p.add_argument("--timeout", type=float, default=900, help="pixelcnn-grade --timeout, seconds per notebook")
    p.add_argument("--repeats", type=int, default=3, help="runs of the breakdown (median)")
    p.add_argument("--no-breakdown", action="store_true", help="skip the per-phase breakdown")
    p.add_argument("--out", default=str(RESULTS / "grading.json"))
    args = p.parse_args(argv)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}
    env.update(TQDM_DISABLE="1", PYTHONPATH=str(ROOT))
    env.pop("COURSE_FAST", None)
    if args.fast:
        env["COURSE_FAST"] = "1"
    load_before = loadavg()
    runs, rows = [], []
    with tempfile.TemporaryDirectory(prefix="grading-bench-") as tmp:
        folder = Path(tmp) / "submissions"
        kinds = make_class(folder, args.count)
        for jobs in args.jobs:
            run = grade_class(folder, Path(tmp) / f"jobs-{jobs}", jobs, env, args.timeout)
            runs.append(run)
            rows.append(
                [
                    jobs,
                    run["notebooks"],
                    f"{run['wall_s']:.0f}",
                    f"{run['notebooks_per_min']:.1f}",
                    f"{run['median_notebook_s']:.1f}",
                    f"{run['max_notebook_s']:.1f}",
                ]
            )
        gradebooks = {jobs: (Path(tmp) / f"jobs-{jobs}" / "grades.csv").read_bytes() for jobs in args.jobs}
        identical = len(set(gradebooks.values())) == 1
        shutil.rmtree(folder, ignore_errors=True)
    header = ["--jobs", "notebooks", "wall (s)", "notebooks/min", "median notebook (s)", "max notebook (s)"]
    text = table(header, rows)
    print(f"gradebooks identical across --jobs {args.jobs}: {identical}")
    phases = {}
    if not args.no_breakdown:
        for fast in (True, False):
            phases["COURSE_FAST=1" if fast else "full mode"] = breakdown(args.repeats, fast)
        for mode, values in phases.items():
            print(f"\nwhere one full-marks notebook's time goes ({mode}, median of {args.repeats}, seconds):")
            table(["phase", "s"], [[k, f"{v:.3f}"] for k, v in values.items()])
    from course_lib.benchmark import machine

    payload = dict(
        machine=machine("cpu"),
        cores_available=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        load_average=dict(before=load_before, after=loadavg()),
        settings=vars(args),
        class_kinds={kind: sum(k == kind for k in kinds.values()) for kind in KINDS},
        runs=runs,
        gradebooks_identical=identical,
        breakdown=phases,
        table=text,
    )
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}")
    if not identical:
        raise SystemExit("the gradebooks differ between --jobs values")


if __name__ == "__main__":
    main()
