"""Lesson 06 checks, what mistakes/lesson06.toml cannot state: they leave the notebook's global state alone."""

from solution_cells import SolutionCells, assert_checks_leave_global_state_alone

from coursework.checks import lesson06

NOTEBOOK = SolutionCells("06_levels_and_colour", ["t06_discretized_logistic", "t06_mixture", "t06_centre_mask"])


def test_checks_leave_global_state_alone():
    """The checks draw from their own generator and restore the thread setting."""
    checks = [lesson06.check_discretized_logistic, lesson06.check_mixture, lesson06.check_centre_mask]
    assert_checks_leave_global_state_alone(list(zip(checks, map(NOTEBOOK.solution, NOTEBOOK.tasks))))
