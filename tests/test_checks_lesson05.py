"""The lesson 05 checks draw from their own random generators: the global one, and the thread setting, are
where they were (the planted mistakes are in mistakes/lesson05.toml, run by tests/test_mistakes.py)."""

from solution_cells import SolutionCells, assert_checks_leave_global_state_alone

from coursework.checks import lesson05

NOTEBOOK = SolutionCells("05_fine_tuning", ["t05_fine_tune", "t05_class_log_likelihoods", "t05_bayes"])


def test_checks_leave_global_state_alone():
    calls = [
        (lesson05.check_fine_tune, NOTEBOOK.solution("t05_fine_tune")),
        (lesson05.check_class_log_likelihoods, NOTEBOOK.solution("t05_class_log_likelihoods")),
        (lesson05.check_bayes, NOTEBOOK.solution("t05_bayes")),
    ]
    assert_checks_leave_global_state_alone(calls)
