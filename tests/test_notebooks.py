"""Notebook hygiene: every .ipynb has its percent-format .py twin with the same cells, lessons are
committed with outputs, exercises and solutions without."""

import re
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for d in ("notebooks", "exercises", "solutions") for p in (ROOT / d).glob("*.ipynb"))


def cells(path):
    return [(c.cell_type, c.source.strip()) for c in jupytext.read(path).cells]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_pair_is_in_sync(notebook):
    source = notebook.with_suffix(".py")
    assert source.exists(), f"{notebook} has no paired .py source"
    assert cells(notebook) == cells(source), f"{notebook.name} differs from its .py: run `jupytext --sync {source}`"


@pytest.mark.parametrize("source", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")), ids=lambda p: p.name)
def test_lessons_are_committed_with_outputs(source):
    notebook = source.with_suffix(".ipynb")
    assert notebook.exists(), f"{source.name} has no .ipynb: run `make course`"
    code = [c for c in jupytext.read(notebook).cells if c.cell_type == "code"]
    assert code and all(c.get("outputs") is not None for c in code)
    assert sum(bool(c.outputs) for c in code) >= len(code) // 3, "run `make course` to store full-mode outputs"
    text = source.read_text()
    assert "What you will learn" in text and "Recap" in text, "every lesson states its goals and ends with a recap"
    assert "assert " in text, "every lesson checks its results with assertion cells"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_saving_in_jupyterlab_leaves_the_py_source_unchanged(notebook):
    """JupyterLab with ipykernel saves the running kernel's kernelspec and its own jupytext version: the
    paired .py, written with the project's jupytext.toml, must come out byte for byte the same."""
    from jupytext.config import load_jupytext_config

    source = notebook.with_suffix(".py")
    nb = jupytext.read(notebook)
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    nb.metadata.setdefault("jupytext", {}).setdefault("text_representation", {})["jupytext_version"] = "9.9.9"
    config = load_jupytext_config(str(source))
    assert jupytext.writes(nb, fmt="py:percent", config=config) == source.read_text()


@pytest.mark.parametrize("source", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")), ids=lambda p: p.name)
def test_output_checks_are_cell_tags_not_comments_a_learner_reads(source):
    """nbval compares the stored output of cells tagged `nbval-check-output`; no test-harness comment
    (`# NBVAL_...`) is left in the code a learner reads, and each lesson checks at least one output."""
    notebook = jupytext.read(source.with_suffix(".ipynb"))
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert not [c for c in code if "NBVAL" in c.source], "use the nbval-check-output cell tag instead"
    tagged = [c for c in code if "nbval-check-output" in c.metadata.get("tags", [])]
    assert tagged and all(c.outputs for c in tagged), "tag deterministic cells nbval-check-output, with outputs"


# What exists for the build or the tests stays out of the learner's sight: a lesson's visible text and code
# never mention the test harness, and checks that keep the prose in step with full-mode numbers live in
# hidden cells (tagged `claims`, source collapsed in JupyterLab).
HARNESS_WORDS = re.compile(r"\bthe tests\b|\bmachine [AB]\b|the text says|fmt: skip|\bis_fast\(\)\s*:|NBVAL", re.I)


@pytest.mark.parametrize("source", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")), ids=lambda p: p.name)
def test_a_learner_reads_no_test_harness(source):
    visible = [c for c in jupytext.read(source).cells if not c.metadata.get("jupyter", {}).get("source_hidden")]
    found = [m.group(0) for c in visible for m in HARNESS_WORDS.finditer(c.source)]
    assert not found, f"{source.name} shows the learner build or test machinery: {found}; use a hidden claims cell"


@pytest.mark.parametrize("source", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")), ids=lambda p: p.name)
def test_claims_cells_are_hidden_and_only_check(source):
    claims = [c for c in jupytext.read(source).cells if "claims" in c.metadata.get("tags", [])]
    for cell in claims:
        assert cell.metadata.get("jupyter", {}).get("source_hidden"), f"a claims cell of {source.name} is visible"
        assert "assert" in cell.source, f"a claims cell of {source.name} checks nothing:\n{cell.source}"
        # a learner's run (another CPU or thread count) may differ a little from the committed one: the
        # claims about the committed numbers are checked by the course build alone, never in a learner's run
        assert "is_fast()" not in cell.source, f"a claims cell of {source.name} runs in a learner's full-mode run"


def test_claims_are_checked_by_the_course_build_in_full_mode_only(monkeypatch):
    """`tools/build_course.py` sets COURSE_BUILD=1; a learner's run (without it) and fast mode check nothing."""
    from course_lib.config import claims_checked

    monkeypatch.delenv("COURSE_BUILD", raising=False)
    monkeypatch.delenv("COURSE_FAST", raising=False)
    assert not claims_checked()
    monkeypatch.setenv("COURSE_BUILD", "1")
    assert claims_checked()
    monkeypatch.setenv("COURSE_FAST", "1")
    assert not claims_checked()
    assert 'os.environ["COURSE_BUILD"] = "1"' in (ROOT / "tools/build_course.py").read_text()


def _readme_seconds():
    """{lesson number: full-mode wall seconds} from the README's lesson table ("2.2 min (130 s, A)")."""
    readme = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| `notebooks/(\d\d)_\w+` \|.*\| [\d.]+ min \((\d+) s, ", readme, re.MULTILINE)
    return {number: int(seconds) for number, seconds in rows}


def test_lesson_00_plan_quotes_the_measured_build_times():
    """Lesson 00's plan lists every lesson, and its approximate times ("under 1 min", "about 3 min") agree
    with the build times the README measured, to the minute."""
    plan = (ROOT / "notebooks" / "00_start_here.py").read_text()
    rows = dict(re.findall(r"^# \| (\d\d) · [^|]+\|[^|]+\| ([^|]+) \|$", plan, re.MULTILINE))
    measured = _readme_seconds()
    assert sorted(rows) == sorted(measured) == sorted(p.name[:2] for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    for number, said in rows.items():
        seconds = measured[number]
        if said.strip() == "under 1 min":
            assert seconds < 60, f"lesson {number}: the plan says under 1 min, the README {seconds} s"
        else:
            minutes = float(re.fullmatch(r"about (\d+) min", said.strip()).group(1))
            assert abs(seconds / 60 - minutes) <= 0.5, f"lesson {number}: about {minutes:g} min, measured {seconds} s"
