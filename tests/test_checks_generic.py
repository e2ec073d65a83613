"""What every lesson's checks promise, for lessons 01-05 alike: each check cell calls a check that exists,
every check is used by a check cell, the reference solution passes, and the exercise stub fails with
"not implemented yet" (the checks are read from the solved notebooks in solutions/)."""

import importlib
import inspect
import re
from pathlib import Path

import pytest
from solution_cells import SolutionCells

from coursework.checks import CheckFailed

LESSONS = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "solutions").glob("0[1-9]_*.py"))
CALL = re.compile(r"checks\.(lesson\d\d)\.(check_\w+)\(")


def check_cells(name):
    """{task grade_id: (lesson module, check function)} from the check cells of solutions/<name>.py."""
    found = {}
    for grade_id, source in SolutionCells(name).cells.items():
        if grade_id.endswith("_check") and (match := CALL.search(source)):
            module = importlib.import_module(f"coursework.checks.{match.group(1)}")
            found[grade_id[: -len("_check")]] = (module, getattr(module, match.group(2), None), match.group(2))
    return found


CASES = [(lesson, task) for lesson in LESSONS for task in check_cells(lesson)]


@pytest.mark.parametrize("lesson", LESSONS)
def test_check_cells_and_check_functions_match(lesson):
    cells = check_cells(lesson)
    assert cells, f"{lesson} has no check cells"
    for task, (module, check, name) in cells.items():
        assert check is not None, f"{lesson}: the check cell of {task} calls {module.__name__}.{name}, which is missing"
    module = next(iter(cells.values()))[0]
    functions = inspect.getmembers(module, inspect.isfunction)
    public = {n for n, f in functions if n.startswith("check_") and f.__module__ == module.__name__}
    assert public == {name for _, _, name in cells.values()}, "every check is called by exactly one check cell"


@pytest.mark.parametrize("lesson, task", CASES)
def test_reference_solution_passes(lesson, task, capsys):
    fn = SolutionCells(lesson, list(check_cells(lesson))).solution(task)
    capsys.readouterr()
    check_cells(lesson)[task][1](fn)
    assert capsys.readouterr().out.startswith("✓")


@pytest.mark.parametrize("lesson, task", CASES)
def test_exercise_stub_is_not_implemented(lesson, task, capsys):
    fn = SolutionCells(lesson, list(check_cells(lesson))).stub(task)
    capsys.readouterr()
    with pytest.raises(CheckFailed, match="not implemented yet"):
        check_cells(lesson)[task][1](fn)
    assert capsys.readouterr().out.startswith("✗")
