"""The graded exercises: exercises/ is exactly what `make exercises` generates from solutions/, every cell
carries nbgrader metadata, and the autograder gives the solutions full marks and the exercises zero.

The grading tests grade every solution and every exercise notebook once, in fast mode and two at a time
(about a minute in all on two cores); deselect them with `-k "not scores"` when iterating on something
else. Tests that need the lesson notebooks are skipped while solutions/ holds none."""

import ast
import difflib
import os
import re
from pathlib import Path

import jupytext
import nbformat
import pytest
import torch
from sandbox_support import require_sandbox

from coursework import classroom, grade
from tools import make_exercises

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.py"))
NO_SOLUTIONS = "solutions/ holds no lesson notebooks yet (solutions/NN_<name>.py)"
needs_solutions = pytest.mark.skipif(not SOLUTIONS, reason=NO_SOLUTIONS)
NBGRADER_KEYS = {"grade", "grade_id", "locked", "schema_version", "solution", "task"}


def lessons(items=SOLUTIONS):
    """Parametrize over the lesson notebooks; a single skipped case while there are none."""
    return pytest.mark.parametrize(
        "source",
        items or [pytest.param(None, marks=pytest.mark.skip(reason=NO_SOLUTIONS))],
        ids=lambda p: p.stem if p else "none",
    )


# ------------------------------------------------------------------------------------ the generator
def test_solution_block_becomes_the_stub_at_its_indentation():
    source = 'def f(x):\n    """Doc."""\n    ### BEGIN SOLUTION\n    y = x + 1\n    return y\n    ### END SOLUTION\n'
    assert make_exercises.strip_solution(source) == (
        'def f(x):\n    """Doc."""\n    # YOUR CODE HERE\n    raise NotImplementedError()\n'
    )
    assert (
        make_exercises.strip_solution("### BEGIN SOLUTION\nx = 1\n### END SOLUTION")
        == "# YOUR CODE HERE\nraise NotImplementedError()"
    )


def test_several_blocks_hidden_tests_and_markdown():
    source = "a = 1\n### BEGIN SOLUTION\nb = 2\n### END SOLUTION\nc = 3\n### BEGIN SOLUTION\nd = 4\n### END SOLUTION"
    assert make_exercises.strip_solution(source).count("raise NotImplementedError()") == 2
    hidden = "check(f)\n### BEGIN HIDDEN TESTS\nassert f(2) == 3\n### END HIDDEN TESTS\nprint('done')"
    assert make_exercises.strip_solution(hidden) == "check(f)\nprint('done')"
    answer = "Why?\n\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION"
    assert make_exercises.strip_solution(answer, "markdown") == "Why?\n\nYOUR ANSWER HERE"


@pytest.mark.parametrize(
    "source",
    [
        "### BEGIN SOLUTION\nx = 1",
        "x = 1\n### END SOLUTION",
        "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION",
    ],
)
def test_unbalanced_markers_are_errors(source):
    with pytest.raises(make_exercises.ExerciseError):
        make_exercises.strip_solution(source)


TOY = """# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# # Toy

# %% nbgrader={"grade": false, "grade_id": "t00_f", "locked": false, "schema_version": 3, "solution": true, "task": false}
def f(x):
    ### BEGIN SOLUTION
    return x + 1
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "t00_f_check", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert f(1) == 2
"""


def test_generation_is_deterministic_and_check_mode_names_the_file(tmp_path, capsys):
    (tmp_path / "solutions").mkdir()
    (tmp_path / "solutions" / "00_toy.py").write_text(TOY)
    assert make_exercises.main(["--root", str(tmp_path)]) == 0
    first = {p.name: p.read_text() for p in (tmp_path / "exercises").iterdir()}
    assert set(first) == {"00_toy.py", "00_toy.ipynb"}
    assert "return x + 1" not in first["00_toy.py"] and "raise NotImplementedError()" in first["00_toy.py"]
    assert '"grade_id": "t00_f_check"' in first["00_toy.ipynb"] and '"outputs": []' in first["00_toy.ipynb"]
    assert make_exercises.main(["--root", str(tmp_path)]) == 0
    assert {p.name: p.read_text() for p in (tmp_path / "exercises").iterdir()} == first
    assert make_exercises.main(["--root", str(tmp_path), "--check"]) == 0
    (tmp_path / "exercises" / "00_toy.ipynb").write_text(first["00_toy.ipynb"].replace("NotImplementedError", "Oops"))
    capsys.readouterr()
    assert make_exercises.main(["--root", str(tmp_path), "--check"]) == 1
    assert "exercises/00_toy.ipynb differs" in capsys.readouterr().out
    notebook = jupytext.read(tmp_path / "exercises" / "00_toy.py")
    assert [c.metadata["nbgrader"]["grade_id"] for c in notebook.cells] == ["intro", "t00_f", "t00_f_check"]


# ------------------------------------------------------------------------------- the committed lessons
@needs_solutions
def test_committed_exercises_are_what_make_exercises_generates():
    problems = make_exercises.check(ROOT)
    assert not problems, "\n".join(problems) + "\nrun `make exercises`"


@lessons()
def test_solution_cells_carry_nbgrader_metadata(source):
    cells = jupytext.read(source).cells
    ids = []
    for number, cell in enumerate(cells, 1):
        data = cell.metadata.get("nbgrader")
        assert isinstance(data, dict) and NBGRADER_KEYS <= set(data), f"cell {number} lacks nbgrader metadata"
        ids.append(data["grade_id"])
        if data["grade"] and data["solution"]:  # a written answer a person grades (nbgrader's manual grading)
            assert cell.cell_type == "markdown" and not data["locked"], f"written answer {number}"
            assert isinstance(data.get("points"), (int, float)) and data["points"] > 0, f"cell {number} has no points"
            assert "### BEGIN SOLUTION" in cell.source, f"written answer {number} needs a model answer"
            continue
        if data["grade"]:
            assert cell.cell_type == "code" and data["locked"] and not data["solution"], f"check cell {number}"
            assert data["grade_id"].endswith("_check"), f"check cell {number}: grade_id must end in _check"
            assert isinstance(data.get("points"), (int, float)) and data["points"] > 0, f"cell {number} has no points"
        else:
            assert not data["grade_id"].endswith("_check"), f"cell {number} is named like a check but has no points"
        if data["solution"]:
            assert "### BEGIN SOLUTION" in cell.source and not data["locked"], f"solution cell {number}"
            following = cells[number] if number < len(cells) else None
            assert following is not None and following.metadata["nbgrader"]["grade"], (
                f"solution cell {number} ({data['grade_id']}) must be followed by its check cell"
            )
        else:
            assert "### BEGIN SOLUTION" not in cell.source, f"cell {number} has a solution block but solution=false"
    assert len(ids) == len(set(ids)), f"duplicate grade_ids: {sorted({i for i in ids if ids.count(i) > 1})}"
    tasks = sum(bool(c.metadata["nbgrader"]["grade"]) and not c.metadata["nbgrader"]["solution"] for c in cells)
    assert 3 <= tasks <= 6, f"{tasks} graded tasks; the course asks for three to six per lesson"


@lessons()
def test_exercises_hide_every_solution(source):
    exercise = ROOT / "exercises" / source.name
    assert exercise.exists(), "run `make exercises`"
    text = exercise.read_text()
    assert "### BEGIN SOLUTION" not in text and "### END SOLUTION" not in text
    cells = jupytext.read(exercise.with_suffix(".ipynb")).cells
    for cell in cells:
        if cell.metadata["nbgrader"]["solution"] and cell.cell_type == "code":
            assert "raise NotImplementedError()" in cell.source
        assert not cell.get("outputs"), "exercise notebooks are committed without outputs"


# ------------------------------------------------------------------------------- grading (slow)
@pytest.fixture(scope="module")
def graded():
    """Every solution and every exercise notebook graded in fast mode, two at a time (as `pixelcnn-grade
    --jobs 2` grades a class: each kernel with its share of the cores): {(folder, lesson): report}."""
    require_sandbox()  # the grader grades in a bubblewrap sandbox
    references = grade.load_references(ROOT / "solutions")
    isolation = grade.Isolation.sandboxed(grade.Limits(threads=classroom.job_threads(2)))
    snapshot = grade.Snapshot.take()  # the checks and the library as they are, taken once as a class run does
    todo = [(folder, s.stem) for s in SOLUTIONS for folder in ("solutions", "exercises")]
    reports = {}

    def grade_one(path):
        return grade.grade_notebook(path, references, timeout=600, snapshot=snapshot, isolation=isolation)

    def record(position, report):
        reports[todo[position]] = report

    with pytest.MonkeyPatch.context() as env:
        env.setenv("COURSE_FAST", "1")
        env.setenv("TQDM_DISABLE", "1")
        paths = [(k, ROOT / folder / f"{stem}.ipynb") for k, (folder, stem) in enumerate(todo)]
        assert not classroom.grade_in_threads(paths, grade_one, 2, record), "grading was interrupted"
    return reports


@lessons()
def test_solution_scores_full_points(source, graded):
    report = graded["solutions", source.stem]
    assert report.reference is not None and Path(report.reference).stem == source.stem
    assert report.max > 0 and report.total == report.max, grade.format_report(report)
    assert report.status == "ok", grade.format_report(report)
    assert all(t.message.startswith("✓") for t in report.tasks), grade.format_report(report)


@lessons()
def test_exercise_scores_zero_without_crashing(source, graded):
    assert (ROOT / "exercises" / f"{source.stem}.ipynb").exists(), "run `make exercises`"
    report = graded["exercises", source.stem]
    assert report.max > 0 and report.total == 0, grade.format_report(report)
    assert report.status == "ok", grade.format_report(report)
    assert all(t.message and not t.message.startswith(("not executed", "time limit")) for t in report.tasks), (
        grade.format_report(report)
    )


# ------------------------------------------------------------------- the lessons' Exercises paragraphs
LESSONS = [p for p in SOLUTIONS if (ROOT / "notebooks" / p.name).exists()]
NO_LESSONS = "no lesson notebook in notebooks/ has an exercise notebook"
_CODE_SPAN = re.compile(r"`([^`\n]+)`")
_CALL = re.compile(r"([A-Za-z_][\w.]*)\s*\(")


def with_lessons(items=LESSONS):
    return pytest.mark.parametrize(
        "source",
        items or [pytest.param(None, marks=pytest.mark.skip(reason=NO_LESSONS))],
        ids=lambda p: p.stem if p else "none",
    )


def _exercise(source):
    """The committed exercise notebook of a solution, and its path in the repository."""
    relative = f"exercises/{source.stem}.ipynb"
    assert (ROOT / relative).exists(), "run `make exercises`"
    return jupytext.read(ROOT / relative), relative


def _paragraph(source):
    lesson = jupytext.read(ROOT / "notebooks" / source.name)
    cells = [c.source for c in lesson.cells if c.cell_type == "markdown" and c.source.startswith("## Exercises")]
    assert len(cells) == 1, (
        f"notebooks/{source.name} needs one markdown cell starting with `## Exercises`: run `make exercises`"
    )
    return cells[0]


TOY_TASKS = TOY.replace(
    "# # Toy\n",
    "# # Toy\n\n"
    '# %% [markdown] nbgrader={"grade": false, "grade_id": "task1_text", "locked": true, "schema_version": 3, '
    '"solution": false, "task": false}\n'
    "# ## Task 1 · Add one (1 point)\n#\n# A warm-up, i.e. nothing hard.\n#\n# ```python\n# f(1)\n# ```\n#\n"
    "# Write `f(x)` returning\n# `x + 1`:\n# - any number works.\n#\n# **Check:** a few numbers.\n",
)
TOY_LESSON = """# %% [markdown]
# # Toy lesson

# %%
print("kept")

# %% [markdown]
# ## Recap
# - Adding is easy.
#
# ## Exercises
# Old text promising `g()`.
#
# ## Next
# Lesson 01.
"""


def test_generated_paragraph_replaces_the_lessons_exercises_section_and_keeps_outputs(tmp_path, capsys):
    (tmp_path / "solutions").mkdir()
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "jupytext.toml").write_text('formats = "ipynb,py:percent"\n')
    (tmp_path / "solutions" / "00_toy.py").write_text(TOY_TASKS)
    lesson = tmp_path / "notebooks" / "00_toy.py"
    lesson.write_text(TOY_LESSON)
    notebook = jupytext.reads(TOY_LESSON, fmt="py:percent")
    notebook.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="kept\n")]
    jupytext.write(notebook, lesson.with_suffix(".ipynb"), fmt="ipynb")
    lesson.touch()  # the .py is the newer file of the pair, as after an edit
    assert make_exercises.main(["--root", str(tmp_path), "--check"]) == 1
    assert "notebooks/00_toy.py: its Exercises section differs" in capsys.readouterr().out
    assert make_exercises.main(["--root", str(tmp_path)]) == 0
    expected = (
        "## Exercises\n"
        "The graded notebook `exercises/00_toy.ipynb` (its solved twin is in `solutions/`) has 1 task worth 1\n"
        "point; the check cell under each task tells you as you go whether your code is right, and `pixelcnn-grade`\n"
        "grades the whole notebook.\n"
        "- **Task 1 · Add one** (1 point). Write `f(x)` returning `x + 1`."
    )
    for path in (lesson, lesson.with_suffix(".ipynb")):
        cells = [(c.cell_type, c.source) for c in jupytext.read(path).cells]
        assert cells[2:] == [
            ("markdown", "## Recap\n- Adding is easy."),
            ("markdown", expected),
            ("markdown", "## Next\nLesson 01."),
        ]
    assert jupytext.read(lesson.with_suffix(".ipynb")).cells[1].outputs[0]["text"] == "kept\n"
    text = lesson.read_text()
    assert make_exercises.main(["--root", str(tmp_path)]) == 0 and lesson.read_text() == text
    assert make_exercises.main(["--root", str(tmp_path), "--check"]) == 0
    lesson.write_text(text.replace("(1 point). Write", "(2 points). Write"))
    capsys.readouterr()
    assert make_exercises.main(["--root", str(tmp_path), "--check"]) == 1
    assert "notebooks/00_toy.py: its Exercises section differs" in capsys.readouterr().out


@needs_solutions
@with_lessons()
def test_lesson_exercises_paragraph_is_what_make_exercises_generates(source):
    exercise, relative = _exercise(source)
    expected = make_exercises.exercises_section(exercise, relative)
    current = _paragraph(source)
    diff = "\n".join(
        difflib.unified_diff(current.splitlines(), expected.splitlines(), "lesson", "generated", lineterm="")
    )
    assert current == expected, (
        f"notebooks/{source.name}: the Exercises paragraph differs from what tools/make_exercises.py generates "
        f"from {relative}; run `make exercises`\n{diff}"
    )


@needs_solutions
@with_lessons()
def test_lesson_exercises_paragraph_lists_every_task_with_its_points(source):
    exercise, relative = _exercise(source)
    paragraph = _paragraph(source)
    tasks = make_exercises.exercise_tasks(exercise, relative)
    assert tasks, f"{relative} has no `## Task N · <title> (P points)` cells"
    bullets = [line for line in paragraph.split("\n") if line.startswith("- ")]
    assert len(bullets) == len(tasks), f"notebooks/{source.name}: {len(bullets)} bullets for {len(tasks)} tasks"
    points, task = {}, None
    for cell in exercise.cells:
        if cell.cell_type == "markdown" and cell.source.startswith("## Task"):
            task = int(cell.source.split()[2])
        data = cell.metadata.get("nbgrader", {})
        if data.get("grade") and task is not None:
            points[task] = points.get(task, 0) + data["points"]
    for task, bullet in zip(tasks, bullets):
        assert bullet.startswith(f"- **Task {task.number} · {task.title}**"), (
            f"notebooks/{source.name} does not list task {task.number} of {relative}; run `make exercises`"
        )
        assert float(task.points) == points.get(task.number), (
            f"{relative}, task {task.number}: the heading says {task.points} points, its check cells give "
            f"{points.get(task.number)}"
        )
        assert f"({task.points} point" in paragraph


@needs_solutions
@with_lessons()
def test_lesson_exercises_paragraph_names_only_functions_of_the_exercise(source):
    exercise, relative = _exercise(source)
    text = "\n".join(cell.source for cell in exercise.cells)
    named = {name for span in _CODE_SPAN.findall(_paragraph(source)) for name in _CALL.findall(span)}
    missing = sorted(name for name in named if not re.search(rf"(?<![\w.]){re.escape(name)}\s*\(", text))
    assert not missing, f"notebooks/{source.name} promises {missing}, which {relative} never defines or asks for"


# --------------------------------------------------------------- the data of the end-to-end cells
# The mnist-subset splits are sorted by digit, so cutting their first N images keeps the first digits only:
# a generative classifier fine-tuned on such a cut can never name the digits it did not see. Every data set
# that the end-to-end cells of an exercise build (an assignment that calls one of DATA_CALLS, in a locked
# code cell) is listed here with the digits the notebook says it holds.
ALL_DIGITS = tuple(range(10))
END_TO_END_DATA = {
    "01_self_supervised_likelihood": {"train": ALL_DIGITS, "test": ALL_DIGITS},
    "02_masked_convolutions": {},
    "03_training_on_gpu": {"train": ALL_DIGITS, "test": ALL_DIGITS},
    "04_sampling": {"train": ALL_DIGITS, "test": ALL_DIGITS, "six_digits": tuple(range(6))},
    "05_fine_tuning": {
        "train_all": ALL_DIGITS,
        "test_all": ALL_DIGITS,
        "source": tuple(range(5)),  # pretraining: digits 0-4
        "target_train": tuple(range(5, 10)),  # transfer: digits 5-9
        "target_test": tuple(range(5, 10)),
        "labelled": ALL_DIGITS,  # the classifier's class biases: all ten classes
        "judge": ALL_DIGITS,
    },
    "06_levels_and_colour": {"digits": ALL_DIGITS, "scored": ALL_DIGITS},
    "07_beyond_convolutions": {},
    "08_homework": {"train_data": ALL_DIGITS, "test_data": ALL_DIGITS, "TRAIN": ALL_DIGITS, "TEST": ALL_DIGITS},
}
DATA_CALLS = {"load_dataset", "per_class", "select_classes", "subset", "digits_of"}


def _calls(node):
    return {
        n.func.id if isinstance(n.func, ast.Name) else n.func.attr
        for n in ast.walk(node)
        if isinstance(n, ast.Call) and isinstance(n.func, (ast.Name, ast.Attribute))
    }


def end_to_end_data(text, fast):
    """The data sets that the locked code cells of a solution notebook (percent-format `text`) build, by
    variable name, built the way the notebook builds them in fast or full mode: only the imports, the
    function definitions and the data assignments run, nothing trains."""
    notebook = jupytext.reads(text, fmt="py:percent")
    statements = []
    for cell in notebook.cells:
        data = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or data.get("solution") or data.get("grade"):
            continue
        for node in ast.parse(cell.source).body:
            if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef)):
                statements.append(node)
            elif isinstance(node, ast.Assign) and _calls(node.value) & DATA_CALLS:
                assert len(node.targets) == 1 and isinstance(node.targets[0], ast.Name), ast.unparse(node)
                statements.append(node)
    names = [node.targets[0].id for node in statements if isinstance(node, ast.Assign)]
    assert len(names) == len(set(names)), f"a data set is built twice: {names}"
    previous = os.environ.get("COURSE_FAST")
    os.environ["COURSE_FAST"] = "1" if fast else "0"
    try:
        namespace = {}
        exec(compile(ast.Module(body=statements, type_ignores=[]), "<end-to-end data>", "exec"), namespace)
    finally:
        if previous is None:
            del os.environ["COURSE_FAST"]
        else:
            os.environ["COURSE_FAST"] = previous
    return {name: namespace[name] for name in names}


def digit_problems(datasets, claims):
    """What is wrong with `datasets` (name -> ImageDataset) against `claims` (name -> digits): a digit
    missing or extra, or digits in unequal numbers."""
    problems = []
    for name, digits in claims.items():
        if not hasattr(datasets[name], "labels"):
            problems.append(f"{name} has no labels: build a data set and take its .images afterwards")
            continue
        counts = torch.bincount(datasets[name].labels, minlength=10)
        held = tuple(counts.nonzero().flatten().tolist())
        if held != tuple(digits):
            problems.append(f"{name} should hold the digits {list(digits)}, holds {list(held)}")
        elif len(set(counts[list(held)].tolist())) != 1:
            problems.append(f"{name} holds its digits in unequal numbers: {counts[list(held)].tolist()}")
    return problems


@needs_solutions
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "full"])
@lessons()
def test_end_to_end_data_holds_the_digits_it_claims_in_equal_numbers(source, fast):
    claims = END_TO_END_DATA[source.stem]
    datasets = end_to_end_data(source.read_text(), fast)
    assert set(datasets) == set(claims), (
        f"{source.name} builds the data sets {sorted(datasets)}; list what each holds in END_TO_END_DATA"
    )
    problems = digit_problems(datasets, claims)
    assert not problems, f"{source.name}: " + "; ".join(problems)


FIRST_N_CUT = """# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import torch

from course_lib import load_dataset, pick
from course_lib.data import ImageDataset


def digits_of(dataset, classes, limit=None):
    keep = torch.isin(dataset.labels, torch.tensor(classes)).nonzero().flatten()[:limit]
    return ImageDataset(dataset.name, dataset.intensities[keep], dataset.labels[keep], classes=dataset.classes)


# %% nbgrader={"grade": false, "grade_id": "classifier", "locked": true, "schema_version": 3, "solution": false, "task": false}
train_all = load_dataset("mnist-subset", "train", size=14)
labelled = digits_of(train_all, list(range(10)), limit=pick(fast=300, full=2000))
target_train = digits_of(train_all, [5, 6, 7, 8, 9], limit=pick(fast=128, full=1000))
"""


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "full"])
def test_a_cut_of_the_first_n_sorted_images_is_caught(fast):
    """The fault this guards against: the first N images of a digit-sorted split miss the later digits."""
    datasets = end_to_end_data(FIRST_N_CUT, fast)
    claims = {"train_all": ALL_DIGITS, "labelled": ALL_DIGITS, "target_train": tuple(range(5, 10))}
    problems = digit_problems(datasets, claims)
    assert any(p.startswith("labelled should hold the digits") for p in problems)
    assert any(p.startswith("target_train should hold the digits") for p in problems)
