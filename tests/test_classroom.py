"""The course in a hub's layout: the package installed (not editable) by an administrator, a student who is
a separate Unix user with the course copied into their home, and nothing the student runs writes outside
that home: not into the installed package, not into the course copy (both read-only for the student).

Needs root (to add the user and to run as them); CI runs as root, so under CI=true a missing piece fails
instead of skipping. The third-party packages (PyTorch and the rest) come from this test run's own
environment through a .pth file, read-only: installing PyTorch afresh takes minutes and is not what is
tested. `pixelcnn-course` itself is built as a wheel and installed with pip like an administrator would.

This is where `make test` executes the lessons (notebooks/, under nbval in fast mode): every lesson and
exercise 01 run as the student. Where no student account can be made (not root), the lessons run in place,
as you, under the same nbval options instead (`test_the_lessons_run_in_place_without_a_student_account`).
CLASSROOM_NOTEBOOKS="notebooks/00_start_here.ipynb ..." runs other notebooks (paths relative to the repository).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tools.classroom_layout import (  # shared with tools/hub_rehearsal.py
    ROOT,
    add_student,
    install_course,
    missing_piece,
    remove_install,
    remove_student,
    run,
    snapshot,
)

LESSONS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
NOTEBOOKS = os.environ.get("CLASSROOM_NOTEBOOKS", " ".join([*LESSONS, "solutions/01_self_supervised_likelihood.ipynb"]))
NOTEBOOKS = NOTEBOOKS.split()


@pytest.fixture
def hub():
    """An administrator's install in a fresh venv and a fresh student account; removed afterwards."""
    why = missing_piece()
    if why:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the classroom test runs in CI: {why}")
        pytest.skip(f"the classroom layout {why}")
    base = Path(tempfile.mkdtemp(prefix="pixelcnn-hub-", dir="/tmp"))  # pytest's tmp_path is root's alone
    base.chmod(0o755)
    name = f"pxcstudent{os.getpid() % 100000}"
    created, install = False, None
    try:
        timings = {}
        start = time.perf_counter()
        install = install_course(base)
        timings["install"] = time.perf_counter() - start

        home = base / "home"
        add_student(name, home)
        created = True
        course = home / "course"  # copied by the instructor: the student reads it, cannot change it
        for nb in NOTEBOOKS:
            (course / nb).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / nb, course / nb)
        if (ROOT / "notebooks/results").is_dir():  # lesson 06 reads the study's results next to the notebook
            shutil.copytree(ROOT / "notebooks/results", course / "notebooks/results", dirs_exist_ok=True)
        for p in [*course.rglob("*"), course]:
            p.chmod(0o555 if p.is_dir() else 0o444)
        yield dict(
            base=base, venv=install.venv, site=install.site, home=home, course=course, user=name, timings=timings
        )
    finally:
        if created:
            remove_student(name)
        remove_install(base, install.mounted if install else None)


NBVAL = ["-m", "pytest", "-p", "no:cacheprovider", "-q", "--nbval-lax", "--nbval-current-env"]


def test_the_lessons_run_in_place_without_a_student_account():
    """Where the hub layout cannot be built (not root), every lesson still runs, in place and as you, under
    nbval in fast mode; where it can, `test_a_student_runs_the_lessons...` runs them as the student."""
    why = missing_piece()
    if why is None or os.environ.get("CI", "").lower() == "true":
        pytest.skip("the lessons run as a student account in test_a_student_runs_the_lessons_from_their_home")
    env = dict(os.environ, COURSE_FAST="1", TQDM_DISABLE="1", MPLBACKEND="Agg")
    out = subprocess.run([sys.executable, *NBVAL, *NOTEBOOKS], cwd=ROOT, capture_output=True, text=True, env=env)
    assert out.returncode == 0, f"{out.stdout[-6000:]}\n{out.stderr[-3000:]}"


def test_a_student_runs_the_lessons_from_their_home_with_a_read_only_install(hub):
    """Every lesson and exercise 01, executed in fast mode by a student account from a copy in its home:
    they pass, the installed package is the wheel (not this checkout), and nothing was written into the
    install or the course copy, nor anywhere else outside the student's home."""
    home, venv, user = hub["home"], hub["venv"], hub["user"]
    where = run(
        [venv / "bin/python", "-c", "import course_lib, coursework; print(course_lib.__file__, coursework.__file__)"],
        cwd=home,
    )
    assert all(Path(p).is_relative_to(hub["site"]) for p in where.stdout.split()), where.stdout
    before = {"install": snapshot(venv), "course": snapshot(hub["course"])}
    (home / "tmp").mkdir()
    shutil.chown(home / "tmp", user, user)
    env = {
        "HOME": str(home),
        "USER": user,
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "TMPDIR": str(home / "tmp"),  # temporary files too stay in the home, so that the check below is strict
        "COURSE_FAST": "1",
        "TQDM_DISABLE": "1",
        "MPLBACKEND": "Agg",
        "OMP_WAIT_POLICY": "PASSIVE",
        "LANG": "C.UTF-8",
    }
    start = time.perf_counter()
    out = subprocess.run(
        ["runuser", "-u", user, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items())]
        + [venv / "bin/python", *NBVAL, *NOTEBOOKS],
        cwd=hub["course"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    seconds = time.perf_counter() - start
    print(f"install {hub['timings']['install']:.0f} s; {len(NOTEBOOKS)} notebooks as {user}: {seconds:.0f} s")
    assert out.returncode == 0, f"{out.stdout[-6000:]}\n{out.stderr[-3000:]}"
    assert snapshot(venv) == before["install"], "the student's run changed the installed package"
    assert snapshot(hub["course"]) == before["course"], "the student's run changed the course copy"
    searched = {"/tmp", "/var/tmp", "/dev/shm", str(hub["base"])}
    found = subprocess.run(["find", *sorted(searched), "-xdev", "-user", user], capture_output=True, text=True)
    outside = sorted({p for p in found.stdout.split() if not Path(p).is_relative_to(home)})
    assert outside == [], f"written outside the student's home: {outside[:10]}"
    written = sorted(str(p.relative_to(home)) for p in home.iterdir())
    print(f"in the student's home afterwards: {written}")
