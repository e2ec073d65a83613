"""The graded cells of a solution notebook as code, for the check tests: run a task's reference
solution, a mutated copy of it (a planted bug), or its exercise stub (the notebook read by coursework.tasks)."""

from pathlib import Path

from coursework.tasks import code_cells, notebook_tasks, read_notebook

SOLUTIONS = Path(__file__).resolve().parents[1] / "solutions"


class SolutionCells:
    """Code cells of `solutions/<name>.py` (percent format) by nbgrader grade_id.

    tasks: task grade_ids in notebook order whose reference solutions later tasks use; `solution()`
    runs the setup cell, then the tasks before the requested one, then the requested cell.
    """

    def __init__(self, name, tasks=()):
        self.path = SOLUTIONS / f"{name}.py"
        self.tasks = list(tasks)
        notebook = read_notebook(self.path)
        self.cells = code_cells(notebook)
        self.by_id = {task.grade_id: task for task in notebook_tasks(notebook, name)}

    def _earlier(self, grade_id):
        return self.tasks[: self.tasks.index(grade_id)] if grade_id in self.tasks else []

    def solution(self, grade_id, *replacements):
        """The task function defined by cell `grade_id`, with (old, new) source replacements applied."""
        return self.by_id[grade_id].load(*replacements, earlier=self._earlier(grade_id))

    def stub(self, grade_id):
        """The exercise version: the solution block replaced by raise NotImplementedError()."""
        return self.by_id[grade_id].load(stub=True, earlier=self._earlier(grade_id))


def assert_checks_leave_global_state_alone(calls):
    """Run each check on its function, `calls` = [(check, fn), ...], with torch's global generator seeded:
    afterwards the generator is where it was (the checks draw from their own) and so is the thread count."""
    import torch

    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    for check, fn in calls:
        check(fn)
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads
