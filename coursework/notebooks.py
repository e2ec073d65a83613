"""Preparing a submission for grading: read it, find its reference, put the reference's check cells in place.

1. A notebook's reference is the solved notebook with the same name in the reference folder (default: the
   repository's ``solutions/``); failing that, the one sharing the most check-cell ``grade_id``s, then the one
   with the same two-digit lesson number.
2. Every cell whose nbgrader ``grade_id`` is one of the reference's check cells gets the reference's source
   and metadata (editing a check cell changes nothing), deleted check cells are put back after the cell that
   precedes them in the reference, and all outputs are cleared. Points come from the reference too. Before a
   check cell that calls ``checks.…``, ``coursework.checks`` is imported afresh, so a monkeypatched check
   function is not the one that grades.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def default_reference() -> Path:
    """The repository's solutions/ folder, next to the coursework package."""
    return PACKAGE_ROOT / "solutions"


def read_notebook(path: Path):
    """A notebook from .ipynb or a jupytext .py file."""
    import jupytext
    import nbformat

    if path.suffix == ".ipynb":
        return nbformat.read(path, as_version=4)
    return jupytext.read(path)


def grade_id(cell) -> str | None:
    meta = cell.get("metadata", {}).get("nbgrader")
    if isinstance(meta, dict) and isinstance(meta.get("grade_id"), str):
        return meta["grade_id"]
    return None


def is_check_cell(cell) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader")
    return (
        cell.get("cell_type") == "code"
        and isinstance(meta, dict)
        and bool(meta.get("grade"))
        and isinstance(meta.get("grade_id"), str)
    )


def cell_points(cell) -> float:
    try:
        points = float(cell.metadata["nbgrader"].get("points", 0) or 0)
    except (TypeError, ValueError):
        return 0.0
    return points if math.isfinite(points) and points >= 0 else 0.0


@dataclass
class Reference:
    path: Path
    notebook: object

    @property
    def checks(self) -> list:
        return [c for c in self.notebook.cells if is_check_cell(c)]

    @property
    def check_ids(self) -> list[str]:
        return [grade_id(c) for c in self.checks]


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
        except Exception:  # noqa: BLE001 - a stray file in the folder is not a reference
            continue
        if reference.checks:
            references.append(reference)
    return references


def match_reference(path: Path, notebook, references: list[Reference]) -> Reference | None:
    """Same file name, else most shared check grade_ids, else same two-digit lesson number."""
    for reference in references:
        if reference.path.stem == path.stem:
            return reference
    ids = {grade_id(c) for c in notebook.cells} if notebook is not None else set()
    overlap = [(len(ids & set(r.check_ids)), r) for r in references]
    best = max(overlap, key=lambda pair: pair[0], default=(0, None))
    if best[0] > 0:
        return best[1]
    prefix = path.name[:2]
    if prefix.isdigit():
        for reference in references:
            if reference.path.name[:2] == prefix:
                return reference
    return None


# Run before a reference check cell that uses `checks`: a fresh import of coursework.checks from disk, so that
# a submission that monkeypatched a check function (checks.lesson01.check_nll = ...) is graded by the real one.
FRESH_CHECKS = (
    "import importlib as _grader_importlib, sys as _grader_sys\n"
    "[_grader_sys.modules.pop(_n) for _n in list(_grader_sys.modules) if _n.startswith('coursework.checks')]\n"
    "checks = _grader_importlib.import_module('coursework.checks')\n"
    "del _grader_importlib, _grader_sys\n"
)


def _check_source(source: str) -> str:
    return FRESH_CHECKS + source if "checks." in source else source


def prepare(notebook, reference: Reference | None):
    """A copy of `notebook` with outputs cleared and the reference's check cells in place.

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
    if reference is None:  # no reference: the notebook's own check cells (trust them)
        nb.cells = cells
        for cell in nb.cells:
            cell["id"] = nbformat.v4.new_code_cell().id
        checks = [(grade_id(c), cell_points(c), i) for i, c in enumerate(cells) if is_check_cell(c)]
        return nb, checks
    reference_cells = {grade_id(c): c for c in reference.checks}
    kept, seen = [], set()
    for cell in cells:
        gid = grade_id(cell)
        if gid in reference_cells:
            if gid in seen:
                continue  # a duplicated check cell runs once
            seen.add(gid)
            fresh = nbformat.v4.new_code_cell(
                _check_source(reference_cells[gid].source), metadata=copy.deepcopy(dict(reference_cells[gid].metadata))
            )
            cell = fresh
        kept.append(cell)
    # put back deleted check cells, right after the cell that precedes them in the reference
    anchor = None
    for ref_cell in reference.notebook.cells:
        gid = grade_id(ref_cell)
        if gid is None:
            continue
        position = next((i for i, c in enumerate(kept) if grade_id(c) == gid), None)
        if position is not None:
            anchor = position
        elif gid in reference_cells:
            fresh = nbformat.v4.new_code_cell(
                _check_source(ref_cell.source), metadata=copy.deepcopy(dict(ref_cell.metadata))
            )
            anchor = len(kept) if anchor is None else anchor + 1
            kept.insert(anchor, fresh)
    nb.cells = kept
    for cell in nb.cells:  # ids must be unique and valid for nbformat 4.5
        cell["id"] = nbformat.v4.new_code_cell().id
    checks = []
    for gid in reference.check_ids:
        index = next(i for i, c in enumerate(nb.cells) if grade_id(c) == gid)
        checks.append((gid, cell_points(reference_cells[gid]), index))
    return nb, checks


def empty_notebook():
    import nbformat

    return nbformat.v4.new_notebook()


def find_notebooks(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(
            p for p in path.rglob("*.ipynb") if not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
    return [path]
