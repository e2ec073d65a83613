"""Homework 08's checks, for what the catalogue (mistakes/lesson08.toml) cannot plant: the checks leave global
state alone, and the checks of the trained models read a saved file, in the grader's mode (the full run's
thresholds are not met by a short run)."""

import json
import math
from pathlib import Path

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


REFERENCE = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "homework_cpu.json"


def test_the_full_thresholds_come_from_the_reference_run():
    """NLL_FULL and ACCURACY_FULL follow from the reference solution's full run over at least three seeds
    (benchmarks/homework.py): the worst seed's NLL plus 15% rounded up, and the accuracy midway between the
    unconditional model's best and the conditional model's worst rounded to a tenth, so that every
    reference seed passes with margin and an unconditional model fails."""
    run = json.loads(REFERENCE.read_text())
    rows = run["rows"]
    cond = [r for r in rows if r["model"] == "conditional"]
    uncond = [r for r in rows if r["model"] == "unconditional"]
    assert len({r["seed"] for r in cond}) >= 3 and len({r["seed"] for r in uncond}) >= 3
    assert run["epochs"] == 12 and run["train_images"] == 4000, "the run is not the notebook's full mode"
    assert lesson08.NLL_FULL == math.ceil(1.15 * max(r["test_nats"] for r in uncond))
    middle = (max(r["digit_accuracy"] for r in uncond) + min(r["digit_accuracy"] for r in cond)) / 2
    assert lesson08.ACCURACY_FULL == round(middle, 1)
    assert max(r["digit_accuracy"] for r in uncond) < lesson08.ACCURACY_FULL < min(r["digit_accuracy"] for r in cond)


def test_the_task_texts_quote_the_checks_thresholds():
    """What Tasks 3 and 4 tell the student they must reach is what the checks ask for."""
    text = (Path(__file__).resolve().parents[1] / "solutions" / "08_homework.py").read_text().replace("\n# ", " ")
    bits = lesson08.NLL_FULL / (14 * 14 * math.log(2))
    assert f"below {lesson08.NLL_FULL:.0f} nats per image ({bits:.2f} bits/dim)" in text
    assert f"at least {lesson08.ACCURACY_FULL:.0%} of them must be the digit asked for" in text


def test_the_readme_quotes_the_reference_run():
    """The README's table of the homework's reference run is the run on record, seed by seed."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    rows = json.loads(REFERENCE.read_text())["rows"]
    for model in ("unconditional", "class-conditional"):
        line = next(x for x in readme.splitlines() if x.startswith(f"| {model}, seeds"))
        ours = [r for r in rows if r["model"] == model.removeprefix("class-")]
        assert " / ".join(f"{r['train_wall_s']:.0f}" for r in ours) in line
        assert " / ".join(f"{r['test_nats']:.2f}" for r in ours) in line
        assert " / ".join(f"{r['digit_accuracy']:.0%}" for r in ours) in line
