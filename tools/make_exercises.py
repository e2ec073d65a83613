"""Generate the student notebooks in exercises/ from the solved notebooks in solutions/ (`make exercises`).

    python -m tools.make_exercises            # write exercises/NN_*.py (+ .ipynb) and the lessons' Exercises sections
    python -m tools.make_exercises --check    # exit 1 and name the files when any of them is out of date

The solutions (jupytext percent `.py` files) are the single source of truth, read by `coursework.tasks`
(the reader the check tests, the mutation tester and the grader share). In every cell (`strip_solution`):

- a block from a `### BEGIN SOLUTION` line to the matching `### END SOLUTION` line (both included) becomes
  `# YOUR CODE HERE` and `raise NotImplementedError()` at the indentation of the BEGIN line (in a markdown
  cell, the block becomes `YOUR ANSWER HERE`);
- a block from `### BEGIN HIDDEN TESTS` to `### END HIDDEN TESTS` is removed (the autograder still runs it:
  it grades with the solutions' own check cells).

Cell metadata (nbgrader's `grade`, `solution`, `locked`, `points`, `grade_id`, `schema_version`) is kept as
it is. The paired `.ipynb` is written without outputs, with cell ids derived from the grade_ids, so the
output depends only on the solutions: running the script twice changes nothing.

The "## Exercises" section of each lesson (`notebooks/NN_<name>.py`, same name as its solution) is generated
too, from the exercise notebook's task headings (`## Task N · <title> (P points)`, the one above each
solution cell): one sentence on where the graded notebook is, then one bullet per task with its title, points
and the first sentence of its instructions. The section is a markdown cell of its own that starts with
`## Exercises`; the script owns the whole cell (put anything else in the next cell). It rewrites the lesson's
`.py` and syncs the paired `.ipynb` with `jupytext --sync`, which keeps the lesson's outputs. `--check` reports
a lesson whose section is out of date.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import jupytext
import nbformat

from coursework.tasks import (  # the one reader of the solved notebooks
    TaskError,
    grade_id,
    notebook_tasks,
    read_notebook,
    solution_notebooks,
    strip_solution,
)

ROOT = Path(__file__).resolve().parents[1]
_CELL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_VERSION_LINE = re.compile(r'^.*jupytext_version["\']?\s*:.*$', re.MULTILINE)
EXERCISES_HEADING = "## Exercises"
_TASK_HEADING = re.compile(r"^## Task (?P<number>\d+) · (?P<title>.+) \((?P<points>\d+(?:\.\d+)?) points?\)\s*$")
_HEADING = re.compile(r"^#{1,2}\s")  # a heading that ends the Exercises section (### subheadings do not)
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s")
_NO_LINE_START = re.compile(r"^(?:[-+*#>=|→]|\d+[.)]$)")
_ABBREVIATIONS = ("e.g", "i.e", "etc", "cf", "vs")
WRAP = 106  # markdown width: with the `# ` of the percent format, lines stay within the lessons' 108


# a solution notebook whose markers do not pair up, or whose task headings are not as expected
ExerciseError = TaskError


def make_exercise(notebook: nbformat.NotebookNode, name: str = "") -> nbformat.NotebookNode:
    """The student version of a solved notebook (a new object; cell ids set from grade_ids)."""
    exercise = nbformat.from_dict(nbformat.v4.new_notebook())
    exercise.metadata = nbformat.from_dict(dict(notebook.metadata))
    exercise.nbformat, exercise.nbformat_minor = 4, 5
    used: set[str] = set()
    for index, cell in enumerate(notebook.cells):
        gid = grade_id(cell) or ""
        where = f"{name}, cell {index + 1} ({gid or 'no grade_id'}): "
        source = strip_solution(cell.source, cell.cell_type, where)
        metadata = nbformat.from_dict(dict(cell.metadata))
        if cell.cell_type == "code":
            new = nbformat.v4.new_code_cell(source, metadata=metadata)
        elif cell.cell_type == "markdown":
            new = nbformat.v4.new_markdown_cell(source, metadata=metadata)
        else:
            new = nbformat.v4.new_raw_cell(source, metadata=metadata)
        cell_id = gid if _CELL_ID.match(gid) and gid not in used else f"cell-{index}"
        used.add(cell_id)
        new.id = cell_id
        exercise.cells.append(new)
    return exercise


def render(source: Path) -> dict[Path, str]:
    """Texts of exercises/<name>.py and exercises/<name>.ipynb generated from one solution `source`."""
    notebook = read_notebook(source)
    exercise = make_exercise(notebook, source.name)
    target = source.parent.parent / "exercises" / source.name
    return {
        target: jupytext.writes(exercise, fmt="py:percent"),
        target.with_suffix(".ipynb"): jupytext.writes(exercise, fmt="ipynb"),
    }


def solution_sources(root: Path = ROOT) -> list[Path]:
    return solution_notebooks(root / "solutions")


def _normalise(text: str) -> str:
    """Ignore the jupytext version stamp, which differs between otherwise identical installs."""
    return _VERSION_LINE.sub("", text)


def stale_exercises(root: Path = ROOT) -> list[Path]:
    """Generated-looking files in exercises/ whose solution no longer exists."""
    names = {p.stem for p in solution_sources(root)}
    return sorted(
        p for p in (root / "exercises").glob("[0-9][0-9]_*") if p.suffix in (".py", ".ipynb") and p.stem not in names
    )


# ------------------------------------------------------------------ the lessons' "## Exercises" sections
class Task(NamedTuple):
    """One graded task of an exercise notebook, as its heading and instructions state it."""

    number: int
    title: str
    points: str  # as written in the heading: "2", "1.5"
    summary: str  # the first sentence of the instructions, one line of markdown


def _spans(text: str):
    """Yield (index, char, outside) for each character: outside is False inside `code` and $math$ spans."""
    code = math = False
    for index, char in enumerate(text):
        if char == "`" and not math:
            code = not code
            yield index, char, False
        elif char == "$" and not code:
            math = not math
            yield index, char, False
        else:
            yield index, char, not (code or math)


def _words(text: str) -> list[str]:
    """Split at spaces outside code and math spans, so that wrapping never breaks a span."""
    words, start = [], 0
    for index, char, outside in _spans(text):
        if outside and char == " ":
            words.append(text[start:index])
            start = index + 1
    words.append(text[start:])
    return [w for w in words if w]


def _wrap(words: list[str], first: str = "", indent: str = "", width: int = WRAP) -> list[str]:
    """Fill lines greedily with `words` (never broken), the first line starting with `first`."""
    units: list[str] = []
    for word in words:  # a word that would read as markdown syntax (or an arrow) at a line start stays glued
        if units and _NO_LINE_START.match(word):
            units[-1] += " " + word
        else:
            units.append(word)
    lines, line, empty = [], first, True
    for word in units:
        if not empty and len(line) + 1 + len(word) > width:
            lines.append(line)
            line, empty = indent + word, False
        else:
            line, empty = (line + word if empty else f"{line} {word}"), False
    lines.append(line)
    return lines


def first_sentence(text: str) -> str:
    """The first sentence of a paragraph of markdown (a trailing colon becomes a full stop)."""
    text = " ".join(text.split())
    for index, char, outside in _spans(text):
        if outside and char in ".?!" and (index + 1 == len(text) or text[index + 1] == " "):
            before = text[:index].split() or [""]
            if before[-1].lstrip("(").lower() not in _ABBREVIATIONS:  # not the dot of e.g.
                text = text[: index + 1]
                break
    text = text.rstrip()
    if text.endswith(":"):
        text = text[:-1].rstrip() + "."
    return text if text.endswith((".", "?", "!")) else text + "."


def _summary(description: str) -> str:
    """One line from a task's instructions: the first sentence of its `Write ...` paragraph, else of its first
    paragraph. Code fences, display math, list items and the `**Check**` paragraph are skipped."""
    lines, fenced = [], False
    for line in description.split("\n"):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    paragraphs = []
    for paragraph in re.split(r"\n\s*\n", "\n".join(lines)):
        lead = []
        for line in paragraph.strip("\n").split("\n"):
            if _LIST_ITEM.match(line):
                break
            lead.append(line)
        lead_text = " ".join(" ".join(lead).split())
        if lead_text.startswith("**Check"):
            break
        if lead_text and not lead_text.startswith(("$$", "#", "YOUR ANSWER HERE")):
            paragraphs.append(lead_text)
    if not paragraphs:
        return ""
    return first_sentence(next((p for p in paragraphs if p.startswith("Write ")), paragraphs[0]))


def exercise_tasks(notebook: nbformat.NotebookNode, name: str = "") -> list[Task]:
    """The tasks of an exercise (or solution) notebook, from the `## Task N · <title> (P points)` cell above
    each of its solution cells (a heading above several solution cells counts once)."""
    texts = dict.fromkeys(task.text for task in notebook_tasks(notebook, name) if task.text is not None)
    tasks = []
    for text in texts:
        heading, _, description = text.partition("\n")
        match = _TASK_HEADING.match(heading)
        if not match:
            raise ExerciseError(f"{name}: task heading {heading!r} is not `## Task N · <title> (P points)`")
        tasks.append(Task(int(match["number"]), match["title"].strip(), match["points"], _summary(description)))
    numbers = [t.number for t in tasks]
    if numbers != list(range(1, len(tasks) + 1)):
        raise ExerciseError(f"{name}: tasks are numbered {numbers}, not 1 to {len(tasks)}")
    return tasks


def _points(value: float) -> str:
    text = f"{value:g}"
    return f"{text} point" if value == 1 else f"{text} points"


def exercises_section(notebook: nbformat.NotebookNode, exercise: str) -> str:
    """The markdown of a lesson's "## Exercises" cell, from its exercise notebook (`exercise`: its path in the
    repository, e.g. `exercises/01_self_supervised_likelihood.ipynb`)."""
    tasks = exercise_tasks(notebook, Path(exercise).name)
    if not tasks:
        raise ExerciseError(f"{exercise} has no `## Task N · <title> (P points)` cells")
    total = sum(float(t.points) for t in tasks)
    count = f"{len(tasks)} task" + ("s" if len(tasks) != 1 else "")
    intro = (
        f"The graded notebook `{exercise}` (its solved twin is in `solutions/`) has {count} worth"
        f" {_points(total)}; the check cell under each task tells you as you go whether your code is right,"
        " and `pixelcnn-grade` grades the whole notebook."
    )
    lines = [EXERCISES_HEADING, *_wrap(_words(intro))]
    for task in tasks:
        words = [*_words(f"**Task {task.number} · {task.title}**"), f"({_points(float(task.points))})."]
        lines.extend(_wrap(words + _words(task.summary), first="- ", indent="  "))
    return "\n".join(lines)


def lesson_for(source: Path, root: Path = ROOT) -> Path:
    """The lesson notebook (percent .py) whose exercises are generated from solution `source`."""
    return root / "notebooks" / source.name


def _section_bounds(lines: list[str]) -> tuple[int, int] | None:
    """Lines [start, end) of the Exercises section in one cell's source: its heading up to the next heading
    (level 1 or 2) or the end of the cell."""
    starts = [i for i, line in enumerate(lines) if line.rstrip() == EXERCISES_HEADING]
    if not starts:
        return None
    start = starts[0]
    end = next((i for i in range(start + 1, len(lines)) if _HEADING.match(lines[i])), len(lines))
    return start, end


def _exercises_cells(notebook: nbformat.NotebookNode) -> list[int]:
    return [
        i
        for i, cell in enumerate(notebook.cells)
        if cell.cell_type == "markdown" and _section_bounds(cell.source.split("\n")) is not None
    ]


def lesson_section(notebook: nbformat.NotebookNode) -> str | None:
    """The current Exercises section of a lesson: its own cell, or (before the first `make exercises`) the
    part of a cell from the heading to the next heading."""
    found = _exercises_cells(notebook)
    if not found:
        return None
    lines = notebook.cells[found[0]].source.split("\n")
    start, end = _section_bounds(lines)
    return "\n".join(lines[start:end]).strip()


def _is_own_cell(notebook: nbformat.NotebookNode) -> bool:
    found = _exercises_cells(notebook)
    if len(found) != 1:
        return False
    lines = notebook.cells[found[0]].source.strip().split("\n")
    return _section_bounds(lines) == (0, len(lines))


def replace_section(notebook: nbformat.NotebookNode, section: str, name: str = "") -> nbformat.NotebookNode:
    """A copy of the lesson with `section` as its Exercises cell. A section that shares its cell with other
    text is split off into a cell of its own; text after it (from the next heading) moves to the next cell."""
    found = _exercises_cells(notebook)
    if len(found) != 1:
        raise ExerciseError(
            f"{name}: {'no' if not found else len(found)} `{EXERCISES_HEADING}` cells"
            f" (expected one markdown cell starting with `{EXERCISES_HEADING}`)"
        )
    lesson = nbformat.from_dict(notebook)
    index = found[0]
    cell = lesson.cells[index]
    lines = cell.source.split("\n")
    start, end = _section_bounds(lines)
    before, after = "\n".join(lines[:start]).strip("\n"), "\n".join(lines[end:]).strip("\n")
    cells = []
    if before.strip():
        cell.source = before
        cells.append(cell)
        cells.append(nbformat.v4.new_markdown_cell(section))
    else:
        cell.source = section
        cells.append(cell)
    if after.strip():
        cells.append(nbformat.v4.new_markdown_cell(after))
    for new in cells:
        new.pop("id", None)  # jupytext gives the new .ipynb cells their ids when it syncs
    lesson.cells[index : index + 1] = cells
    return lesson


def _jupytext_config(path: Path):
    from jupytext.config import load_jupytext_config

    return load_jupytext_config(str(path))


def render_lesson(lesson: Path, section: str) -> str:
    """The text of lesson `lesson` (percent .py) with `section` as its Exercises cell."""
    notebook = jupytext.read(lesson)
    updated = replace_section(notebook, section, str(lesson))
    return jupytext.writes(updated, fmt="py:percent", config=_jupytext_config(lesson))


def _ipynb_section(notebook: Path) -> str | None:
    """The Exercises section of a paired .ipynb (read as JSON: lessons carry large outputs)."""
    data = json.loads(notebook.read_text(encoding="utf-8"))
    cells = [
        nbformat.from_dict({"cell_type": c["cell_type"], "source": "".join(c.get("source", [])), "metadata": {}})
        for c in data.get("cells", [])
    ]
    return lesson_section(nbformat.from_dict({"cells": cells}))


def lesson_sections(root: Path = ROOT) -> list[tuple[Path, str]]:
    """(lesson .py, its generated Exercises section) for every solution that has a lesson notebook."""
    out = []
    for source in solution_sources(root):
        lesson = lesson_for(source, root)
        if lesson.exists():
            exercise = make_exercise(read_notebook(source), source.name)
            relative = (root / "exercises" / source.name).with_suffix(".ipynb").relative_to(root)
            out.append((lesson, exercises_section(exercise, relative.as_posix())))
    return out


def check_lessons(root: Path = ROOT, verbose: bool = True) -> list[str]:
    """Problems with the lessons' Exercises sections (empty when each is what would be generated)."""
    problems = []
    for lesson, section in lesson_sections(root):
        relative = lesson.relative_to(root)
        notebook = jupytext.read(lesson)
        current = lesson_section(notebook)
        if current is None:
            problems.append(f"{relative} has no `{EXERCISES_HEADING}` section (a markdown cell starting with it)")
            continue
        if current != section or not _is_own_cell(notebook):
            problems.append(f"{relative}: its Exercises section differs from what make_exercises.py generates")
            if verbose:
                diff = difflib.unified_diff(
                    current.splitlines(),
                    section.splitlines(),
                    f"{relative} (committed)",
                    f"{relative} (generated)",
                    lineterm="",
                    n=1,
                )
                problems[-1] += "\n" + "\n".join(list(diff)[:40])
            continue
        paired = lesson.with_suffix(".ipynb")
        if paired.exists() and _ipynb_section(paired) != section:
            problems.append(
                f"{paired.relative_to(root)}: its Exercises section differs from {relative}"
                f" (run `jupytext --sync {relative}`)"
            )
    return problems


def sync(lesson: Path) -> None:
    """Update the paired .ipynb from the lesson's .py, keeping its outputs (`jupytext --sync`)."""
    result = subprocess.run(
        [sys.executable, "-m", "jupytext", "--sync", "--quiet", str(lesson)], capture_output=True, text=True
    )
    if result.returncode:
        raise ExerciseError(f"jupytext --sync {lesson} failed:\n{result.stdout}{result.stderr}")


def write_lessons(root: Path = ROOT) -> list[Path]:
    """Rewrite every lesson's Exercises section that is out of date; returns the files that changed."""
    changed = []
    for lesson, section in lesson_sections(root):
        text = render_lesson(lesson, section)
        if text != lesson.read_text(encoding="utf-8"):
            lesson.write_text(text, encoding="utf-8")
            changed.append(lesson)
            paired = lesson.with_suffix(".ipynb")
            if paired.exists():
                sync(lesson)  # the .py is now the newer file: jupytext takes the inputs from it
                if _ipynb_section(paired) != section:
                    raise ExerciseError(f"jupytext --sync {lesson} left {paired.name} as it was: is the pair set up?")
                changed.append(paired)
    return changed


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
    return problems + check_lessons(root, verbose)


def write(root: Path = ROOT) -> list[Path]:
    """Write every exercise notebook; returns the files that changed."""
    changed = []
    (root / "exercises").mkdir(exist_ok=True)
    for source in solution_sources(root):
        for target, text in render(source).items():
            if not target.exists() or _normalise(target.read_text(encoding="utf-8")) != _normalise(text):
                target.write_text(text, encoding="utf-8")
                changed.append(target)
    return changed + write_lessons(root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 when exercises/ or a lesson is out of date"
    )
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
                print("exercises/ or a lesson's Exercises section is out of date: run `make exercises` and commit")
                return 1
            print(f"exercises/ and the lessons' Exercises sections are up to date ({len(sources)} notebooks)")
            return 0
        changed = write(root)
    except ExerciseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in changed:
        print(f"wrote {path.relative_to(root)}")
    for path in stale_exercises(root):
        print(f"warning: {path.relative_to(root)} has no solution notebook in solutions/ (delete it)")
    print(
        f"{len(sources)} exercise notebooks and their lessons' Exercises sections up to date ({len(changed)} files written)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
