"""The grader and the homework's needs: written answers (nbgrader's manually graded markdown cells) are listed
as awaiting a person, never scored 0 in silence; and a check cell runs in the grader's own mode (COURSE_FAST),
so a notebook that sets the flag itself cannot lower a check's thresholds."""

import csv
import json
from pathlib import Path

import nbformat
from sandbox_support import require_sandbox
from test_grader import meta, notebook, write

from coursework import grade, notebooks

ROOT = Path(__file__).resolve().parents[1]
ANSWER = "**Your report** (a person grades it)\n\n### BEGIN SOLUTION\nAn answer.\n### END SOLUTION"


def with_written_answer(nb=None):
    nb = nb or notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell(ANSWER, metadata=meta("report", grade=True, solution=True, points=3)))
    return nb


def test_the_homework_reference_lists_its_written_answers():
    reference = next(r for r in grade.load_references(ROOT / "solutions") if r.path.stem == "08_homework")
    assert reference.manual == [("report_train", 2.0), ("report_cond", 2.0)]
    assert not {"report_train", "report_cond"} & set(reference.check_ids), "written answers are not check cells"


def test_written_answers_await_a_person_in_the_table_the_journal_and_the_gradebook(tmp_path):
    task = grade.Task("t_square_check", 2, 2, "✓ square(3) == 9")
    pending = grade.Task("report", 0, 3, grade.AWAITING)
    report = grade.Report("alice/lesson.ipynb", total=2, max=2, tasks=[task], awaiting=[pending])
    table = grade.format_report(report)
    assert "report" in table and "?/3" in table and "awaiting a person" in table
    journal = tmp_path / "grades.progress.jsonl"
    journal.write_text(json.dumps(report.to_dict()) + "\n")
    assert grade.read_journal(journal)["alice/lesson.ipynb"] == report
    grade.write_gradebook([report], tmp_path / "grades.csv", folder=".")
    rows = list(csv.DictReader((tmp_path / "grades.csv").open()))
    assert rows[0]["report"] == "pending" and rows[0]["t_square_check"] == "2" and rows[0]["max"] == "2"


MODE_CHECK = """import os
mode = os.environ.get("COURSE_FAST")
assert mode is None, f"✗ the check ran with COURSE_FAST={mode!r}, not in the grader's mode"
print("✓ the grader's mode")"""
MODE_SET = 'import os\nos.environ["COURSE_FAST"] = "1"'
MODE_BACK = 'import os\ngreeting = "hello" if os.environ.get("COURSE_FAST") == "1" else "the notebook lost its setting"'


def test_grading_pins_the_mode_for_checks_and_lists_written_answers(tmp_path, monkeypatch):
    """The notebook sets COURSE_FAST=1 before a check: the check still runs in the grader's mode (unset here), and
    the notebook gets its own setting back after the check. Its written answer is listed, not scored."""
    require_sandbox()
    monkeypatch.delenv("COURSE_FAST", raising=False)
    reference = write(with_written_answer(notebook(check_square=MODE_CHECK)), tmp_path / "solutions" / "lesson.ipynb")
    submission = with_written_answer(notebook(check_square=MODE_CHECK, middle="x = 1", greeting=MODE_BACK))
    submission.cells.insert(1, nbformat.v4.new_code_cell(MODE_SET))
    path = write(submission, tmp_path / "alice" / "lesson.ipynb")
    report = grade.grade_notebook(path, grade.load_references(reference.parent), timeout=300)
    messages = {t.grade_id: t.message for t in report.tasks}
    assert messages["t_square_check"].startswith("✓"), grade.format_report(report)
    assert messages["t_greeting_check"].startswith("✓"), grade.format_report(report)
    assert (report.total, report.max) == (3, 3)
    assert [(t.grade_id, t.points, t.max_points, t.message) for t in report.awaiting] == [
        ("report", 0, 3, grade.AWAITING)
    ]


def test_check_source_pins_the_graders_mode(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    assert "'1'" in notebooks.check_source("print(1)", "t_check")
    monkeypatch.delenv("COURSE_FAST")
    assert "if None is not None" in notebooks.check_source("print(1)", "t_check")
