"""Lesson 01 checks: what cannot be a catalogue entry. The wrong answers are planted from
mistakes/lesson01.toml (tests/test_mistakes.py); reference solutions and stubs are tests/test_checks_generic.py's."""

import math

import pytest
import torch
import torch.nn.functional as F
from solution_cells import SolutionCells, assert_checks_leave_global_state_alone

from coursework.checks import CheckFailed
from coursework.checks import lesson01 as checks

NOTEBOOK = SolutionCells("01_self_supervised_likelihood", ["t01_nll", "t02_bpd", "t03_fit", "t04_eval"])


def test_checks_leave_global_state_alone():
    """The checks draw their inputs from their own generator and restore torch's thread count."""
    ours = (checks.check_nll, checks.check_bits_per_dim, checks.check_fit_independent, checks.check_evaluate)
    assert_checks_leave_global_state_alone([(check, NOTEBOOK.solution(t)) for check, t in zip(ours, NOTEBOOK.tasks)])


def nll(logits, x):
    """A right answer written another way: log-sigmoid and a gathered log-softmax, not the *_with_logits losses."""
    if logits.dim() == 4:
        log_p = torch.where(x.bool(), F.logsigmoid(logits), F.logsigmoid(-logits))
    else:
        log_p = F.log_softmax(logits, dim=1).gather(1, x.long().unsqueeze(1)).squeeze(1)
    return -log_p.flatten(1).sum(1)


@pytest.mark.parametrize("repeat", range(3))
def test_right_answers_written_another_way_pass(repeat):
    """The edge probes (logits of ±100, 256 levels, a batch of one, float32 tensors) fail no right answer."""
    checks.check_nll(nll)
    checks.check_bits_per_dim(lambda nats_per_image, dims: nats_per_image / dims / math.log(2))


def test_verdict_reveals_no_code(capsys):
    """A ✗ verdict names the mistake and gives a hint, without showing the reference's code."""
    old = "return per_dim.flatten(1).sum(1)"
    in_bits = NOTEBOOK.solution("t01_nll", (old, old + " / math.log(2)"))
    capsys.readouterr()
    with pytest.raises(CheckFailed):
        checks.check_nll(in_bits)
    out = capsys.readouterr().out
    assert out.startswith("✗") and "Hint:" in out and "binary_cross_entropy" not in out
