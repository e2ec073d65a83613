"""The throwaway sandbox one submission's kernel runs in, made by bubblewrap (Debian's `bubblewrap`, the
sandbox Flatpak uses).

`Snapshot` reads `course_lib` and `coursework` into memory once, before any submission runs. `Sandbox`
builds, for one submission, a temporary folder on the grader's side::

    <sandbox>/lib/     the snapshot and the kernel's launcher (`coursework.kernel`)
    <sandbox>/input/   a copy of the submission's folder
    <sandbox>/run/     the kernel's connection file and sockets: the only folder both sides share
    <sandbox>/share/   the kernel specification: ``bwrap ... python launcher -f {connection_file}``
    <sandbox>/home/    the executor's HOME and temporary folder (the grader's side; the kernel never sees it)

and the kernel starts inside `bwrap`, which gives it, and every process it starts:

- its own user namespace, as uid and gid 65534 with no capabilities and no right to make another one;
- its own PID namespace (it cannot see or signal the grader, the executor or another submission, and when
  the kernel ends every process it started ends) and ``--die-with-parent`` (when the executor dies, so does
  the sandbox);
- no network (a namespace with only its own loopback), and its own IPC and host name;
- a file system made of: ``/usr``, a few files of ``/etc`` and the Python installation and environment the
  grader runs with, read-only, at their own paths; the snapshot at ``/course/lib``, read-only; a copy of
  the submission at ``/course/submission``, read-only, copied into ``/course/work`` (its working folder),
  ``/home/student`` and ``/tmp`` as memory file systems of bounded size, discarded afterwards; its own
  ``/proc`` and a minimal ``/dev``. Nothing else: not the repository (its ``.git``, ``solutions/``), not the
  submissions folder, not the grader's home;
- a clean environment (only the variables listed in `inside_environment`);
- limits set before any submission code runs (`Limits`, applied by the launcher): address space, processes,
  file size, no core files; as root, where cgroups can be made (v1 or v2), the process limit is a pids
  cgroup's and the memory of all its processes together a memory cgroup's (the executor and everything it
  starts join them). Time is limited by the executor and the grader.

``unsafe=True`` (``pixelcnn-grade --unsafe-no-sandbox``) runs the same launcher without bubblewrap, as the
grader's user, with only the private HOME, the snapshot first on the import path and the limits.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import kernel

KERNEL_NAME = "course-grader"
LAUNCHER = "course_grader_kernel.py"
SKIPPED = ("__pycache__",)
INSIDE_LIB, INSIDE_INPUT, INSIDE_WORK = "/course/lib", "/course/submission", "/course/work"
INSIDE_HOME = "/home/student"
SANDBOX_UID = 65534  # "nobody" on Debian
ETC_FILES = (
    "passwd",
    "group",
    "nsswitch.conf",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "alternatives",
)
PASSED_THROUGH = ("COURSE_FAST", "TQDM_DISABLE", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "LANG")
DROPPED = ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME", "PYTHONUSERBASE", "VIRTUAL_ENV", "IPYTHONDIR", "JUPYTER_")
INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: `sudo apt-get install bubblewrap`; Fedora: `sudo dnf install bubblewrap`)"
)


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot make a sandbox here; the message says why and how to fix it."""


@dataclass(frozen=True)
class Limits:
    """What one submission may use: address space, memory file systems (/work, /home/student, /tmp each),
    processes and threads, the size of any one file it writes, and the threads its OpenMP and MKL pools
    start (`threads`, set as OMP_NUM_THREADS and MKL_NUM_THREADS: a share of the cores when several
    submissions are graded at once; 0: as PASSED_THROUGH gives them)."""

    memory: int = 8 << 30
    disk: int = 512 << 20
    processes: int = 512
    file_size: int = 1 << 30
    threads: int = 0


DEFAULT_LIMITS = Limits()


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


def _package_folder(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"cannot find the package {name}")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


CGROUP_ROOT = Path("/sys/fs/cgroup")


def resource_cgroups(processes: int, memory: int) -> list[Path]:
    """Fresh cgroups that allow `processes` processes and threads and `memory` bytes in all, for one
    submission, where the grader may make them (as root): cgroup v1's pids and memory controllers, or one
    cgroup v2 group with both. They stand in for what rlimits cannot do: RLIMIT_NPROC does not bind
    processes that are root outside their user namespace, and the address-space limit is per process, not
    for the submission's processes together. Empty where none can be made."""
    if os.geteuid() != 0:
        return []
    name = f"course-grade-{secrets.token_hex(6)}"
    if (CGROUP_ROOT / "cgroup.controllers").is_file():  # cgroup v2: one group, both limits
        wanted = [("pids.max", processes), ("memory.max", memory), ("memory.swap.max", 0)]
        return _make_cgroup(CGROUP_ROOT / name, wanted, optional={"memory.swap.max"})
    made = []
    for controller, wanted in (
        ("pids", [("pids.max", processes)]),
        ("memory", [("memory.limit_in_bytes", memory), ("memory.memsw.limit_in_bytes", memory)]),
    ):
        made += _make_cgroup(CGROUP_ROOT / controller / name, wanted, optional={"memory.memsw.limit_in_bytes"})
    return made


def _make_cgroup(path: Path, limits: list, optional: set) -> list[Path]:
    """[path] once the cgroup exists with `limits` ((file, value), ...) written; [] where it cannot be made
    (files in `optional` may be missing: swap accounting is often off)."""
    if not (path.parent / "cgroup.procs").is_file():
        return []
    try:
        path.mkdir()
    except OSError:
        return []
    for file, value in limits:
        try:
            (path / file).write_text(str(value))
        except OSError:
            if file not in optional:
                remove_cgroup(path)
                return []
    return [path]


def remove_cgroup(path: Path) -> None:
    """Remove a cgroup once its last process is gone (waits up to 5 s)."""
    for _ in range(50):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def python_folders() -> list[Path]:
    """The folders the grader's Python needs (its installation and environment), outermost only."""
    candidates = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    candidates.add(Path(sys.executable).resolve().parent.parent)
    candidates = {c for c in candidates if c != Path(c.anchor) and not c.is_relative_to("/usr")}
    return sorted(c for c in candidates if not any(o != c and c.is_relative_to(o) for o in candidates))


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        top = Path("/") / name
        if top.is_symlink():
            args += ["--symlink", os.readlink(top), str(top)]
        elif top.is_dir():
            args += ["--ro-bind", str(top), str(top)]
    for name in ETC_FILES:
        path = Path("/etc") / name
        if path.exists():
            args += ["--ro-bind", str(path), str(path)]
    return args


def inside_environment(threads: int = 0) -> dict:
    """The kernel's whole environment inside the sandbox (`threads`: see `Limits`)."""
    home = INSIDE_HOME
    env = {
        "HOME": home,
        "USER": "student",
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
        "LANG": "C.UTF-8",
        "TMPDIR": "/tmp",
        "PYTHONPATH": INSIDE_LIB,
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "IPYTHONDIR": f"{home}/.ipython",
        "MPLCONFIGDIR": f"{home}/.config/matplotlib",
        "XDG_CONFIG_HOME": f"{home}/.config",
        "XDG_CACHE_HOME": f"{home}/.cache",
        "XDG_DATA_HOME": f"{home}/.local/share",
        "MPLBACKEND": "Agg",
        "TQDM_DISABLE": "1",
    }
    env.update({k: os.environ[k] for k in PASSED_THROUGH if k in os.environ})
    if threads > 0:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def bwrap_command(bwrap: str, lib: Path, given: Path, run: Path, limits: Limits) -> list[str]:
    """The bwrap command line that runs `python LAUNCHER` in a fresh sandbox (see the module docstring)."""
    args = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_UID),
        "--hostname",
        "grader",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        *_system_binds(),
        "--proc",
        "/proc",
        "--dev",
        "/dev",
    ]
    for inside in ("/tmp", INSIDE_HOME, INSIDE_WORK):
        args += ["--size", str(limits.disk), "--perms", "0700", "--tmpfs", inside]
    for folder in python_folders():  # after the memory file systems, which must not cover them
        args += ["--ro-bind", str(folder), str(folder)]
    args += ["--ro-bind", str(lib), INSIDE_LIB, "--ro-bind", str(given), INSIDE_INPUT, "--bind", str(run), str(run)]
    for key, value in inside_environment(limits.threads).items():
        args += ["--setenv", key, value]
    args += ["--chdir", INSIDE_WORK, "--", sys.executable, f"{INSIDE_LIB}/{LAUNCHER}"]
    args += ["--copy", INSIDE_INPUT, INSIDE_WORK, "--limits", *map(str, _limit_values(limits, processes=True))]
    return args


def _limit_values(limits: Limits, processes: bool) -> tuple[int, int, int]:
    return limits.memory, limits.processes if processes else -1, limits.file_size


def probe(bwrap: str | None = None) -> None:
    """Raise `SandboxUnavailable` (saying why and how to fix it) unless bwrap can run Python in a sandbox."""
    bwrap = bwrap or bwrap_path()
    if bwrap is None:
        raise SandboxUnavailable(
            "pixelcnn-grade runs every submission in a throwaway bubblewrap sandbox, but `bwrap` is not "
            f"installed; {INSTALL_HINT}, or pass --unsafe-no-sandbox to grade without isolation (only for "
            "submissions you trust)"
        )
    with tempfile.TemporaryDirectory(prefix="course-grade-probe-") as folder:
        lib, given, run = (Path(folder) / name for name in ("lib", "input", "run"))
        for path in (lib, given, run):
            path.mkdir()
        (lib / LAUNCHER).write_text("import os, sys\nprint(os.getuid(), sys.version_info[0])\n", encoding="utf-8")
        command = bwrap_command(bwrap, lib, given, run, DEFAULT_LIMITS)
        command = command[: command.index(f"{INSIDE_LIB}/{LAUNCHER}") + 1]
        try:
            result = subprocess.run(command, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as error:
            problem = str(error)
        else:
            if result.returncode == 0 and result.stdout.split() == [str(SANDBOX_UID).encode(), b"3"]:
                return
            lines = result.stderr.decode("utf-8", "replace").strip().splitlines()
            problem = lines[-1] if lines else f"exit code {result.returncode}"
    raise SandboxUnavailable(
        f"pixelcnn-grade runs every submission in a throwaway bubblewrap sandbox, but {bwrap} could not make one "
        f"here ({problem[:200]}); allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, "
        "or a container started with them), or pass --unsafe-no-sandbox to grade without isolation (only for "
        "submissions you trust)"
    )


def executor_environment(root: Path) -> dict:
    """The executor's environment (the grader's side): the user's variables without those that configure
    Python or Jupyter, a private HOME and Jupyter folders inside the sandbox folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(DROPPED)}
    home = root / "home"
    env.update(
        HOME=str(home),
        IPYTHONDIR=str(home / ".ipython"),
        JUPYTER_CONFIG_DIR=str(home / ".jupyter"),
        JUPYTER_DATA_DIR=str(home / ".local" / "share" / "jupyter"),
        JUPYTER_RUNTIME_DIR=str(root / "run"),
        JUPYTER_PATH=str(root / "share" / "jupyter"),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        MPLCONFIGDIR=str(home / ".config" / "matplotlib"),
        TMPDIR=str(home / "tmp"),
        PYTHONPATH=str(root / "lib"),
        PYTHONNOUSERSITE="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.setdefault("TQDM_DISABLE", "1")
    env.setdefault("MPLBACKEND", "Agg")
    return env


class Sandbox:
    """The grader's side of one submission's sandbox (see the module docstring); removed by `close()`.

    `bwrap`: the bubblewrap program, or None with ``unsafe=True`` (no isolation)."""

    def __init__(self, snapshot: Snapshot, bwrap: str | None, limits: Limits = DEFAULT_LIMITS, unsafe: bool = False):
        if bwrap is None and not unsafe:
            raise SandboxUnavailable("no bubblewrap sandbox and --unsafe-no-sandbox not given")
        self.root = Path(tempfile.mkdtemp(prefix="course-grade-"))
        self.root.chmod(0o700)
        self.work = self.root / "input"
        for folder in ("home/tmp", "home/.config/matplotlib", "run", "input"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        lib = self.root / "lib"
        snapshot.write(lib)
        shutil.copyfile(Path(kernel.__file__), lib / LAUNCHER)
        if unsafe:
            argv = [sys.executable, str(lib / LAUNCHER), "--limits", *map(str, _limit_values(limits, False))]
        else:
            argv = bwrap_command(bwrap, lib, self.work, self.root / "run", limits)
        spec = self.root / "share" / "jupyter" / "kernels" / KERNEL_NAME
        spec.mkdir(parents=True)
        kernel_json = {
            "argv": [*argv, "-f", "{connection_file}"],
            "display_name": "course grader",
            "language": "python",
        }
        if unsafe:
            kernel_json["env"] = {
                **inside_environment(limits.threads),
                "HOME": str(self.root / "home"),
                "PYTHONPATH": str(lib),
            }
            kernel_json["env"].update(
                {k: str(self.root / "home" / v) for k, v in (("IPYTHONDIR", ".ipython"), ("TMPDIR", "tmp"))}
            )
            for key in ("MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"):
                kernel_json["env"][key] = kernel_json["env"][key].replace(INSIDE_HOME, str(self.root / "home"))
        (spec / "kernel.json").write_text(json.dumps(kernel_json), encoding="utf-8")
        self.env = executor_environment(self.root)
        # the executor joins them (`--cgroup`), and so does everything it starts; a little room for its threads
        self.cgroups = [] if unsafe else resource_cgroups(limits.processes + 64, limits.memory)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        for cgroup in self.cgroups:
            remove_cgroup(cgroup)
