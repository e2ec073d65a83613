"""What one submission can do to its own grade and to others', tried on a built lesson (lesson 02's exercise
and solution notebooks), one folder run in order: attackers first, untouched submissions after them.

Each attack below was shown to work on an earlier grader. Here each gains nothing: a renamed notebook with
renamed check cells is not graded by its own cells, graded code cannot read the reference solutions (on
disk or through the repository's .git), nothing a submission writes (check modules, IPython startup files
in HOME, forged results) reaches a later submission or its own report, killing the process that drives its
kernel fails, files next to a notebook never shadow installed packages, and honest mistakes (a check cell
pasted above its task, gradients switched off, another default dtype) keep their points. The kernels run
in bubblewrap sandboxes (tests/test_grader_sandbox.py tries the sandbox itself).
"""

import copy
import os
import shutil
from pathlib import Path

import nbformat
import pytest
from sandbox_support import require_sandbox
from solution_cells import SolutionCells

from coursework import grade, notebooks
from coursework.sandbox import Snapshot

ROOT = Path(__file__).resolve().parents[1]
LESSON = "02_masked_convolutions"
SOLVED = ROOT / "solutions" / f"{LESSON}.ipynb"
EXERCISE = ROOT / "exercises" / f"{LESSON}.ipynb"

# Finds solutions/<lesson>.py from everything a kernel is told about (module files, sys.path, the working
# folder, the interpreter, the environment) and runs its solution cells: full marks on the old grader.
FIND_AND_EXEC_SOLUTIONS = f"""
import os as _os, re as _re, sys as _sys
from pathlib import Path as _Path
def _starts():
    import coursework, course_lib
    yield from (_Path(m.__file__) for m in (coursework, course_lib))
    yield from (_Path(p or ".") for p in _sys.path)
    yield from (_Path(p) for p in (_os.getcwd(), _sys.executable, _sys.prefix, _sys.base_prefix))
    yield from (_Path(p) for v in _os.environ.values() for p in v.split(_os.pathsep) if p.startswith("/"))
def _find():
    for start in _starts():
        for path in (start, start.resolve()):
            for folder in (path, *path.parents):
                if (folder / "solutions" / "{LESSON}.py").is_file():
                    return folder / "solutions" / "{LESSON}.py"
_found = _find()
if _found is not None:
    for _cell in _re.split(r"^# %%.*$", _found.read_text(), flags=_re.M):
        if "### BEGIN SOLUTION" in _cell:
            exec(_cell, globals())
"""

# Finds the repository's .git from the same starting points and reads the solution from its object store
# with git (which the sandbox's /usr holds), then runs its solution cells.
FIND_AND_EXEC_FROM_GIT = f"""
import os as _os, re as _re, subprocess as _subprocess, sys as _sys
from pathlib import Path as _Path
def _starts():
    import coursework, course_lib
    yield from (_Path(m.__file__) for m in (coursework, course_lib))
    yield from (_Path(p or ".") for p in _sys.path)
    yield from (_Path(p) for p in (_os.getcwd(), _sys.executable, _sys.prefix, _sys.base_prefix))
def _git_source():
    for start in _starts():
        for folder in (start, *start.parents):
            if (folder / ".git").exists():
                shown = _subprocess.run(["git", "--git-dir", str(folder / ".git"), "show",
                                         "HEAD:solutions/{LESSON}.py"], capture_output=True, text=True)
                if shown.returncode == 0:
                    return shown.stdout
_source = _git_source()
if _source is not None:
    for _cell in _re.split(r"^# %%.*$", _source, flags=_re.M):
        if "### BEGIN SOLUTION" in _cell:
            exec(_cell, globals())
"""

# Rewrites the check modules it can reach so that every check passes.
EVERYTHING_PASSES = "def __getattr__(name):\n    return lambda *a, **k: print('✓ fooled')\n"
WRITE_CHECKS = """
import coursework.checks as _c
from pathlib import Path as _Path
for _folder in {folders!r} + [str(_Path(_c.__file__).parent)]:
    for _name in ("lesson02.py", "__init__.py"):
        try:
            (_Path(_folder) / _name).write_text({payload!r})
        except OSError:
            pass
"""

# An IPython startup file that makes `import_module("coursework...")` return a module where everything passes.
STARTUP = """
import importlib, types
_real = importlib.import_module
def _fake(name, *args):
    if name.startswith("coursework.checks"):
        module = types.ModuleType(name)
        module.__getattr__ = lambda attr: (lambda *a, **k: print("✓ fooled"))
        return module
    return _real(name, *args)
importlib.import_module = _fake
"""
PLANT_STARTUP = """
import os as _os
from pathlib import Path as _Path
for _home in (_Path.home(), _Path({home!r})):
    _folder = _home / ".ipython" / "profile_default" / "startup"
    _folder.mkdir(parents=True, exist_ok=True)
    (_folder / "00-fool.py").write_text({startup!r})
_ipython = _os.environ.get("IPYTHONDIR")
if _ipython:
    (_Path(_ipython) / "profile_default" / "startup").mkdir(parents=True, exist_ok=True)
    (_Path(_ipython) / "profile_default" / "startup" / "00-fool.py").write_text({startup!r})
"""

# Writes results that give every cell full marks wherever a result could go, then stops its executor.
FORGE = """
import json as _json, os as _os, signal as _signal
from pathlib import Path as _Path
_forged = [dict(cell=i, status="ok", verdict="✓ forged", error=None, last_line="", token="guess") for i in range(80)]
_lines = "".join(_json.dumps(r) + "\\n" for r in _forged + [dict(status="ok", done=True, token="guess")])
_blob = _json.dumps(dict(status="ok", cells={{str(r["cell"]): r for r in _forged}}))
for _folder in (_Path.cwd(), _Path.cwd().parent):
    for _name in ("result.json", "report.json", "results.json"):
        try:
            (_folder / _name).write_text(_blob)
        except OSError:
            pass
_parent = _os.getppid()
for _fd in _os.listdir(f"/proc/{{_parent}}/fd") if _os.path.isdir(f"/proc/{{_parent}}/fd") else []:
    try:
        if _os.readlink(f"/proc/{{_parent}}/fd/{{_fd}}").startswith("pipe:"):
            with open(f"/proc/{{_parent}}/fd/{{_fd}}", "w") as _pipe:
                _pipe.write(_lines)
    except OSError:
        pass
{ending}
"""

FAKE_PACKAGE = "raise ImportError('a folder next to the notebook shadowed the real package')\n"
STATE = (
    "\nimport torch\ntorch.set_grad_enabled(False)\ntorch.set_default_dtype(torch.float64)\ntorch.manual_seed(123)\n"
)


def cells(nb):
    return {notebooks.grade_id(c): c for c in nb.cells}


def append_to(nb, grade_id, source):
    nb = copy.deepcopy(nb)
    cells(nb)[grade_id].source += "\n" + source
    return nb


def append_to_tasks(nb, source):
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("solution") and cell.cell_type == "code":
            cell.source += "\n" + source
    return nb


def renamed_with_fake_checks(nb):
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader")
        if meta:
            meta["grade_id"] = "x_" + meta["grade_id"]
            if meta.get("grade"):
                cell.source = "print('✓ all good')"
    return nb


def pasted_check_above_task(nb):
    nb = copy.deepcopy(nb)
    index = next(i for i, c in enumerate(nb.cells) if notebooks.is_check_cell(c))
    pasted = copy.deepcopy(nb.cells[index])
    pasted["id"] = "pasted-check"
    nb.cells.insert(index - 1, pasted)  # above its task cell, same grade_id
    return nb


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    """Grade every case once, in this order, with one snapshot, as `pixelcnn-grade FOLDER` does."""
    require_sandbox()
    base = tmp_path_factory.mktemp("integrity")
    packages = base / "installed"  # the grader's own copy of the packages, which attackers try to rewrite
    for name in ("course_lib", "coursework"):
        shutil.copytree(ROOT / name, packages / name, ignore=shutil.ignore_patterns("__pycache__"))
    home = base / "grader_home"
    home.mkdir()
    solved, exercise = nbformat.read(SOLVED, as_version=4), nbformat.read(EXERCISE, as_version=4)
    names = [f"{LESSON}.ipynb"]
    cases = {
        "a1_renamed_fake_checks": (renamed_with_fake_checks(exercise), "homework.ipynb"),
        "a1_renamed_honest": (solved, "homework.ipynb"),
        "a2_reads_solutions": (append_to_tasks(exercise, FIND_AND_EXEC_SOLUTIONS), names[0]),
        "a2_reads_git": (append_to_tasks(exercise, FIND_AND_EXEC_FROM_GIT), names[0]),
        "a3_writes_checks": (
            append_to(
                exercise,
                "setup",
                WRITE_CHECKS.format(folders=[str(packages / "coursework" / "checks")], payload=EVERYTHING_PASSES),
            ),
            names[0],
        ),
        "a3_plants_startup": (
            append_to(exercise, "setup", PLANT_STARTUP.format(home=str(home), startup=STARTUP)),
            names[0],
        ),
        "a3_forges_and_kills": (append_to(exercise, "setup", FORGE.format(ending="_os.kill(_parent, 9)")), names[0]),
        "a3_forges_and_dies": (append_to(exercise, "setup", FORGE.format(ending="_os._exit(0)")), names[0]),
        "a4_shadows_torch": (solved, names[0]),
        "a4_shadows_checks": (exercise, names[0]),
        "a5_pasted_check": (pasted_check_above_task(solved), names[0]),
        "a5_grad_off_float64": (append_to(solved, "setup", STATE), names[0]),
        "z_untouched_exercise": (exercise, names[0]),
        "z_untouched_solution": (solved, names[0]),
    }
    folder = base / "submissions"
    for case, (nb, filename) in cases.items():
        (folder / case).mkdir(parents=True)
        nbformat.write(nb, folder / case / filename)
    (folder / "a4_shadows_torch" / "torch").mkdir()
    (folder / "a4_shadows_torch" / "torch" / "__init__.py").write_text(FAKE_PACKAGE)
    (folder / "a4_shadows_torch" / "numpy.py").write_text(FAKE_PACKAGE)
    fake = folder / "a4_shadows_checks" / "coursework"
    (fake / "checks").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "checks" / "__init__.py").write_text(EVERYTHING_PASSES)
    (fake / "checkcell.py").write_text("import contextlib\ngraded = lambda name: contextlib.nullcontext()\n")

    old_home = os.environ.get("HOME")
    os.environ["HOME"] = str(home)  # the grader's own HOME: attackers know it and write there too
    try:
        snapshot = Snapshot.take({"course_lib": packages / "course_lib", "coursework": packages / "coursework"})
        references = grade.load_references(ROOT / "solutions")
        reports = {
            case: grade.grade_notebook(path, references, timeout=300, snapshot=snapshot)
            for case in sorted(cases)
            for path in sorted((folder / case).glob("*.ipynb"))
        }
    finally:
        if old_home is None:
            del os.environ["HOME"]
        else:
            os.environ["HOME"] = old_home
    full = sum(notebooks.cell_points(c) for c in solved.cells if notebooks.is_check_cell(c))
    return reports, full, packages, home


def explain(report):
    return grade.format_report(report)


def test_the_untouched_notebooks_grade_as_expected_after_every_attack(attacked):
    reports, full, _, _ = attacked
    assert reports["z_untouched_solution"].total == full and reports["z_untouched_solution"].status == "ok"
    exercise = reports["z_untouched_exercise"]
    assert exercise.max == full and exercise.total == 0 and exercise.status == "ok", explain(exercise)
    assert all("not implemented" in t.message for t in exercise.tasks), explain(exercise)


def test_a_notebook_that_matches_no_reference_is_not_graded_by_its_own_checks(attacked):
    report = attacked[0]["a1_renamed_fake_checks"]
    assert report.total == 0 and report.tasks == [] and report.reference is None, explain(report)
    assert report.status.startswith("no reference") and "--lesson" in report.status and "--reference" in report.status


def test_a_renamed_file_is_still_matched_by_its_check_ids(attacked):
    reports, full, _, _ = attacked
    report = reports["a1_renamed_honest"]
    assert report.total == full and report.reference.endswith(f"{LESSON}.py"), explain(report)


def test_the_attack_on_the_solutions_is_real_outside_the_grader():
    """The same code, run here (where the repository is in reach), does find and run the solutions."""
    namespace = {"__name__": "attack"}
    exec(SolutionCells(LESSON).cells["setup"], namespace)  # the notebook's setup cell has run before
    exec(FIND_AND_EXEC_SOLUTIONS, namespace)
    assert namespace["_found"] == ROOT / "solutions" / f"{LESSON}.py"
    assert callable(namespace["make_mask"])


def test_graded_code_cannot_find_the_reference_solutions(attacked):
    report = attacked[0]["a2_reads_solutions"]
    assert report.total == 0 and report.status == "ok", explain(report)


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs git and a clone")
def test_the_attack_through_git_is_real_outside_the_grader():
    """The same code, run here (where the repository's .git is in reach), does read and run the solutions."""
    namespace = {"__name__": "attack"}
    exec(SolutionCells(LESSON).cells["setup"], namespace)
    exec(FIND_AND_EXEC_FROM_GIT, namespace)
    assert namespace["_source"] is not None and callable(namespace["make_mask"])


def test_graded_code_cannot_read_the_solutions_through_git(attacked):
    report = attacked[0]["a2_reads_git"]
    assert report.total == 0 and report.status == "ok", explain(report)


def test_rewriting_the_check_modules_changes_no_grade(attacked):
    reports, _, packages, _ = attacked
    assert reports["a3_writes_checks"].total == 0, explain(reports["a3_writes_checks"])
    assert reports["z_untouched_exercise"].total == 0
    on_disk = (packages / "coursework" / "checks" / "lesson02.py").read_text()
    assert on_disk == (ROOT / "coursework" / "checks" / "lesson02.py").read_text()  # out of the sandbox's sight


def test_startup_files_planted_in_home_reach_no_later_submission(attacked):
    reports, _, _, home = attacked
    assert reports["a3_plants_startup"].total == 0, explain(reports["a3_plants_startup"])
    assert reports["z_untouched_exercise"].total == 0
    assert not (home / ".ipython" / "profile_default" / "startup" / "00-fool.py").exists(), (
        "the grader's HOME is out of sight"
    )


def test_forged_results_are_ignored_and_the_executor_cannot_be_killed(attacked):
    reports = attacked[0]
    killed, died = reports["a3_forges_and_kills"], reports["a3_forges_and_dies"]
    assert killed.total == 0 and killed.status == "ok", explain(killed)  # its kill reached no executor
    assert died.total == 0 and died.status == "kernel died", explain(died)
    assert all(not t.message.startswith("✓") for t in killed.tasks + died.tasks)


def test_files_next_to_a_notebook_do_not_shadow_installed_packages(attacked):
    reports, full, _, _ = attacked
    assert reports["a4_shadows_torch"].total == full, explain(reports["a4_shadows_torch"])
    assert reports["a4_shadows_checks"].total == 0, explain(reports["a4_shadows_checks"])


def test_honest_mistakes_keep_their_points(attacked):
    reports, full, _, _ = attacked
    for case in ("a5_pasted_check", "a5_grad_off_float64"):
        assert reports[case].total == full, explain(reports[case])
