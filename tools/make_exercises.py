"""Generate the student notebooks in exercises/ from the solved notebooks in solutions/ (`make exercises`).

    python tools/make_exercises.py            # write exercises/NN_*.py and their paired .ipynb
    python tools/make_exercises.py --check    # exit 1 and name the files when exercises/ is out of date

The solutions (jupytext percent `.py` files) are the single source of truth. In every cell:

- a block from a `### BEGIN SOLUTION` line to the matching `### END SOLUTION` line (both included) becomes
  `# YOUR CODE HERE` and `raise NotImplementedError()` at the indentation of the BEGIN line (in a markdown
  cell, the block becomes `YOUR ANSWER HERE`);
- a block from `### BEGIN HIDDEN TESTS` to `### END HIDDEN TESTS` is removed (the autograder still runs it:
  it grades with the solutions' own check cells).

Cell metadata (nbgrader's `grade`, `solution`, `locked`, `points`, `grade_id`, `schema_version`) is kept as
it is. The paired `.ipynb` is written without outputs, with cell ids derived from the grade_ids, so the
output depends only on the solutions: running the script twice changes nothing.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parents[1]
SOLUTION_BEGIN, SOLUTION_END = "### BEGIN SOLUTION", "### END SOLUTION"
HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
CODE_STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
MARKDOWN_STUB = ("YOUR ANSWER HERE",)
_CELL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_VERSION_LINE = re.compile(r'^.*jupytext_version["\']?\s*:.*$', re.MULTILINE)


class ExerciseError(ValueError):
    """A solution notebook whose markers do not pair up."""


def strip_solution(source: str, cell_type: str = "code", where: str = "") -> str:
    """Replace every solution block of one cell's source by the stub, and drop hidden-test blocks."""
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
                raise ExerciseError(f"{where}line {number} of the cell: `{marker}` without its BEGIN line")
            else:
                out.append(line)
        elif marker == block:
            block = None
        elif marker in (SOLUTION_BEGIN, HIDDEN_BEGIN):
            raise ExerciseError(f"{where}line {number} of the cell: `{marker}` inside another block")
    if block is not None:
        raise ExerciseError(f"{where}a block is not closed: `{block}` is missing")
    return "\n".join(out)


def make_exercise(notebook: nbformat.NotebookNode, name: str = "") -> nbformat.NotebookNode:
    """The student version of a solved notebook (a new object; cell ids set from grade_ids)."""
    exercise = nbformat.from_dict(nbformat.v4.new_notebook())
    exercise.metadata = nbformat.from_dict(dict(notebook.metadata))
    exercise.nbformat, exercise.nbformat_minor = 4, 5
    used: set[str] = set()
    for index, cell in enumerate(notebook.cells):
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "")
        where = f"{name}, cell {index + 1} ({grade_id or 'no grade_id'}): "
        source = strip_solution(cell.source, cell.cell_type, where)
        metadata = nbformat.from_dict(dict(cell.metadata))
        if cell.cell_type == "code":
            new = nbformat.v4.new_code_cell(source, metadata=metadata)
        elif cell.cell_type == "markdown":
            new = nbformat.v4.new_markdown_cell(source, metadata=metadata)
        else:
            new = nbformat.v4.new_raw_cell(source, metadata=metadata)
        cell_id = grade_id if _CELL_ID.match(grade_id or "") and grade_id not in used else f"cell-{index}"
        used.add(cell_id)
        new.id = cell_id
        exercise.cells.append(new)
    return exercise


def render(source: Path) -> dict[Path, str]:
    """Texts of exercises/<name>.py and exercises/<name>.ipynb generated from one solution `source`."""
    notebook = jupytext.read(source)
    exercise = make_exercise(notebook, source.name)
    target = source.parent.parent / "exercises" / source.name
    return {
        target: jupytext.writes(exercise, fmt="py:percent"),
        target.with_suffix(".ipynb"): jupytext.writes(exercise, fmt="ipynb"),
    }


def solution_sources(root: Path = ROOT) -> list[Path]:
    return sorted((root / "solutions").glob("[0-9][0-9]_*.py"))


def _normalise(text: str) -> str:
    """Ignore the jupytext version stamp, which differs between otherwise identical installs."""
    return _VERSION_LINE.sub("", text)


def stale_exercises(root: Path = ROOT) -> list[Path]:
    """Generated-looking files in exercises/ whose solution no longer exists."""
    names = {p.stem for p in solution_sources(root)}
    return sorted(
        p for p in (root / "exercises").glob("[0-9][0-9]_*") if p.suffix in (".py", ".ipynb") and p.stem not in names
    )


def check(root: Path = ROOT, verbose: bool = True) -> list[str]:
    """Problems found (empty when exercises/ equals what would be generated)."""
    problems = []
    for source in solution_sources(root):
        for target, text in render(source).items():
            relative = target.relative_to(root)
            if not target.exists():
                problems.append(f"{relative} is missing")
                continue
            committed = target.read_text(encoding="utf-8")
            if _normalise(committed) != _normalise(text):
                problems.append(f"{relative} differs from what make_exercises.py generates")
                if verbose:
                    diff = difflib.unified_diff(
                        committed.splitlines(),
                        text.splitlines(),
                        f"{relative} (committed)",
                        f"{relative} (generated)",
                        lineterm="",
                        n=1,
                    )
                    problems[-1] += "\n" + "\n".join(list(diff)[:40])
    for path in stale_exercises(root):
        problems.append(f"{path.relative_to(root)} has no solution notebook in solutions/ (delete it)")
    return problems


def write(root: Path = ROOT) -> list[Path]:
    """Write every exercise notebook; returns the files that changed."""
    changed = []
    (root / "exercises").mkdir(exist_ok=True)
    for source in solution_sources(root):
        for target, text in render(source).items():
            if not target.exists() or _normalise(target.read_text(encoding="utf-8")) != _normalise(text):
                target.write_text(text, encoding="utf-8")
                changed.append(target)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 when exercises/ is out of date")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this repository)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    sources = solution_sources(root)
    if not sources:
        print(f"no solution notebooks in {root / 'solutions'} (expected NN_<name>.py)")
        return 0
    try:
        if args.check:
            problems = check(root)
            for problem in problems:
                print(problem)
            if problems:
                print("exercises/ is out of date: run `make exercises` and commit the result")
                return 1
            print(f"exercises/ is up to date ({len(sources)} notebooks)")
            return 0
        changed = write(root)
    except ExerciseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in changed:
        print(f"wrote {path.relative_to(root)}")
    for path in stale_exercises(root):
        print(f"warning: {path.relative_to(root)} has no solution notebook in solutions/ (delete it)")
    print(f"{len(sources)} exercise notebooks up to date ({len(changed)} files written)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
