"""Every plausible mistake of the catalogue (mistakes/lessonNN.toml), planted in its task's reference solution,
fails the task's check with a ✗ verdict that names it (its `says` fragments, in order) and gives a hint."""

import importlib

import pytest

from coursework.checks import CheckFailed
from coursework.tasks import defined_name
from tools.mistakes import check_name, planted, read_catalogue, says_all, tasks_by_id

CATALOGUE = read_catalogue()


def load(mistake):
    """The task's function or class with the mistake planted, run as the notebook runs it."""
    task = tasks_by_id()[(mistake.lesson, mistake.task)]
    source = planted(mistake)
    namespace = {}
    exec(task.setup, namespace)
    for _, code in task.earlier:
        exec(code, namespace)
    exec(source, namespace)
    return namespace[defined_name(source)]


def check_of(mistake):
    module, name = check_name(tasks_by_id()[(mistake.lesson, mistake.task)]).split(".")
    return getattr(importlib.import_module(f"coursework.checks.{module}"), name)


def test_the_catalogue_names_real_tasks_once_each():
    """Every entry names a task of a solved notebook, and no mistake is listed twice."""
    assert CATALOGUE, "mistakes/ is empty"
    seen = set()
    for mistake in CATALOGUE:
        assert (mistake.lesson, mistake.task) in tasks_by_id(), f"{mistake.name}: no such task"
        source = planted(mistake)
        assert source != tasks_by_id()[(mistake.lesson, mistake.task)].source, f"{mistake.name} changes nothing"
        assert (mistake.task, source) not in seen, f"{mistake.name} plants the same code as an earlier entry"
        seen.add((mistake.task, source))


@pytest.mark.filterwarnings("ignore:CUDA is not available")
@pytest.mark.parametrize("mistake", CATALOGUE, ids=[m.name for m in CATALOGUE])
def test_a_planted_mistake_fails_with_its_message(mistake, capsys):
    fn = load(mistake)
    capsys.readouterr()
    with pytest.raises(CheckFailed) as failed:
        check_of(mistake)(fn)
    out = capsys.readouterr().out
    assert says_all(str(failed.value), mistake.says), f"the verdict does not say {mistake.says}: {failed.value}"
    assert out.startswith("✗") and "Hint:" in out
