"""The lesson 03 checks beyond the catalogue of mistakes (mistakes/lesson03.toml, planted by test_mistakes.py):
they leave torch's globals and random state alone, and name a clip hard-coded to 1.0 on every seed."""

from operator import attrgetter

import pytest
import torch
from solution_cells import SolutionCells, assert_checks_leave_global_state_alone

from coursework.checks import CheckFailed, lesson03

solution = SolutionCells("03_training_on_gpu").solution
TORCH_GLOBALS = attrgetter(  # the torch globals the checks replace for a moment
    *"cuda.is_available cuda.device_count backends.mps.is_available autocast amp.autocast save load".split(),
    *"Tensor.__bool__ Tensor.all Tensor.any".split(),
)


def test_checks_leave_global_state_alone():
    """The checks draw from their own generators, keep the thread setting, and put back every torch global they
    replace for a moment (fake hardware, the device probe's autocast and meta-tensor truth, torch.save and
    torch.load), also when a check fails halfway."""
    before = TORCH_GLOBALS(torch)
    first = [(getattr(lesson03, f"check_{task}"), solution(f"t03_{task}")) for task in ("pick_device", "train_step")]
    assert_checks_leave_global_state_alone(first)  # (a learner's DataLoader draws from torch's generator)
    for task in ("evaluate", "save_checkpoint", "resume"):
        getattr(lesson03, f"check_{task}")(solution(f"t03_{task}"))
    with pytest.raises(CheckFailed):
        lesson03.check_save_checkpoint(solution("t03_save_checkpoint", ("except BaseException:", "except Exception:")))
    assert TORCH_GLOBALS(torch) == before


@pytest.mark.parametrize("seed", [3, 11, 29])
def test_clip_value_ignored_is_named(seed, monkeypatch):
    """A clip hard-coded to 1.0 (the default in the task's signature) is told apart from no clipping at all:
    the check's clip is always far from 1.0."""
    monkeypatch.setattr(lesson03, "fresh_seed", lambda: seed)
    fn = solution(
        "t03_train_step", ("clip_grad_norm_(model.parameters(), clip)", "clip_grad_norm_(model.parameters(), 1.0)")
    )
    with pytest.raises(CheckFailed, match="the clip argument was ignored"):
        lesson03.check_train_step(fn)
