"""Preparing a submission for grading: read it, find its reference, put the reference's check cells in place.

1. A notebook's reference is the solved notebook of the lesson the grader was told (``--lesson``); else the
   one with the same name in the reference folder (default: the repository's ``solutions/``); else the one
   sharing the most nbgrader ``grade_id``s; else the one with the same two-digit lesson number. A notebook
   that matches none is not graded by its own cells unless the grader is told to trust them.
2. Every copy of a reference check cell (by ``grade_id``) is removed and the reference's check cell, with its
   metadata and points, is put at its reference position: after the cell that precedes it in the reference
   and the learner's own cells that follow that one (editing, deleting, duplicating or moving a check cell
   changes nothing; a helper cell below a task runs before its check). All outputs are cleared.
3. Each check cell runs wrapped (`check_source`): the checks are imported afresh (a monkeypatched check
   function is not the one that grades) and run in `coursework.checkcell.graded` (gradients on, float32,
   fixed random state), whatever state the notebook left behind.
"""

from __future__ import annotations

import copy
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path

from .tasks import (
    cell_points,
    grade_id,
    is_check_cell,
    nbgrader,
    read_notebook,
)  # the cells as coursework.tasks reads them

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def is_manual_cell(cell) -> bool:
    """A written answer a person grades: a markdown cell with nbgrader "grade": true and "solution": true (its
    points are not the autograder's to give)."""
    meta = nbgrader(cell)
    return (
        cell.get("cell_type") == "markdown"
        and bool(meta.get("grade"))
        and meta.get("solution") is True
        and grade_id(cell) is not None
    )


def default_reference() -> Path:
    """The repository's solutions/ folder, next to the coursework package."""
    return PACKAGE_ROOT / "solutions"


@dataclass
class Reference:
    path: Path
    notebook: object

    @property
    def checks(self) -> list:
        return [c for c in self.notebook.cells if is_check_cell(c)]

    @property
    def manual(self) -> list[tuple[str, float]]:
        """(grade_id, points) of the answers a person grades (`is_manual_cell`), in notebook order."""
        return [(grade_id(c), cell_points(c)) for c in self.notebook.cells if is_manual_cell(c)]

    @property
    def check_ids(self) -> list[str]:
        return [grade_id(c) for c in self.checks]

    @property
    def grade_ids(self) -> set[str]:
        return {grade_id(c) for c in self.notebook.cells} - {None}


def load_references(folder: Path | None) -> list[Reference]:
    """Every solved notebook in `folder` with at least one check cell (the .py source preferred)."""
    if folder is None or not folder.is_dir():
        return []
    by_stem: dict[str, Path] = {}
    for path in sorted(folder.glob("*.ipynb")) + sorted(folder.glob("*.py")):
        by_stem[path.stem] = path  # .py wins: it is the source of truth
    references = []
    for stem in sorted(by_stem):
        try:
            reference = Reference(by_stem[stem], read_notebook(by_stem[stem]))
        except Exception:  # a stray file in the folder is not a reference
            continue
        if reference.checks:
            references.append(reference)
    return references


def match_reference(path: Path, notebook, references: list[Reference], lesson: str | None = None) -> Reference | None:
    """The reference of lesson `lesson` when given; else the one with the same file name, else the one sharing
    the most nbgrader grade_ids with the notebook, else the one with the same two-digit lesson number."""
    if lesson is not None:
        return next((r for r in references if r.path.name[:2] == lesson), None)
    for reference in references:
        if reference.path.stem == path.stem:
            return reference
    ids = {grade_id(c) for c in notebook.cells} - {None} if notebook is not None else set()
    overlap = [(len(ids & set(r.grade_ids)), r) for r in references]
    best = max(overlap, key=lambda pair: pair[0], default=(0, None))
    if best[0] > 0:
        return best[1]
    prefix = path.name[:2]
    if prefix.isdigit():
        for reference in references:
            if reference.path.name[:2] == prefix:
                return reference
    return None


def lesson_of(reference: Reference) -> str:
    """A reference's two-digit lesson number (the start of its file name)."""
    return reference.path.name[:2]


def other_lesson(notebook, references: list[Reference], chosen: Reference | None) -> Reference | None:
    """The reference of another lesson that `notebook` belongs to: one that shares more of its check cells'
    nbgrader grade_ids with it than `chosen` does; else None."""
    if notebook is None:
        return None
    ids = {grade_id(c) for c in notebook.cells if is_check_cell(c)}
    mine = len(ids & set(chosen.check_ids)) if chosen is not None else 0
    overlap = [(len(ids & set(r.check_ids)), r) for r in references if r is not chosen]
    best = max(overlap, key=lambda pair: pair[0], default=(0, None))
    return best[1] if best[0] > mine else None


# Wraps a reference check cell. The check modules are imported afresh (a submission that monkeypatched
# `checks.lesson01.check_nll` is graded by the real one; in the grading kernel they come from the snapshot,
# read-only in the sandbox) and the check runs in `checkcell.graded`: gradients on,
# float32, fixed random state, whatever the notebook left behind.
PROLOGUE = """import importlib as _grader_importlib, sys as _grader_sys
[_grader_sys.modules.pop(_n) for _n in list(_grader_sys.modules) if _n.startswith(("coursework.checks", "coursework.checkcell"))]
_grader_cell = _grader_importlib.import_module("coursework.checkcell")
"""
IMPORT_CHECKS = 'checks = _grader_importlib.import_module("coursework.checks")\n'


# The check runs in the grader's own mode (COURSE_FAST as the grader's environment has it), whatever the
# notebook set: a learner who sets COURSE_FAST=1 in the notebook does not lower the check's thresholds.
# The notebook's own setting is given back after the check.
FAST_PIN = """import os as _grader_os
_grader_fast = _grader_os.environ.pop("COURSE_FAST", None)
if {mode!r} is not None:
    _grader_os.environ["COURSE_FAST"] = {mode!r}
"""
FAST_RESTORE = """finally:
    _grader_os.environ.pop("COURSE_FAST", None)
    if _grader_fast is not None:
        _grader_os.environ["COURSE_FAST"] = _grader_fast
    del _grader_os, _grader_fast
"""


def check_source(source: str, gid: str) -> str:
    """The source a reference check cell runs with when graded (see PROLOGUE and FAST_PIN), in the mode of the
    grader's environment now."""
    fast = os.environ.get("COURSE_FAST")
    body = textwrap.indent(source, "        ") + "\n        pass\n"
    return (
        PROLOGUE
        + (IMPORT_CHECKS if "checks." in source else "")
        + "del _grader_importlib, _grader_sys\n"
        + FAST_PIN.format(mode=fast)
        + "try:\n"
        + f"    with _grader_cell.graded({gid!r}):\n"
        + body
        + FAST_RESTORE
    )


def _anchor(kept: list, reference_cells: list, position: int) -> int:
    """Where the reference cell at `position` goes in `kept`: after the last copy of the nearest cell before it
    in the reference that the notebook has (else at the end), and after the learner's own cells that follow
    that one (cells without nbgrader metadata: helper cells, or a task cell retyped without its metadata)."""
    index = len(kept)
    for earlier in reversed(reference_cells[:position]):
        gid = grade_id(earlier)
        places = [i for i, c in enumerate(kept) if gid is not None and grade_id(c) == gid]
        if places:
            index = places[-1] + 1
            break
    while index < len(kept) and grade_id(kept[index]) is None:
        index += 1
    return index


def prepare(notebook, reference: Reference | None) -> tuple:
    """A copy of `notebook` with outputs cleared and the reference's check cells in place.

    Every copy of a reference check cell (by grade_id) is removed, wherever it was, and the reference's
    check cell is inserted at its reference position: after the notebook's last copy of the cell that
    precedes it in the reference (a check pasted above its task never runs early). Without a reference the
    notebook's own check cells are kept (and trusted).
    Returns (notebook, checks) where checks lists (grade_id, max_points, cell index) in reference order.
    """
    import nbformat

    nb = copy.deepcopy(notebook)
    nb.nbformat, nb.nbformat_minor = 4, max(5, nb.get("nbformat_minor", 5))
    cells = []
    for cell in nb.cells:
        cell.setdefault("metadata", {})
        if cell.get("cell_type") == "code":
            cell.outputs, cell.execution_count = [], None
        cells.append(cell)
    if reference is None:
        nb.cells = cells
        for cell in nb.cells:
            cell["id"] = nbformat.v4.new_code_cell().id
        checks = [(grade_id(c), cell_points(c), i) for i, c in enumerate(cells) if is_check_cell(c)]
        return nb, checks
    check_ids = set(reference.check_ids)
    kept = [cell for cell in cells if grade_id(cell) not in check_ids]
    reference_cells = list(reference.notebook.cells)
    for position, ref_cell in enumerate(reference_cells):
        gid = grade_id(ref_cell)
        if gid in check_ids and is_check_cell(ref_cell):
            fresh = nbformat.v4.new_code_cell(
                check_source(ref_cell.source, gid),
                metadata=copy.deepcopy(dict(ref_cell.metadata)),
            )
            kept.insert(_anchor(kept, reference_cells, position), fresh)
    nb.cells = kept
    for cell in nb.cells:  # ids must be unique and valid for nbformat 4.5
        cell["id"] = nbformat.v4.new_code_cell().id
    points = {grade_id(c): cell_points(c) for c in reference.checks}
    checks = []
    for gid in reference.check_ids:
        index = next(i for i, c in enumerate(nb.cells) if grade_id(c) == gid)
        checks.append((gid, points[gid], index))
    return nb, checks


def empty_notebook() -> dict:
    import nbformat

    return nbformat.v4.new_notebook()


def find_notebooks(path: Path, depth: int = 16) -> list[Path]:
    """The notebooks under `path` (not in hidden folders, at most `depth` folders down); `path` itself if it is
    a file. Folders that cannot be read are skipped."""
    if not path.is_dir():
        return [path]
    found = []
    for folder, subfolders, files in os.walk(path):
        level = len(Path(folder).relative_to(path).parts)
        subfolders[:] = [] if level >= depth else sorted(d for d in subfolders if not d.startswith("."))
        found += [Path(folder) / f for f in files if f.endswith(".ipynb") and not f.startswith(".")]
    return sorted(found)
