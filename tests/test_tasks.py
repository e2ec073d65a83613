"""coursework.tasks, the one reader of the solved notebooks: every task it finds is graded, its line numbers
point into the .py, its stub is the learner's exercise, and a task loads the way the notebook runs it."""

from pathlib import Path

import pytest

from coursework.tasks import SOLUTIONS, TaskError, read_notebook, read_tasks, solution_notebooks

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = solution_notebooks()

TOY = '''# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "solution": false}
# # Toy

# %% nbgrader={"grade": false, "grade_id": "setup", "solution": false}
K = 10

# %% [markdown] nbgrader={"grade": false, "grade_id": "t1_text", "solution": false}
# ## Task 1 · Add K (1 point)

# %% nbgrader={"grade": false, "grade_id": "t1_add", "solution": true}
def add(x):
    """x + K."""
    ### BEGIN SOLUTION
    return x + K
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "t1_add_check", "points": 1, "solution": false}
assert add(1) == 11

# %% nbgrader={"grade": false, "grade_id": "t2_twice", "solution": true}
def twice(x):
    if x is None:
        ### BEGIN SOLUTION
        return 0
        ### END SOLUTION
    return 2 * add(x)


# %% nbgrader={"grade": true, "grade_id": "t2_twice_check", "points": 2.5, "solution": false}
assert twice(1) == 22
'''


@pytest.fixture
def toy(tmp_path):
    path = tmp_path / "00_toy.py"
    path.write_text(TOY)
    return {task.grade_id: task for task in read_tasks(path)}


def test_the_solved_notebooks_are_found():
    assert NOTEBOOKS and all(path.parent == SOLUTIONS for path in NOTEBOOKS)
    assert [p.name[:2] for p in NOTEBOOKS] == sorted(p.name[:2] for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_task_of_a_solved_notebook_is_graded(path):
    """Each solution cell has its check cell, worth points, a solution block, the instructions above it and
    the setup cell; the earlier tasks are the solution cells above it, in order."""
    tasks = read_tasks(path)
    assert tasks, f"{path.name} has no solution cells"
    for k, task in enumerate(tasks):
        assert task.check and "checks." in task.check, f"{task.grade_id} has no check cell"
        assert task.points > 0, f"{task.grade_id}_check gives no points"
        assert task.blocks, f"{task.grade_id} has no solution block"
        assert task.text and task.text.startswith("## Task"), f"{task.grade_id} has no task text above it"
        assert task.setup, f"{path.name} has no setup cell"
        assert [gid for gid, _ in task.earlier] == [t.grade_id for t in tasks[:k]]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_line_points_at_the_cells_first_source_line(path):
    """The mutation tester reports a mutant by its line in the .py: the cell's lines start at `first_line`,
    right under the cell's `# %%` header."""
    lines = path.read_text().split("\n")
    for task in read_tasks(path):
        start = task.first_line - 1  # 0-based
        assert lines[start - 1].startswith("# %%") and f'"grade_id": "{task.grade_id}"' in lines[start - 1]
        assert lines[start : start + len(task.source.split("\n"))] == task.source.split("\n")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_stub_is_the_learners_exercise(path):
    """What the check tests run as the stub is, to the letter, the cell in exercises/."""
    exercise = read_notebook(ROOT / "exercises" / path.name)
    cells = {c.metadata["nbgrader"]["grade_id"]: c.source for c in exercise.cells}
    for task in read_tasks(path):
        assert "raise NotImplementedError()" in task.stub and "### BEGIN SOLUTION" not in task.stub
        assert task.stub == cells[task.grade_id]


def test_a_task_loads_after_the_setup_and_the_earlier_tasks(toy):
    assert toy["t1_add"].first_line == 11 and toy["t2_twice"].points == 2.5
    twice = toy["t2_twice"].load()
    assert twice(1) == 22 and twice(None) == 0
    alone = toy["t2_twice"].load(earlier=[])  # the earlier task not run: `add` is missing
    with pytest.raises(NameError):
        alone(1)


def test_a_replacement_plants_a_bug_and_one_that_does_not_apply_raises(toy):
    assert toy["t1_add"].load(("x + K", "x - K"))(1) == -9
    assert toy["t1_add"].load()(1) == 11  # each load starts afresh from the reference
    with pytest.raises(TaskError, match="not in the cell"):
        toy["t1_add"].load(("x * K", "x"))


def test_a_stub_raises_not_implemented_at_the_blocks_indentation(toy):
    with pytest.raises(NotImplementedError):
        toy["t1_add"].load(stub=True)(1)
    twice = toy["t2_twice"].load(stub=True)
    assert twice(2) == 24  # only the block is the learner's
    with pytest.raises(NotImplementedError):
        twice(None)
