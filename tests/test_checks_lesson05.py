"""The lesson 05 checks draw from their own random generators: the global one, and the thread setting, are
where they were (the planted mistakes are in mistakes/lesson05.toml, run by tests/test_mistakes.py)."""

from solution_cells import SolutionCells, assert_checks_leave_global_state_alone

from coursework.checks import lesson05

TASKS = ["fine_tune", "class_log_likelihoods", "bayes"]
NOTEBOOK = SolutionCells("05_fine_tuning", [f"t05_{task}" for task in TASKS])


def test_checks_leave_global_state_alone():
    calls = [(getattr(lesson05, f"check_{task}"), NOTEBOOK.solution(f"t05_{task}")) for task in TASKS]
    assert_checks_leave_global_state_alone(calls)
