"""A real nbgrader round trip: the solved notebooks in solutions/ are nbgrader source notebooks as they are.

For a lesson, a throwaway nbgrader course (in tmp_path, with its own sqlite gradebook) takes the solution
notebook, copied unchanged, as `source/<lesson>/`. nbgrader's own `generate_assignment` makes the student
version (`release/`), and `nbgrader autograde` grades two submissions: the unchanged solution (student
`solved`) must earn every point of the checks, its written answers (the homework's reports) left waiting for a
person, and the generated student version (student `stub`) nothing, with nothing waiting.

What this protects, beyond the course's own grader (tests/test_exercises.py):

- the nbgrader metadata of solutions/ (schema_version, task, grade_ids, points, locked check cells): nbgrader
  refuses or misgrades notebooks whose metadata it does not accept;
- the check cells' contract with nbgrader's grading rule: a check cell earns its points unless it raises or
  writes to stderr (a warning counts), and a value it displays is read as partial credit;
- tools/make_exercises.py: the student cells in exercises/ are exactly those nbgrader generates.

Slow: autograding executes the notebook twice (in fast mode, COURSE_FAST=1), and every nbgrader command
takes seconds to start. By default one lesson runs (02, the fastest to execute, about a minute in all on a
2-core CPU); NBGRADER_LESSONS=all (or a list such as 01,04) selects others.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("nbgrader")

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
DEFAULT_LESSONS = ("02",)
STUDENTS = {"solved": "the unchanged solution", "stub": "the student version nbgrader generated"}
COMMAND_TIMEOUT = 900  # seconds for one nbgrader command (autograde executes the notebook twice)


def selected(solutions=SOLUTIONS):
    """The lesson notebooks to round-trip: DEFAULT_LESSONS, or those NBGRADER_LESSONS names ("all", "01,04")."""
    wanted = os.environ.get("NBGRADER_LESSONS", "").strip()
    if wanted == "all":
        return solutions
    prefixes = tuple(p.strip() for p in wanted.split(",") if p.strip()) or DEFAULT_LESSONS
    return [p for p in solutions if p.name.startswith(prefixes)]


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def nbgrader_env(home: Path) -> dict:
    """The environment of every nbgrader command: no user or site Jupyter configuration, fast mode, the
    virtual environment's scripts first on PATH (nbgrader runs `alembic` from PATH to create its gradebook)
    and the repository importable by the kernel."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "IPYTHON"))}
    env.update(
        HOME=str(home),
        JUPYTER_CONFIG_DIR=str(home / ".jupyter"),
        JUPYTER_DATA_DIR=str(home / "jupyter-data"),
        JUPYTER_RUNTIME_DIR=str(home / "jupyter-runtime"),
        IPYTHONDIR=str(home / ".ipython"),
        COURSE_FAST="1",
        TQDM_DISABLE="1",
        MPLBACKEND="Agg",
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    return env


def nbgrader(course: Path, env: dict, *args: str) -> str:
    """Run `python -m nbgrader ARGS` in the course folder; its output, or a failed assertion showing it.
    On a time-out nbgrader is killed (its kernel, in a session of its own, exits when its parent is gone)."""
    command = [sys.executable, "-m", "nbgrader", *args]
    with subprocess.Popen(
        command,
        cwd=course,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        try:
            output, _ = process.communicate(timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
            pytest.fail(f"`nbgrader {' '.join(args)}` ran over {COMMAND_TIMEOUT} s:\n{tail(output)}")
    assert process.returncode == 0, f"`nbgrader {' '.join(args)}` exited with {process.returncode}:\n{tail(output)}"
    return output


def graded_cells(notebook: dict) -> dict[str, float]:
    """grade_id -> points of the notebook's graded cells (check cells, and answers a person grades)."""
    cells = (c["metadata"].get("nbgrader", {}) for c in notebook["cells"])
    return {m["grade_id"]: float(m["points"]) for m in cells if m.get("grade")}


def manual_cells(notebook: dict) -> set[str]:
    """grade_ids of the answers a person grades (nbgrader: graded and a solution at once, e.g. a report)."""
    cells = (c["metadata"].get("nbgrader", {}) for c in notebook["cells"])
    return {m["grade_id"] for m in cells if m.get("grade") and m.get("solution")}


def cell_outputs(notebook_path: Path, grade_id: str) -> str:
    """What one cell of an autograded notebook showed: its streams, results and errors (for messages)."""
    if not notebook_path.exists():
        return "(no autograded notebook)"
    for cell in json.loads(notebook_path.read_text(encoding="utf-8"))["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == grade_id:
            parts = []
            for out in cell.get("outputs", []):
                if out["output_type"] == "stream":
                    parts.append(f"[{out['name']}] " + "".join(out["text"]).strip())
                elif out["output_type"] == "error":
                    parts.append(f"[error] {out['ename']}: {out['evalue']}")
                else:
                    parts.append(f"[{out['output_type']}] " + "".join(out.get("data", {}).get("text/plain", "")))
            return "\n".join(parts)[-1500:] or "(no output)"
    return "(cell not found)"


@pytest.mark.parametrize("solution", selected(), ids=lambda p: p.stem)
def test_nbgrader_round_trip(solution, tmp_path, monkeypatch):
    from nbgrader.api import Gradebook

    assignment, name = f"lesson{solution.name[:2]}", solution.stem
    notebook = json.loads(solution.read_text(encoding="utf-8"))
    points = graded_cells(notebook)
    manual = manual_cells(notebook)
    assert points, f"{solution.name} has no graded cells"

    course = tmp_path / "course"
    (course / "source" / assignment).mkdir(parents=True)
    (course / "source" / assignment / solution.name).write_bytes(solution.read_bytes())
    db_url = f"sqlite:///{course / 'gradebook.db'}"
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(course)!r}\n"
        f"c.CourseDirectory.db_url = {db_url!r}\n"
        "c.Execute.timeout = 600  # per cell; nbgrader's default, 30 s, is too short for a busy 2-core CPU\n",
        encoding="utf-8",
    )
    env = nbgrader_env(tmp_path / "home")
    monkeypatch.setenv("PATH", env["PATH"])  # a new gradebook runs `alembic` (from PATH) for its schema version
    with Gradebook(db_url) as gradebook:  # in process: each nbgrader command takes seconds to start
        gradebook.add_assignment(assignment)
        for student in STUDENTS:
            gradebook.add_student(student)

    nbgrader(course, env, "generate_assignment", assignment)

    released = course / "release" / assignment / solution.name
    assert released.exists(), f"generate_assignment wrote no {released.relative_to(course)}"
    release_cells = json.loads(released.read_text(encoding="utf-8"))["cells"]
    exercise = ROOT / "exercises" / solution.name
    exercise_cells = json.loads(exercise.read_text(encoding="utf-8"))["cells"]
    ours = [(c["metadata"]["nbgrader"]["grade_id"], "".join(c["source"])) for c in exercise_cells]
    theirs = [(c["metadata"]["nbgrader"]["grade_id"], "".join(c["source"])) for c in release_cells]
    differ = [gid for (gid, a), (_, b) in zip(ours, theirs) if a != b]
    assert len(ours) == len(theirs) and not differ, (
        f"exercises/{solution.name} is not the student version nbgrader generates "
        f"({len(ours)} vs {len(theirs)} cells; cells that differ: {differ})"
    )

    for student, version in (("solved", solution), ("stub", released)):
        folder = course / "submitted" / student / assignment
        folder.mkdir(parents=True)
        (folder / solution.name).write_bytes(version.read_bytes())
    log = nbgrader(course, env, "autograde", assignment)

    with Gradebook(db_url) as gradebook:
        scores = {}
        for student in STUDENTS:
            submitted = gradebook.find_submission_notebook(name, assignment, student)
            grades = {g.name: (g.score, g.max_score, g.needs_manual_grade) for g in submitted.grades}
            scores[student] = (submitted.score, submitted.max_score, grades)

    for student, (score, max_score, grades) in scores.items():
        autograded = course / "autograded" / student / assignment / solution.name
        assert set(grades) == set(points), f"{student}: the gradebook's graded cells {sorted(grades)}"
        assert max_score == sum(points.values()), f"{student}: max_score {max_score}, points {points}"
        # a written answer awaits a person; an answer left as released scores 0 without one
        waiting = {g for g, (_, _, needs_person) in grades.items() if needs_person}
        assert waiting == (manual if student == "solved" else set()), f"{student}: awaiting a person: {waiting}"
        expected = {g: (p if student == "solved" else 0.0) for g, p in points.items() if g not in waiting}
        wrong = {g: s for g, (s, _, _) in grades.items() if g not in waiting and s != expected[g]}
        details = "\n".join(f"--- {g}: {s} of {points[g]}\n{cell_outputs(autograded, g)}" for g, s in wrong.items())
        assert not wrong and score == sum(expected.values()), (
            f"{STUDENTS[student]} scored {score} of {max_score} under nbgrader autograde:\n{details}\n"
            f"--- nbgrader's log:\n{tail(log, 20)}"
        )
