"""Lesson 07 checks, what mistakes/lesson07.toml cannot state: they leave the notebook's global state alone
(torch's generator, the thread setting and the library's attention functions they replace for a moment),
and the models they build from a learner's function do tell a causal one from one that sees the future."""

import pytest
import torch
from solution_cells import SolutionCells, assert_checks_leave_global_state_alone

import course_lib.attention
from coursework.checks import CheckFailed, lesson07

TASKS = ["t07_input_degrees", "t07_mask_from_degrees", "t07_causal_mask", "t07_attend"]
NOTEBOOK = SolutionCells("07_beyond_convolutions", TASKS)
CHECKS = [
    lesson07.check_input_degrees,
    lesson07.check_mask_from_degrees,
    lesson07.check_causal_mask,
    lesson07.check_attend,
]


def test_checks_leave_global_state_alone():
    """The checks draw from their own generator and restore the thread setting."""
    assert_checks_leave_global_state_alone([(check, NOTEBOOK.solution(task)) for check, task in zip(CHECKS, TASKS)])


@pytest.fixture
def one_thread():
    """One CPU thread, as the checks run (tiny models: threads only add overhead on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _raising_mask(tokens):
    if tokens > 1:  # right on its own for the check's sizes up to 12 tokens; wrong inside the model
        raise ValueError("no mask for you")
    return torch.zeros(1, 1, dtype=torch.bool)


@pytest.mark.parametrize(
    "task, check", [("t07_causal_mask", lesson07.check_causal_mask), ("t07_attend", lesson07.check_attend)]
)
def test_the_library_s_attention_functions_are_put_back(task, check):
    """The transformer tests replace course_lib.attention's causal_mask or attend for a moment: afterwards,
    passed or failed, the library's own functions are back."""
    originals = course_lib.attention.causal_mask, course_lib.attention.attend
    check(NOTEBOOK.solution(task))
    assert (course_lib.attention.causal_mask, course_lib.attention.attend) == originals
    with pytest.raises(CheckFailed):
        lesson07._transformer_verdicts("causal_mask", causal_mask=lambda t, device=None: _raising_mask(t))
    assert (course_lib.attention.causal_mask, course_lib.attention.attend) == originals


@pytest.mark.parametrize(
    "mask, says",
    [
        (lambda t: torch.ones(t, t, dtype=torch.bool).tril(-1), "depend on its own sub-pixel or a later one"),
        (lambda t: torch.ones(t, t, dtype=torch.bool).triu(2), "depend on its own sub-pixel or a later one"),
        (lambda t: torch.ones(t, t, dtype=torch.bool).triu(0), "NaN or inf"),
        (
            lambda t: torch.ones(t, t, dtype=torch.bool).triu(1) | torch.eye(t, dtype=torch.bool).roll(-1, 1).tril(),
            "cuts an output off from part of its past",
        ),
    ],
    ids=["future", "next-token", "itself-forbidden", "previous-token-forbidden"],
)
def test_a_transformer_with_a_wrong_mask_is_told_apart(mask, says, one_thread):
    """The Jacobian test of the model is not vacuous: a mask that lets the future in, or cuts part of the past
    off, fails it (the values the check compares first would catch these, so they are tested here directly)."""
    with pytest.raises(CheckFailed, match=says):
        lesson07._transformer_verdicts("causal_mask", causal_mask=lambda t, device=None: mask(t))


@pytest.mark.parametrize(
    "rule, says",
    [
        (lambda o, i, strict=False: (o[:, None] >= i[None, :]).float(), "depend on its own sub-pixel or a later one"),
        (lambda o, i, strict=False: (o[:, None] > i[None, :]).float(), "cuts an output off from part of its past"),
    ],
    ids=["never-strict", "always-strict"],
)
def test_a_made_with_wrong_masks_is_told_apart(rule, says, one_thread):
    """Likewise for the MADE built from the learner's masks: its Jacobian tells both mistakes apart."""
    g = torch.Generator().manual_seed(0)
    dep, allowed = lesson07._made_dependencies(rule, 6, (8, 5), g)
    problem = (dep & ~allowed).any(), (allowed & ~dep).any()
    assert problem == (says.startswith("depend"), says.startswith("cuts"))
