"""The autograder (`pixelcnn-grade`) on tiny synthetic notebooks: full and zero marks, and a
grader that survives notebooks that raise, loop forever, print megabytes, kill their kernel or edit and
delete their check cells. Also the shared check machinery in `coursework.checks`."""

import copy
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from sandbox_support import require_sandbox

from coursework import checks, grade, notebooks

ROOT = Path(__file__).resolve().parents[1]


def meta(grade_id, *, grade=False, solution=False, points=None):
    data = {
        "grade": grade,
        "grade_id": grade_id,
        "locked": not solution,
        "schema_version": 3,
        "solution": solution,
        "task": False,
    }
    if points is not None:
        data["points"] = points
    return {"nbgrader": data}


SOLUTION = """def square(x):
    ### BEGIN SOLUTION
    return x * x
    ### END SOLUTION"""
STUB = """def square(x):
    # YOUR CODE HERE
    raise NotImplementedError()"""
CHECK_SQUARE = """try:
    got = square(3)
except NotImplementedError:
    print("✗ square is not implemented yet. Hint: replace `raise NotImplementedError()`.")
    raise
assert got == 9, f"✗ square(3) returned {got}, expected 9. Hint: multiply x by itself."
print("✓ square(3) == 9")"""
CHECK_WITH_CHECKS = (
    'checks.passed("square(3) == 9") if checks.call(square, 3) == 9 else checks.fail("square(3) should be 9")'
)
CHECK_GREETING = """assert greeting == "hello", "✗ greeting is wrong. Hint: use lower case."
print("✓ greeting is right")"""


def notebook(
    square=SOLUTION, check_square=CHECK_SQUARE, middle="x = 1", greeting='greeting = "hello"', drop_check=False
):
    """The synthetic lesson: two tasks (2 + 1 points) with a plain cell in between."""
    cells = [
        nbformat.v4.new_markdown_cell("# A tiny graded notebook", metadata=meta("intro")),
        nbformat.v4.new_code_cell(square, metadata=meta("t_square", solution=True)),
        nbformat.v4.new_code_cell(check_square, metadata=meta("t_square_check", grade=True, points=2)),
        nbformat.v4.new_code_cell(middle, metadata=meta("middle")),
        nbformat.v4.new_code_cell(greeting, metadata=meta("t_greeting", solution=True)),
        nbformat.v4.new_code_cell(CHECK_GREETING, metadata=meta("t_greeting_check", grade=True, points=1)),
    ]
    if drop_check:
        del cells[2]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def write(nb, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("solutions")
    write(notebook(), folder / "lesson.ipynb")
    write(notebook(check_square=CHECK_WITH_CHECKS), folder / "patched.ipynb")  # uses coursework.checks
    return folder


SUBMISSIONS = {
    "correct": dict(),
    "not_implemented": dict(square=STUB),
    "wrong": dict(square="def square(x):\n    return 2 * x"),
    "raises": dict(middle="raise ValueError('a bug in an ungraded cell')"),
    "megabytes": dict(middle="print('x' * 3_000_000)\nfor i in range(3000):\n    print('y' * 1000)"),
    "edits_check": dict(square="def square(x):\n    return 0", check_square="pass"),
    "deletes_check": dict(square="def square(x):\n    return 0", drop_check=True),
    "kills_kernel": dict(middle="import os\nos._exit(1)"),
    "uses_its_folder": dict(
        middle="open('side_effect.txt', 'w').write('x')", greeting="greeting = open('greeting.txt').read()"
    ),
}


def with_helper_cell():
    """The task calls a helper the learner defined in a cell of their own, below the task cell."""
    nb = notebook(square="def square(x):\n    return times(x, x)")
    nb.cells.insert(2, nbformat.v4.new_code_cell("def times(a, b):\n    return a * b"))
    return nb


def with_retyped_task():
    """The task cell was deleted and typed again, without its nbgrader metadata."""
    nb = notebook()
    nb.cells[1] = nbformat.v4.new_code_cell(SOLUTION)
    return nb


HONEST = {"helper_cell": with_helper_cell, "retyped_task": with_retyped_task}


@pytest.fixture(scope="module")
def folder_report(tmp_path_factory, reference):
    """Grade a folder holding one submission per case, once, through main()."""
    require_sandbox()
    folder = tmp_path_factory.mktemp("submissions")
    for name, variant in SUBMISSIONS.items():
        write(notebook(**variant), folder / name / "lesson.ipynb")
    (folder / "uses_its_folder" / "greeting.txt").write_text("hello")
    for name, build in HONEST.items():
        write(build(), folder / name / "lesson.ipynb")
    # monkeypatches the check machinery before its (reference) check cell runs
    patch = (
        "from coursework import checks\n"
        "checks.fail = lambda *args, **kwargs: print('✓ fooled')\n"
        "import coursework.checks\ncoursework.checks.call = lambda f, *a: 9"
    )
    write(
        notebook(square="def square(x):\n    return 0\n" + patch, check_square=CHECK_WITH_CHECKS),
        folder / "patches_checks" / "patched.ipynb",
    )
    out = tmp_path_factory.mktemp("out")
    code = grade.main(
        [
            str(folder),
            "--reference",
            str(reference),
            "--timeout",
            "60",
            "--json",
            str(out / "report.json"),
            "--csv",
            str(out / "grades.csv"),
        ]
    )
    assert code == 0
    reports = json.loads((out / "report.json").read_text())
    by_case = {Path(r["notebook"]).parent.name: r for r in reports}
    return by_case, out, folder


def tasks(report):
    return {t["grade_id"]: t for t in report["tasks"]}


def test_correct_notebook_scores_full_points(folder_report):
    report = folder_report[0]["correct"]
    assert (report["total"], report["max"], report["status"]) == (3, 3, "ok")
    assert tasks(report)["t_square_check"]["message"] == "✓ square(3) == 9"


def test_not_implemented_scores_zero_for_that_task(folder_report):
    report = folder_report[0]["not_implemented"]
    square = tasks(report)["t_square_check"]
    assert square["points"] == 0 and square["max_points"] == 2
    assert square["message"].startswith("✗ square is not implemented yet")
    assert tasks(report)["t_greeting_check"]["points"] == 1
    assert report["total"] == 1


def test_wrong_answer_gets_the_checks_verdict(folder_report):
    square = tasks(folder_report[0]["wrong"])["t_square_check"]
    assert square["points"] == 0
    assert square["message"] == "✗ square(3) returned 6, expected 9. Hint: multiply x by itself."


def test_an_error_in_an_ungraded_cell_does_not_stop_later_checks(folder_report):
    report = folder_report[0]["raises"]
    assert report["total"] == 3 and report["status"] == "ok"


def test_megabytes_of_output_are_survived(folder_report):
    report = folder_report[0]["megabytes"]
    assert report["total"] == 3
    assert tasks(report)["t_greeting_check"]["message"] == "✓ greeting is right"


def test_an_edited_check_cell_is_replaced_by_the_reference(folder_report):
    square = tasks(folder_report[0]["edits_check"])["t_square_check"]
    assert square["points"] == 0 and "returned 0" in square["message"]


def test_a_deleted_check_cell_is_put_back(folder_report):
    report = folder_report[0]["deletes_check"]
    assert [t["grade_id"] for t in report["tasks"]] == ["t_square_check", "t_greeting_check"]
    assert tasks(report)["t_square_check"]["points"] == 0
    assert "returned 0" in tasks(report)["t_square_check"]["message"]
    assert tasks(report)["t_greeting_check"]["points"] == 1


def test_monkeypatched_checks_are_reimported(folder_report):
    report = folder_report[0]["patches_checks"]
    assert Path(report["reference"]).name == "patched.ipynb"
    square = tasks(report)["t_square_check"]
    assert square["points"] == 0 and square["message"] == "✗ square(3) should be 9."


def test_a_kernel_that_dies_still_gets_a_report(folder_report):
    report = folder_report[0]["kills_kernel"]
    assert report["status"] == "kernel died"
    assert tasks(report)["t_square_check"]["points"] == 2  # ran before the kernel died
    greeting = tasks(report)["t_greeting_check"]
    assert greeting["points"] == 0 and greeting["message"].startswith("not executed")


def test_honest_helper_and_retyped_task_cells_keep_their_points(folder_report):
    """A check runs after the learner's own cells below its task: a helper defined there, or the task cell
    itself typed again without its metadata."""
    for case in HONEST:
        report = folder_report[0][case]
        assert report["total"] == 3, report


def test_a_check_runs_after_the_learners_own_cells_below_its_task(reference):
    ref = grade.load_references(reference)[0]
    nb, _ = notebooks.prepare(with_helper_cell(), ref)
    order = [notebooks.grade_id(c) for c in nb.cells]
    assert order == ["intro", "t_square", None, "t_square_check", "middle", "t_greeting", "t_greeting_check"]
    nb, _ = notebooks.prepare(with_retyped_task(), ref)
    assert [notebooks.grade_id(c) for c in nb.cells][:3] == ["intro", None, "t_square_check"]


def test_notebook_runs_in_a_copy_of_its_folder(folder_report):
    by_case, _, folder = folder_report
    assert by_case["uses_its_folder"]["total"] == 3  # read greeting.txt next to it
    assert not (folder / "uses_its_folder" / "side_effect.txt").exists()  # wrote into the copy only


def test_json_report_is_well_formed(folder_report):
    for report in folder_report[0].values():
        assert {"notebook", "total", "max", "tasks"} <= set(report)
        assert report["max"] == 3 and 0 <= report["total"] <= 3
        assert report["total"] == sum(t["points"] for t in report["tasks"])
        for task in report["tasks"]:
            assert set(task) == {"grade_id", "points", "max_points", "message"}
            assert isinstance(task["message"], str) and task["message"]
            assert len(task["message"]) <= grade.MESSAGE_CAP


def test_csv_gradebook_has_one_row_per_notebook(folder_report):
    by_case, out, _ = folder_report
    rows = list(csv.DictReader((out / "grades.csv").open(encoding="utf-8")))
    assert len(rows) == len(SUBMISSIONS) + len(HONEST) + 1
    assert list(rows[0])[:4] == ["student", "notebook", "t_square_check", "t_greeting_check"]
    assert {"total", "max"} <= set(rows[0])
    for row in rows:
        case = Path(row["notebook"]).parent.name
        assert row["student"] == case  # the first folder below the graded folder
        assert float(row["total"]) == by_case[case]["total"]
        assert float(row["max"]) == 3


def test_infinite_loop_hits_the_time_limit_from_the_command_line(tmp_path, reference):
    """The CLI in its own process: `while True: pass` ends in a report, not a hung grader."""
    require_sandbox()
    path = write(notebook(middle="while True:\n    pass"), tmp_path / "loop" / "lesson.ipynb")
    report_file = tmp_path / "report.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "coursework.grade",
            str(path),
            "--reference",
            str(reference),
            "--timeout",
            "10",
            "--json",
            str(report_file),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(report_file.read_text())
    assert report["status"] == "time limit exceeded"
    assert tasks(report)["t_square_check"]["points"] == 2  # ran before the loop
    assert tasks(report)["t_greeting_check"] == {
        "grade_id": "t_greeting_check",
        "points": 0,
        "max_points": 1,
        "message": "time limit exceeded",
    }
    assert "total" in result.stdout and "2/3" in result.stdout
    assert not (tmp_path / "grades.csv").exists()  # one notebook: no gradebook unless asked


# ------------------------------------------------------------------------------- preparation, no kernel
def test_prepare_uses_reference_check_cells_and_reference_points(reference):
    ref = grade.load_references(reference)[0]
    submission = notebook(check_square="print('✓ trust me')")
    submission.cells[2].metadata["nbgrader"]["points"] = 100  # a submission cannot raise its own points
    submission.cells[3].metadata = meta("sneaky_check", grade=True, points=50)  # nor add graded cells
    submission.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="✓ pre-filled")]
    nb, check_cells = notebooks.prepare(submission, ref)
    assert [(gid, points) for gid, points, _ in check_cells] == [("t_square_check", 2), ("t_greeting_check", 1)]
    assert nb.cells[2].source == notebooks.check_source(CHECK_SQUARE, "t_square_check")
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    nbformat.validate(nb)


def test_prepare_drops_duplicated_check_cells(reference):
    ref = grade.load_references(reference)[0]
    submission = notebook()
    submission.cells.insert(0, copy.deepcopy(submission.cells[5]))
    nb, check_cells = notebooks.prepare(submission, ref)
    assert sum(notebooks.grade_id(c) == "t_greeting_check" for c in nb.cells) == 1


def test_reference_is_matched_by_name_then_by_grade_ids(reference, tmp_path):
    refs = grade.load_references(reference)
    assert notebooks.match_reference(Path("lesson.ipynb"), None, refs) is refs[0]
    renamed = notebook()
    assert notebooks.match_reference(Path("alice.ipynb"), renamed, refs) is refs[0]
    assert notebooks.match_reference(Path("alice.ipynb"), nbformat.v4.new_notebook(), refs) is None


def test_unreadable_notebook_gets_a_report(reference, tmp_path):
    broken = tmp_path / "lesson.ipynb"
    broken.write_text("{ not json")
    report = grade.grade_notebook(broken, grade.load_references(reference), timeout=30)
    assert report.total == 0 and report.max == 3 and report.status.startswith("error")
    assert all(t.message.startswith("not executed") for t in report.tasks)


def test_missing_path_is_an_error(tmp_path, capsys):
    assert grade.main([str(tmp_path / "nope.ipynb")]) == 2
    assert "does not exist" in capsys.readouterr().err


# ------------------------------------------------------------------------------- the check machinery
def test_passed_and_fail_print_one_line_verdicts(capsys):
    assert checks.passed("masks are causal") == "✓ masks are causal"
    with pytest.raises(checks.CheckFailed) as error:
        checks.fail("mask A and B are swapped", "the first layer uses mask A")
    assert str(error.value) == "✗ mask A and B are swapped. Hint: the first layer uses mask A."
    assert isinstance(error.value, AssertionError)
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["✓ masks are causal", "✗ mask A and B are swapped. Hint: the first layer uses mask A."]


def test_call_turns_learner_errors_into_verdicts():
    def nll(logits, x):
        raise NotImplementedError()

    with pytest.raises(checks.CheckFailed, match="not implemented yet"):
        checks.call(nll, 1, 2)

    def broken(x):
        return x.missing

    with pytest.raises(checks.CheckFailed, match="broken raised AttributeError"):
        checks.call(broken, 1)
    with pytest.raises(checks.CheckFailed, match="expected a function"):
        checks.call(3)
    assert checks.call(lambda x: x + 1, 1) == 2


def test_close_and_fresh_inputs():
    import torch

    assert checks.close(torch.ones(2), [1.0, 1.0])
    assert not checks.close(torch.ones(2), torch.ones(3))
    assert not checks.close(torch.ones(2), "nonsense")
    assert not checks.close(None, 1.0) and not checks.close(float("inf"), float("inf"))
    assert checks.close(1.0, 1.0 + 1e-6) and not checks.close(1.0, 1.001)
    assert checks.close(1.0, 1.001, rtol=1e-2)
    draws = {torch.rand(1, generator=checks.fresh_generator()).item() for _ in range(5)}
    assert len(draws) == 5
    fixed = [torch.rand(1, generator=checks.fresh_generator(7)).item() for _ in range(2)]
    assert fixed[0] == fixed[1]


def test_check_failed_has_a_short_traceback_in_notebooks():
    assert checks.CheckFailed("✗ wrong")._render_traceback_() == ["CheckFailed: ✗ wrong"]


def test_every_lesson_module_is_imported_explicitly():
    import importlib

    lessons = [f"lesson{p.name[:2]}" for p in sorted((ROOT / "solutions").glob("[0-9][0-9]_*.py"))]
    assert [name for name in checks.__all__ if name.startswith("lesson")] == lessons
    for name in lessons:
        assert getattr(checks, name) is importlib.import_module(f"coursework.checks.{name}")


def test_isolated_checks_leave_the_random_state_and_threads_alone():
    import torch

    @checks.isolated
    def noisy():
        torch.set_num_threads(1)
        return torch.rand(3)

    threads = torch.get_num_threads()
    torch.manual_seed(0)
    before = torch.get_rng_state()
    noisy()
    assert torch.equal(torch.get_rng_state(), before) and torch.get_num_threads() == threads


# ------------------------------------------------------------------------------- integrity, no kernel
def test_a_check_pasted_above_its_task_runs_at_its_reference_position(reference):
    ref = grade.load_references(reference)[0]
    submission = notebook()
    pasted = copy.deepcopy(submission.cells[2])
    pasted.source = "print('a copy of the check, pasted too early')"
    submission.cells.insert(1, pasted)  # above the task t_square, same grade_id
    nb, check_cells = notebooks.prepare(submission, ref)
    order = [notebooks.grade_id(c) for c in nb.cells]
    assert order == ["intro", "t_square", "t_square_check", "middle", "t_greeting", "t_greeting_check"]
    assert [index for _, _, index in check_cells] == [2, 5]


def test_a_moved_task_takes_its_check_along(reference):
    ref = grade.load_references(reference)[0]
    submission = notebook()
    task = submission.cells.pop(1)
    submission.cells.insert(3, task)  # the learner moved the task below the plain cell
    nb, _ = notebooks.prepare(submission, ref)
    order = [notebooks.grade_id(c) for c in nb.cells]
    assert order.index("t_square_check") == order.index("t_square") + 1


def test_check_cells_run_wrapped_in_a_fresh_state(reference):
    ref = grade.load_references(reference)[0]
    nb, _ = notebooks.prepare(notebook(), ref)
    source = nb.cells[2].source
    assert "with _grader_cell.graded('t_square_check'):" in source
    compile(source, "check", "exec")  # still valid Python after wrapping


def test_graded_gives_a_fresh_state_and_restores_the_notebooks():
    import random

    import torch

    from coursework.checkcell import graded

    torch.set_grad_enabled(False)
    torch.set_default_dtype(torch.float64)
    random.seed(5)
    expected_next = random.random()
    random.seed(5)
    try:
        with graded("t_check"):
            assert torch.is_grad_enabled() and torch.get_default_dtype() == torch.float32
            first = torch.rand(1)
        with graded("t_check"):
            assert torch.equal(torch.rand(1), first)  # the same random state for the same check
        assert not torch.is_grad_enabled() and torch.get_default_dtype() == torch.float64
        assert random.random() == expected_next
    finally:
        torch.set_grad_enabled(True)
        torch.set_default_dtype(torch.float32)


def test_lesson_option_picks_the_reference_whatever_the_name():
    refs = grade.load_references(ROOT / "solutions")
    unknown = nbformat.v4.new_notebook()
    assert notebooks.match_reference(Path("anything.ipynb"), unknown, refs) is None
    assert notebooks.match_reference(Path("anything.ipynb"), unknown, refs, lesson="03").path.name.startswith("03_")
    assert notebooks.match_reference(Path("01_x.ipynb"), unknown, refs, lesson="04").path.name.startswith("04_")
    assert notebooks.match_reference(Path("anything.ipynb"), unknown, refs, lesson="99") is None


def test_an_unmatched_notebook_scores_zero_and_says_how_to_fix_it(reference, tmp_path, capsys):
    require_sandbox()
    stranger = notebook()
    for cell in stranger.cells:
        cell.metadata["nbgrader"]["grade_id"] = "x_" + cell.metadata["nbgrader"]["grade_id"]
    path = write(stranger, tmp_path / "homework.ipynb")
    assert grade.main([str(path), "--reference", str(reference), "--json", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["total"] == 0 and report["tasks"] == [] and report["status"].startswith("no reference")
    assert "--lesson" in report["status"] and "--reference" in report["status"]


def test_no_reference_folder_is_an_error_unless_own_checks_are_trusted(tmp_path, capsys):
    path = write(notebook(), tmp_path / "lesson.ipynb")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert grade.main([str(path), "--reference", str(empty)]) == 2
    err = capsys.readouterr().err
    assert "no reference notebooks" in err and "--trust-own-checks" in err
    assert grade.main([str(path), "--lesson", "3"]) == 2
    assert "two-digit" in capsys.readouterr().err


def test_trusting_own_checks_grades_by_the_notebooks_cells(tmp_path):
    require_sandbox()
    path = write(notebook(check_square="print('✓ trust me')"), tmp_path / "lesson.ipynb")
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "r.json"
    assert grade.main([str(path), "--reference", str(empty), "--trust-own-checks", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["total"] == 3 and report["reference"] is None
