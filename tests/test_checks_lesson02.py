"""Lesson 02 checks: what the catalogue of mistakes (mistakes/lesson02.toml) cannot state. The checks leave
the notebook's global state alone, and the models `check_is_causal` tests with are what it says they are:
the causal ones causal, each broken one broken, each single leak exactly one forbidden connection."""

import torch
from solution_cells import SolutionCells, assert_checks_leave_global_state_alone

from course_lib.causality import causality_violations
from coursework.checks import lesson02 as checks

NOTEBOOK = SolutionCells("02_masked_convolutions", ["t01_mask", "t02_conv", "t03_field", "t04_causal"])


def test_checks_leave_global_state_alone():
    """The checks draw from their own generator and restore the thread setting."""
    ours = (checks.check_mask, checks.check_masked_conv, checks.check_receptive_field)
    assert_checks_leave_global_state_alone([(check, NOTEBOOK.solution(t)) for check, t in zip(ours, NOTEBOOK.tasks)])


def test_whole_models_are_labelled_right():
    """Each whole model of `check_is_causal` is causal exactly when the check says so; the green-to-red skip
    leaks only red seeing green of its own pixel (a test that checks only the diagonal misses it)."""
    g = torch.Generator().manual_seed(0)
    for name, (options, causal) in checks.WHOLE_MODELS.items():
        violations = causality_violations(checks._Stack(g, **options))
        assert (violations == []) == causal, name
        if options.get("bug") == "green to red":
            assert all(o[1:] == k[1:] and (o[0], k[0]) == (0, 1) for o, k in violations)


def test_leaky_models_leak_exactly_once():
    """Each single-leak model has exactly one forbidden connection, the one it describes."""
    g = torch.Generator().manual_seed(1)
    for where in checks.SINGLE_LEAKS:
        _, model = checks._leaky(g, where)
        assert [(tuple(o), tuple(k)) for o, k in causality_violations(model)] == [(model.out, model.src)], where
