"""The graded cells of a solution notebook as code, for the check tests: run a task's reference
solution, a mutated copy of it (a planted bug), or its exercise stub."""

import re
from pathlib import Path

SOLUTIONS = Path(__file__).resolve().parents[1] / "solutions"


class SolutionCells:
    """Code cells of `solutions/<name>.py` (percent format) by nbgrader grade_id.

    tasks: task grade_ids in notebook order whose reference solutions later tasks use; `solution()`
    runs the setup cell, then the tasks before the requested one, then the requested cell.
    """

    def __init__(self, name, tasks=()):
        self.path = SOLUTIONS / f"{name}.py"
        self.tasks = list(tasks)
        self.cells = self._read()

    def _read(self):
        cells, current, lines = {}, None, []
        for line in self.path.read_text().splitlines() + ["# %% END"]:
            if line.startswith("# %%"):
                if current:
                    cells[current] = "\n".join(lines)
                match = re.search(r'"grade_id": "([^"]+)"', line)
                current = match.group(1) if match and "[markdown]" not in line else None
                lines = []
            else:
                lines.append(line)
        return cells

    def solution(self, grade_id, *replacements):
        """The task function defined by cell `grade_id`, with (old, new) source replacements applied."""
        source = self.cells[grade_id]
        for old, new in replacements:
            assert old in source, f"mutation target not found in {grade_id}: {old!r}"
            source = source.replace(old, new)
        namespace = {}
        exec(self.cells["setup"], namespace)
        for earlier in self.tasks[: self.tasks.index(grade_id)] if grade_id in self.tasks else []:
            exec(self.cells[earlier], namespace)
        exec(source, namespace)
        name = re.search(r"^(?:def|class) (\w+)", source, re.MULTILINE).group(1)
        return namespace[name]

    def stub(self, grade_id):
        """The exercise version: the solution block replaced by raise NotImplementedError()."""
        src = self.cells[grade_id]
        block = src[src.index("    ### BEGIN SOLUTION") : src.index("### END SOLUTION") + len("### END SOLUTION")]
        return self.solution(grade_id, (block, "    raise NotImplementedError()"))


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
