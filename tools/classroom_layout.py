"""The course laid out as a hub image has it, for the classroom tests and `make hub-rehearsal`.

An administrator builds `pixelcnn-course` as a wheel and installs it (not editable) into a venv every user can
read, on the system interpreter: the default `python3` of a machine may live under root's home, which students
cannot enter. The third-party packages (PyTorch and the rest) come from the running environment through a
.pth file, read-only: installing PyTorch afresh takes minutes and is not what is rehearsed. Students are Unix
users made with `useradd`, each with a home of their own.

Needs root; `missing_piece()` says what is missing where the layout cannot be built.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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
        return "needs root (to add student accounts)"
    if not (shutil.which("useradd") and shutil.which("userdel") and shutil.which("runuser")):
        return "needs useradd, userdel and runuser"
    if base_python() is None:
        return f"needs a Python {sys.version_info.major}.{sys.version_info.minor} that every user may run"
    if not others_can_reach(sysconfig.get_paths()["purelib"]) and not shutil.which("mount"):
        return "needs this environment's site-packages readable by every user (or `mount --bind`)"
    return None


def run(args, **kwargs):
    """Run a command, return its completed process; raise AssertionError with its output when it fails."""
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


@dataclass
class Install:
    """The administrator's install under `base`: the venv, its site-packages, and the bind mount (if any)
    that shows the third-party packages to every user."""

    base: Path
    venv: Path
    site: Path
    mounted: Path | None = None


def install_course(base):
    """Build the course as a wheel and install it, not editable, into a fresh venv `base`/venv on a Python every
    user may run; the third-party packages of this environment are reached through a .pth file."""
    base = Path(base)
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
    install = Install(base, venv, site)
    third_party = sysconfig.get_paths()["purelib"]
    if not others_can_reach(third_party):  # e.g. a checkout under /root: show it where students can read
        install.mounted = base / "third-party"
        install.mounted.mkdir()
        run(["mount", "--bind", third_party, install.mounted])
        third_party = install.mounted
    (site / "zz_third_party.pth").write_text(f"{third_party}\n")
    shutil.rmtree(src)
    return install


def remove_install(base, mounted=None):
    """Unmount the third-party packages (if mounted) and delete `base`, never through a bind mount."""
    if mounted is not None:
        subprocess.run(["umount", mounted], capture_output=True)
    if mounted is not None and os.path.ismount(mounted):
        print(f"left {base}: {mounted} is still mounted")
    else:
        shutil.rmtree(base, ignore_errors=True)


def add_student(name, home):
    """A Unix user `name` (group of its own) whose home `home` only it may enter."""
    run(["useradd", "--create-home", "--home-dir", home, "--shell", "/bin/sh", "--user-group", name])
    Path(home).chmod(0o700)


def uid_of(name):
    """The numeric id of user `name`, or None where there is no such user."""
    out = subprocess.run(["id", "-u", name], capture_output=True, text=True)
    return int(out.stdout) if out.returncode == 0 else None


def remove_student(name, home=None):
    """Kill whatever still runs as `name`, delete the account and (when given) its home."""
    uid = uid_of(name)
    if uid is not None and uid > 0:
        stop_processes_of(uid)
    subprocess.run(["userdel", name], capture_output=True)
    if home is not None:
        shutil.rmtree(home, ignore_errors=True)
