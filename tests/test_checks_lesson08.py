"""Homework 08's checks, for what the catalogue (mistakes/lesson08.toml) cannot plant: the checks leave global
state alone, and the checks of the trained models read a saved file, in the grader's mode (the full run's
thresholds are not met by a short run)."""

import pytest
import torch
from solution_cells import SolutionCells, assert_checks_leave_global_state_alone

from coursework.checks import CheckFailed, lesson08

TASKS = ["t08_gated_layer", "t08_model", "t08_train", "t08_conditioned"]


@pytest.fixture(scope="module")
def cells():
    return SolutionCells("08_homework", TASKS)


def test_checks_leave_global_state_alone(cells):
    assert_checks_leave_global_state_alone(
        [
            (lesson08.check_gated_layer, cells.solution("t08_gated_layer")),
            (lesson08.check_model, cells.solution("t08_model")),
        ]
    )


def _saved(cells, path, conditional=False, train=False):
    """A HomeworkPixelCNN saved as the task asks, untrained (or trained for one short epoch)."""
    train_homework = cells.solution("t08_train")
    if train:
        train_homework(str(path), lesson08._short_data(), conditional=conditional, epochs=1)
    else:
        model = train_homework.__globals__["HomeworkPixelCNN"]((1, 14, 14), 8, (1, 2), 10 if conditional else None)
        torch.save({"config": model.config, "state_dict": model.state_dict()}, path)
    return train_homework


def test_a_missing_file_is_named_in_full_mode(cells, tmp_path, monkeypatch, capsys):
    """In full mode the check never trains: a notebook handed in without its weights fails."""
    monkeypatch.delenv("COURSE_FAST", raising=False)
    with pytest.raises(CheckFailed, match="there is no file"):
        lesson08.check_trained(cells.solution("t08_train"), str(tmp_path / "nothing.pt"))


def test_an_untrained_model_fails_in_either_mode(cells, tmp_path, monkeypatch, capsys):
    fn = _saved(cells, tmp_path / "m.pt")
    for fast in ("1", ""):
        monkeypatch.setenv("COURSE_FAST", fast)
        with pytest.raises(CheckFailed, match="has not learned enough"):
            lesson08.check_trained(fn, str(tmp_path / "m.pt"))


def test_a_short_run_passes_fast_mode_but_not_the_full_threshold(cells, tmp_path, monkeypatch, capsys):
    """The grader's mode decides the threshold: a model trained for one short epoch is enough for the short
    run's threshold, never for the full run's."""
    fn = _saved(cells, tmp_path / "m.pt", train=True)
    monkeypatch.setenv("COURSE_FAST", "1")
    lesson08.check_trained(fn, str(tmp_path / "m.pt"))
    monkeypatch.delenv("COURSE_FAST")
    with pytest.raises(CheckFailed, match="has not learned enough"):
        lesson08.check_trained(fn, str(tmp_path / "m.pt"))


def test_the_conditional_check_refuses_an_unconditional_file(cells, tmp_path, capsys):
    _saved(cells, tmp_path / "m.pt")
    with pytest.raises(CheckFailed, match="not conditioned on the 10 digits"):
        lesson08.check_conditioned(cells.solution("t08_conditioned"), str(tmp_path / "m.pt"))


def test_an_untrained_conditional_model_fails_the_full_accuracy(cells, tmp_path, monkeypatch, capsys):
    """In full mode the classifier must read most samples as their digit; an untrained model draws noise."""
    _saved(cells, tmp_path / "m.pt", conditional=True)
    monkeypatch.delenv("COURSE_FAST", raising=False)
    with pytest.raises(CheckFailed, match="the digit classifier reads only"):
        lesson08.check_conditioned(cells.solution("t08_conditioned"), str(tmp_path / "m.pt"))
