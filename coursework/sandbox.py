"""The folder one submission runs in, and what its kernel is allowed to see.

`Snapshot` reads `course_lib` and `coursework` into memory once, before any submission runs. `Sandbox`
builds a fresh temporary folder per submission::

    <sandbox>/lib/        the snapshot (course_lib, coursework) and the kernel's launcher
    <sandbox>/home/       HOME, IPython, Jupyter, matplotlib and cache folders: empty, never shared
    <sandbox>/share/      the kernel specification of the grading kernel (`coursework.kernel`)
    <sandbox>/work/       a copy of the submission's folder: the kernel's working folder

and the environment the executor and the kernel run with: the user's variables without those that name
the hidden folders (the reference notebooks and the folder above them), ``PYTHONPATH`` set to the snapshot
only, and every per-user folder inside ``home/``. Nothing one submission writes is seen by the next.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import kernel

KERNEL_NAME = "course-grader"
LAUNCHER = "course_grader_kernel.py"
DROPPED = ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME", "PYTHONUSERBASE", "VIRTUAL_ENV", "IPYTHONDIR", "JUPYTER_")
SKIPPED = ("__pycache__",)


def _package_folder(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"cannot find the package {name}")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


@dataclass(frozen=True)
class Snapshot:
    """The bytes of every file of `course_lib` and `coursework` (relative path -> content), and the folders
    they came from."""

    files: dict
    origins: tuple

    @classmethod
    def take(cls, folders: dict | None = None) -> Snapshot:
        """Read the packages from where Python imports them (or from `folders`: package name -> folder)."""
        files, origins = {}, []
        for package in kernel.PACKAGES:
            folder = Path(folders[package]).resolve() if folders else _package_folder(package)
            origins.append(folder)
            for path in sorted(folder.rglob("*")):
                if path.is_file() and not any(part in SKIPPED for part in path.parts) and path.suffix != ".pyc":
                    files[str(Path(package) / path.relative_to(folder))] = path.read_bytes()
        return cls(files, tuple(origins))

    def write(self, target: Path) -> None:
        for relative, content in self.files.items():
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)


def hidden_folders(reference: Path) -> list[Path]:
    """The reference folder and the folder above it (unless that is the root or the home folder)."""
    reference = reference.resolve()
    hidden = [reference]
    if reference.parent not in (Path(reference.anchor), Path.home().resolve()):
        hidden.append(reference.parent)
    return hidden


def environment(root: Path, hidden: list[Path]) -> dict:
    """The executor's and kernel's environment for the sandbox at `root`."""
    names = [str(h) for h in hidden]
    env = {}
    for key, value in os.environ.items():
        if key.startswith(DROPPED):
            continue
        if any(name in value for name in names):
            if key != "PATH":
                continue
            value = os.pathsep.join(p for p in value.split(os.pathsep) if not any(n in p for n in names))
        env[key] = value
    home = root / "home"
    env.update(
        HOME=str(home),
        IPYTHONDIR=str(home / ".ipython"),
        JUPYTER_CONFIG_DIR=str(home / ".jupyter"),
        JUPYTER_DATA_DIR=str(home / ".local" / "share" / "jupyter"),
        JUPYTER_RUNTIME_DIR=str(home / ".local" / "share" / "jupyter" / "runtime"),
        JUPYTER_PATH=str(root / "share" / "jupyter"),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        MPLCONFIGDIR=str(home / ".config" / "matplotlib"),
        TMPDIR=str(root / "tmp"),
        PYTHONPATH=str(root / "lib"),
        PYTHONNOUSERSITE="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.setdefault("TQDM_DISABLE", "1")
    env.setdefault("MPLBACKEND", "Agg")
    return env


def can_hide() -> bool:
    """Whether kernels here can hide the reference folders (a private mount namespace; see `kernel.hide`)."""
    with tempfile.TemporaryDirectory(prefix="course-grade-probe-") as folder:
        covered, empty = Path(folder) / "covered", Path(folder) / "empty"
        covered.mkdir()
        empty.mkdir()
        (covered / "secret").write_text("x")
        probe = (
            "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); import kernel; "
            "ok = kernel.hide([Path(sys.argv[2])], [], Path(sys.argv[3])); "
            "sys.exit(0 if ok and not (Path(sys.argv[2]) / 'secret').exists() else 1)"
        )
        result = subprocess.run(
            [sys.executable, "-c", probe, str(Path(kernel.__file__).parent), str(covered), str(empty)],
            capture_output=True,
            timeout=60,
        )
        return result.returncode == 0 and (covered / "secret").exists()


class Sandbox:
    """A fresh temporary folder for one submission (see the module docstring); removed by `close()`."""

    def __init__(self, snapshot: Snapshot, references: list[Path]):
        references = [r.resolve() for r in references]
        hidden = [h for folder in references for h in hidden_folders(folder)]
        self.root = Path(tempfile.mkdtemp(prefix="course-grade-"))
        self.work = self.root / "work"
        for folder in ("home/.ipython", "home/.config/matplotlib", "home/.cache", "tmp", "work"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        lib = self.root / "lib"
        snapshot.write(lib)
        shutil.copyfile(Path(kernel.__file__), lib / LAUNCHER)
        forget = [str(h) for h in hidden] + [str(o) for o in snapshot.origins]
        forget += [str(o.parent) for o in snapshot.origins if o.parent.name not in ("site-packages", "dist-packages")]
        (self.root / "tmp" / "empty").mkdir()
        plan = {
            "cover": [str(r) for r in references],
            "read_only": [str(o) for o in snapshot.origins],
            "empty": str(self.root / "tmp" / "empty"),
            "forget": sorted(set(forget)),
        }
        (lib / "hide.json").write_text(json.dumps(plan), encoding="utf-8")
        spec = self.root / "share" / "jupyter" / "kernels" / KERNEL_NAME
        spec.mkdir(parents=True)
        argv = [sys.executable, str(lib / LAUNCHER), "-f", "{connection_file}"]
        (spec / "kernel.json").write_text(
            json.dumps({"argv": argv, "display_name": "course grader", "language": "python"}), encoding="utf-8"
        )
        self.env = environment(self.root, hidden)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
