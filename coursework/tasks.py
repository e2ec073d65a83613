"""The graded tasks of a solved notebook, read one way for every program that needs them.

A solved notebook (`solutions/NN_<name>.py`, jupytext percent format, paired with an .ipynb) is a list of
cells, each named by the nbgrader metadata it carries (`grade_id`). One task is three cells:

    the `## Task N · <title> (P points)` markdown cell   its instructions (`Task.text`)
    a code cell with nbgrader "solution": true           the reference, between `### BEGIN SOLUTION` and
                                                         `### END SOLUTION` lines (`Task.source`)
    the code cell `<grade_id>_check`, "grade": true      the check that grades it, worth `Task.points`

The exercise version of a cell (`strip_solution`) has each solution block replaced by
`raise NotImplementedError()`. The readers: the check tests (tests/solution_cells.py), the mutation
tester (tools/mutate_solutions.py), the exercise generator (tools/make_exercises.py) and the grader
(coursework/notebooks.py).

    tasks = read_tasks("solutions/01_self_supervised_likelihood.py")
    nll = tasks[0].load()                          # the setup cell, the tasks above, then this cell
    mutant = tasks[0].load(("sum(1)", "mean(1)"))  # the same with a planted bug
    stub = tasks[0].load(stub=True)                # the exercise version: raises NotImplementedError
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from pathlib import Path

SOLUTIONS = Path(__file__).resolve().parents[1] / "solutions"
SOLUTION_BEGIN, SOLUTION_END = "### BEGIN SOLUTION", "### END SOLUTION"
HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
CODE_STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
MARKDOWN_STUB = ("YOUR ANSWER HERE",)
TASK_HEADING = "## Task"


class TaskError(ValueError):
    """A cell whose solution markers do not pair up, or a replacement that does not apply to its cell."""


# -- cells and their nbgrader metadata -----------------------------------------------------------------
def read_notebook(path) -> dict:
    """A notebook (nbformat) from an .ipynb or a jupytext .py file."""
    import jupytext
    import nbformat

    path = Path(path)
    if path.suffix == ".ipynb":
        return nbformat.read(path, as_version=4)
    return jupytext.read(path)


def nbgrader(cell) -> dict:
    """A cell's nbgrader metadata ({} when it has none)."""
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta if isinstance(meta, dict) else {}


def grade_id(cell) -> str | None:
    gid = nbgrader(cell).get("grade_id")
    return gid if isinstance(gid, str) else None


def is_check_cell(cell) -> bool:
    """A graded code cell: nbgrader "grade": true, with a grade_id."""
    return cell.get("cell_type") == "code" and bool(nbgrader(cell).get("grade")) and grade_id(cell) is not None


def is_solution_cell(cell) -> bool:
    """A code cell the learner writes: nbgrader "solution": true, with a grade_id."""
    return cell.get("cell_type") == "code" and nbgrader(cell).get("solution") is True and grade_id(cell) is not None


def cell_points(cell) -> float:
    """A cell's nbgrader points: a finite number >= 0, else 0."""
    try:
        points = float(nbgrader(cell).get("points", 0) or 0)
    except (TypeError, ValueError):
        return 0.0
    return points if math.isfinite(points) and points >= 0 else 0.0


def code_cells(notebook) -> dict[str, str]:
    """{grade_id: source} of a notebook's code cells that have a grade_id."""
    return {grade_id(c): c.source for c in notebook.cells if c.cell_type == "code" and grade_id(c)}


# -- solution blocks and the exercise version of a cell ------------------------------------------------
def solution_blocks(source: str) -> list[tuple[int, int]]:
    """Line ranges (1-based, inclusive) of the lines strictly between each BEGIN and END SOLUTION line."""
    blocks, start = [], None
    for number, line in enumerate(source.splitlines(), 1):
        if line.strip() == SOLUTION_BEGIN:
            start = number + 1
        elif line.strip() == SOLUTION_END and start is not None:
            blocks.append((start, number - 1))
            start = None
    return blocks


def strip_solution(source: str, cell_type: str = "code", where: str = "") -> str:
    """The exercise version of one cell's source: every solution block (from its BEGIN line to its END line)
    becomes `# YOUR CODE HERE` and `raise NotImplementedError()` at the indentation of the BEGIN line
    (`YOUR ANSWER HERE` in a markdown cell), and every hidden-test block is dropped."""
    out: list[str] = []
    block: str | None = None  # the END marker we are waiting for
    for number, line in enumerate(source.split("\n"), 1):
        marker = line.strip().lstrip("#").strip() if cell_type == "markdown" else line.strip()
        marker = "### " + marker if cell_type == "markdown" and not marker.startswith("###") else marker
        if block is None:
            if marker == SOLUTION_BEGIN:
                indent = line[: len(line) - len(line.lstrip())]
                stub = MARKDOWN_STUB if cell_type == "markdown" else CODE_STUB
                out.extend(indent + text for text in stub)
                block = SOLUTION_END
            elif marker == HIDDEN_BEGIN:
                block = HIDDEN_END
            elif marker in (SOLUTION_END, HIDDEN_END):
                raise TaskError(f"{where}line {number} of the cell: `{marker}` without its BEGIN line")
            else:
                out.append(line)
        elif marker == block:
            block = None
        elif marker in (SOLUTION_BEGIN, HIDDEN_BEGIN):
            raise TaskError(f"{where}line {number} of the cell: `{marker}` inside another block")
    if block is not None:
        raise TaskError(f"{where}a block is not closed: `{block}` is missing")
    return "\n".join(out)


# -- running a cell ------------------------------------------------------------------------------------
def replace(source: str, replacements, where: str = "") -> str:
    """`source` with each (old, new) replacement applied; an `old` that is not there is an error."""
    for old, new in replacements:
        if old not in source:
            raise TaskError(f"{where}: {old!r} is not in the cell")
        source = source.replace(old, new)
    return source


def defined_name(source: str) -> str:
    """The name of the first function or class a cell defines at its top level."""
    defined = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return next(node.name for node in ast.parse(source).body if isinstance(node, defined))


# -- the tasks -----------------------------------------------------------------------------------------
@dataclass
class Task:
    """One graded task of a solved notebook."""

    notebook: str  # the notebook's name, e.g. "01_self_supervised_likelihood"
    grade_id: str  # of the solution cell
    source: str  # the solution cell
    blocks: list  # [(first, last)] line numbers in the cell (1-based) strictly inside BEGIN/END SOLUTION
    check: str | None  # the source of the <grade_id>_check cell
    points: float  # the check cell's points
    text: str | None  # the nearest `## Task` markdown cell above the solution cell: the instructions
    setup: str  # the source of the setup cell ("" when there is none)
    earlier: list  # [(grade_id, source)] of the solution cells above this one, in notebook order
    first_line: int | None = None  # number of the line of the notebook's .py that holds the cell's first line

    @property
    def lesson(self) -> str:
        """The two-digit lesson number, "01"."""
        return self.notebook[:2]

    @property
    def stub(self) -> str:
        """The exercise version of the solution cell (`strip_solution`)."""
        return strip_solution(self.source, where=f"{self.notebook} {self.grade_id}: ")

    def load(self, *replacements, stub=False, earlier=None) -> object:
        """The function or class the cell defines, run as the notebook runs it, in a fresh namespace: the setup
        cell, the solution cells above (only the grade_ids in `earlier`, when given), then this cell (its
        exercise version if `stub`) with each (old, new) replacement applied."""
        source = replace(self.stub if stub else self.source, replacements, f"{self.notebook} {self.grade_id}")
        namespace = {}
        exec(self.setup, namespace)
        for gid, code in self.earlier:
            if earlier is None or gid in earlier:
                exec(code, namespace)
        exec(source, namespace)
        return namespace[defined_name(source)]


def notebook_tasks(notebook, name: str = "", first_lines: dict | None = None) -> list[Task]:
    """The tasks of a notebook in order, one for every solution cell. `first_lines`: {cell index: line number},
    see `first_lines`."""
    cells = {grade_id(c): c for c in notebook.cells if c.cell_type == "code" and grade_id(c)}
    setup = cells["setup"].source if "setup" in cells else ""
    tasks, earlier, text = [], [], None
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "markdown" and cell.source.startswith(TASK_HEADING):
            text = cell.source
        if not is_solution_cell(cell):
            continue
        gid = grade_id(cell)
        check = cells.get(f"{gid}_check")
        tasks.append(
            Task(
                notebook=name,
                grade_id=gid,
                source=cell.source,
                blocks=solution_blocks(cell.source),
                check=check.source if check is not None else None,
                points=cell_points(check) if check is not None else 0.0,
                text=text,
                setup=setup,
                earlier=list(earlier),
                first_line=(first_lines or {}).get(index),
            )
        )
        earlier.append((gid, cell.source))
    return tasks


def first_lines(text: str, notebook) -> dict[int, int]:
    """{cell index: number of the line holding the cell's first source line} for the code cells of a
    percent-format file `text` read as `notebook`. Counted from the end, the k-th cell sits under the k-th
    `# %%` line (only a first cell may come without one); a cell whose source is not there as written (an
    escaped magic) gets no line."""
    lines = text.split("\n")
    headers = [n for n, line in enumerate(lines) if line.startswith("# %%")]
    found = {}
    for index, header in zip(reversed(range(len(notebook.cells))), reversed(headers)):
        cell = notebook.cells[index]
        source = cell.source.split("\n") if cell.source else []
        if cell.cell_type == "code" and lines[header + 1 : header + 1 + len(source)] == source:
            found[index] = header + 2  # 1-based, the line after the header
    return found


def read_tasks(path) -> list[Task]:
    """The tasks of a solved notebook file (.py or .ipynb); for a .py, with the line each cell starts on."""
    path = Path(path)
    notebook = read_notebook(path)
    lines = first_lines(path.read_text(encoding="utf-8"), notebook) if path.suffix == ".py" else {}
    return notebook_tasks(notebook, path.stem, lines)


def solution_notebooks(folder=SOLUTIONS) -> list[Path]:
    """The solved notebooks' sources in `folder` (`NN_<name>.py`), in lesson order."""
    return sorted(Path(folder).glob("[0-9][0-9]_*.py"))
