"""The catalogue of learners' mistakes: every plausible wrong answer to a graded task, written once.

`mistakes/lessonNN.toml` lists, for the tasks of `solutions/NN_*.py`, each mistake with the edit that plants
it in the reference solution, the fragment of the verdict the task's check must print, and why it is wrong:

    [[mistake]]
    task = "t06_mixture"                       # the solution cell's grade_id
    why = "raw logits used as log-weights: the weights must be normalised (log_softmax)"
    says = "raw logits"                        # the check's ✗ verdict must contain this (or a list of
                                               # fragments it must contain in that order)
    old = "log_pi = F.log_softmax(logit_pi, dim=-1)[..., None]"
    new = "log_pi = logit_pi[..., None]"

Several edits at once: `replace = [["old", "new"], ...]`, applied in order, each `old` replaced wherever it
occurs in the cell. Each `old` must occur inside the task's solution block (what a learner writes).

Two programs read it: tests/test_mistakes.py plants every mistake and asserts the check fails with its
message; tools/mutate_solutions.py adds them to its generated mutants and reports any caught with the wrong
message. The catalogue quotes the reference solutions, so it stays out of the installed packages.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from coursework.tasks import SOLUTIONS, read_tasks, solution_notebooks

CATALOGUE = Path(__file__).resolve().parent.parent / "mistakes"


@dataclass(frozen=True)
class Mistake:
    lesson: str  # "06"
    task: str  # grade_id of the solution cell
    why: str  # the mistake, and why it is wrong
    says: tuple  # fragments of the check's verdict, in the order they appear in it
    replacements: tuple  # ((old, new), ...)

    @property
    def name(self) -> str:
        return f"lesson{self.lesson} {self.task}: {self.why}"


def _replacements(entry, where):
    if "replace" in entry:
        pairs = tuple(tuple(pair) for pair in entry["replace"])
    else:
        pairs = ((entry["old"], entry["new"]),)
    if not pairs or any(len(pair) != 2 or not pair[0] for pair in pairs):
        raise ValueError(f"{where}: give `old` and `new`, or `replace = [[old, new], ...]`")
    return pairs


def read_catalogue(folder=CATALOGUE) -> list[Mistake]:
    """Every mistake of `folder/lessonNN.toml`, in file order."""
    found = []
    for path in sorted(Path(folder).glob("lesson[0-9][0-9].toml")):
        lesson = path.stem[-2:]
        for k, entry in enumerate(tomllib.loads(path.read_text(encoding="utf-8")).get("mistake", [])):
            where = f"{path.name} mistake {k + 1} ({entry.get('task')})"
            missing = {"task", "why", "says"} - set(entry)
            if missing:
                raise ValueError(f"{where}: missing {', '.join(sorted(missing))}")
            says = (entry["says"],) if isinstance(entry["says"], str) else tuple(entry["says"])
            found.append(Mistake(lesson, entry["task"], entry["why"], says, _replacements(entry, where)))
    return found


@cache
def tasks_by_id(folder=SOLUTIONS) -> dict:
    """{(lesson, grade_id): Task} of every solved notebook."""
    return {(t.lesson, t.grade_id): t for path in solution_notebooks(folder) for t in read_tasks(path)}


def plant(task, mistake: Mistake) -> str:
    """`task`'s solution cell with the mistake planted: each `old` is replaced wherever it occurs inside the
    cell's solution blocks (what a learner writes), and must occur there."""
    lines = task.source.splitlines(keepends=True)
    pieces, start = [], 0  # alternating: outside a block, inside one (with its last newline), outside, ...
    for first, last in task.blocks:
        pieces += ["".join(lines[start : first - 1]), "".join(lines[first - 1 : last])]
        start = last
    pieces.append("".join(lines[start:]))
    for old, new in mistake.replacements:
        if not any(old in piece for piece in pieces[1::2]):
            raise ValueError(f"{mistake.name}: {old!r} is not inside the task's solution block")
        pieces[1::2] = [piece.replace(old, new) for piece in pieces[1::2]]
    return "".join(pieces)


def planted(mistake: Mistake, folder=SOLUTIONS) -> str:
    """The solution cell of the mistake's task (in the solved notebooks of `folder`), the mistake planted."""
    return plant(tasks_by_id(folder)[(mistake.lesson, mistake.task)], mistake)


def says_all(verdict: str, fragments) -> bool:
    """Whether `verdict` contains every fragment, in order."""
    position = 0
    for fragment in fragments:
        found = verdict.find(fragment, position)
        if found < 0:
            return False
        position = found + len(fragment)
    return True


def check_name(task) -> str:
    """The check a task's check cell calls: "lesson06.check_mixture" for `checks.lesson06.check_mixture(...)`."""
    for node in ast.walk(ast.parse(task.check or "")):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            parts, value = [node.func.attr], node.func.value
            while isinstance(value, ast.Attribute):
                parts.insert(0, value.attr)
                value = value.value
            if parts[-1].startswith("check_") and len(parts) >= 2:
                return ".".join(parts[-2:])
    raise ValueError(f"{task.notebook} {task.grade_id}: its check cell calls no check")
