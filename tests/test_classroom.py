"""The course in a hub's layout: the package installed (not editable) by an administrator, a student who is
a separate Unix user with the course copied into their home, and nothing the student runs writes outside
that home: not into the installed package, not into the course copy (both read-only for the student).

Needs root (to add the user and to run as them); CI runs as root, so under CI=true a missing piece fails
instead of skipping. The third-party packages (PyTorch and the rest) come from this test run's own
environment through a .pth file, read-only: installing PyTorch afresh takes minutes and is not what is
tested. `pixelcnn-course` itself is built as a wheel and installed with pip like an administrator would.

CLASSROOM_NOTEBOOKS="notebooks/00_start_here.ipynb solutions/01_self_supervised_likelihood.ipynb ..." runs
other lessons in the same layout (paths relative to the repository).
"""

import os
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = os.environ.get(
    "CLASSROOM_NOTEBOOKS", "notebooks/00_start_here.ipynb solutions/01_self_supervised_likelihood.ipynb"
).split()
PACKAGE = ("pyproject.toml", "README.md", "LICENSE", "course_lib", "coursework")  # what the wheel is built from
JUNK = shutil.ignore_patterns("__pycache__", "*.egg-info", ".ipynb_checkpoints", "runs")


def others_can_reach(path):
    """Whether a user who is neither the owner nor in the group can read `path` and every folder above it."""
    path = Path(path).resolve()
    if not path.stat().st_mode & stat.S_IROTH:
        return False
    return all(p.stat().st_mode & stat.S_IXOTH for p in path.parents)


def base_python():
    """A Python of this run's version that every user may run (a venv built on it reads this run's packages)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys._base_executable, shutil.which(f"python{version}"), "/usr/bin/python3"):
        if not candidate or not Path(candidate).exists() or not others_can_reach(candidate):
            continue
        out = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True
        )
        if out.stdout.strip() == str(sys.version_info[:2]):
            return candidate
    return None


def missing_piece():
    """Why the hub layout cannot be built here (None where it can)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root (to add a student account)"
    if not (shutil.which("useradd") and shutil.which("userdel") and shutil.which("runuser")):
        return "needs useradd, userdel and runuser"
    if base_python() is None:
        return f"needs a Python {sys.version_info.major}.{sys.version_info.minor} that every user may run"
    if not others_can_reach(sysconfig.get_paths()["purelib"]) and not shutil.which("mount"):
        return "needs this environment's site-packages readable by every user (or `mount --bind`)"
    return None


def run(args, **kwargs):
    out = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    assert out.returncode == 0, f"{' '.join(map(str, args))} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def snapshot(folder):
    """Every file under `folder` with its size and modification time."""
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in Path(folder).rglob("*") if not p.is_symlink()}


def stop_processes_of(uid):
    """Kill, by pid, any process still running as `uid` (a kernel left behind by a failed run)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    os.kill(int(entry.name), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass


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
    created, mounted = False, None
    try:
        timings = {}
        start = time.perf_counter()
        src = base / "src"
        src.mkdir()
        for item in PACKAGE:
            copy = shutil.copytree if (ROOT / item).is_dir() else shutil.copy2
            copy(ROOT / item, src / item, **({"ignore": JUNK} if (ROOT / item).is_dir() else {}))
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
        run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", base / "wheel", src])
        venv = base / "venv"
        run([base_python(), "-m", "venv", "--without-pip", venv])
        wheel = next((base / "wheel").glob("pixelcnn_course-*.whl"))
        run([*pip, "--python", venv / "bin/python", "install", "--no-deps", "--no-index", "-q", wheel])
        site = Path(
            run([venv / "bin/python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
        )
        third_party = sysconfig.get_paths()["purelib"]
        if not others_can_reach(third_party):  # e.g. a checkout under /root: show it where the student can read
            mounted = base / "third-party"
            mounted.mkdir()
            run(["mount", "--bind", third_party, mounted])
            third_party = mounted
        (site / "zz_third_party.pth").write_text(f"{third_party}\n")
        shutil.rmtree(src)
        timings["install"] = time.perf_counter() - start

        run(["useradd", "--create-home", "--home-dir", base / "home", "--shell", "/bin/sh", "--user-group", name])
        created = True
        home = base / "home"
        course = home / "course"  # copied by the instructor: the student reads it, cannot change it
        for nb in NOTEBOOKS:
            (course / nb).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / nb, course / nb)
        if (ROOT / "notebooks/results").is_dir():  # lesson 06 reads the study's results next to the notebook
            shutil.copytree(ROOT / "notebooks/results", course / "notebooks/results", dirs_exist_ok=True)
        for p in [*course.rglob("*"), course]:
            p.chmod(0o555 if p.is_dir() else 0o444)
        yield dict(base=base, venv=venv, site=site, home=home, course=course, user=name, timings=timings)
    finally:
        if created:
            uid = int(subprocess.run(["id", "-u", name], capture_output=True, text=True).stdout or -1)
            if uid > 0:
                stop_processes_of(uid)
            subprocess.run(["userdel", name], capture_output=True)
        if mounted is not None:
            subprocess.run(["umount", mounted], capture_output=True)
        if mounted is not None and os.path.ismount(mounted):  # never delete through a bind mount
            print(f"left {base}: {mounted} is still mounted")
        else:
            shutil.rmtree(base, ignore_errors=True)


def test_a_student_runs_the_lessons_from_their_home_with_a_read_only_install(hub):
    """Lesson 00 and exercise 01, executed in fast mode by a student account from a copy in its home:
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
        + [venv / "bin/python", "-m", "pytest", "-p", "no:cacheprovider", "-q", "--nbval-lax", "--nbval-current-env"]
        + NOTEBOOKS,
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
