"""The grading kernel: the IPython kernel that runs one submission, started inside its sandbox.

    python <sandbox>/lib/course_grader_kernel.py -f CONNECTION_FILE

The grader copies this file into the sandbox (`coursework.sandbox`) next to a snapshot of `course_lib` and
`coursework`. Before any submission code runs, the kernel

1. hides the reference notebooks where the system allows it (Linux with user namespaces, or root): in a
   private mount namespace the reference folders named in the sandbox's ``hide.json`` (read, then deleted)
   are covered by an empty folder and the original `course_lib` and `coursework` folders are made
   read-only; a nested user namespace then takes away the right to undo either. Elsewhere this step is
   skipped and only the next one applies;
2. forgets the way to them: every ``sys.path`` entry that is a hidden folder or a folder above one, the
   import caches, and the editable-install finders that map package names to the repository are removed;
3. reads `course_lib` and `coursework` from the snapshot into memory and serves every later import of them
   from memory, so a submission that rewrites those files on disk grades nobody with its version;
4. puts the working folder at the end of ``sys.path`` instead of before the installed packages, so a
   ``torch/`` folder (or any file) next to a submission never shadows a real package.

It runs with the standard library and ipykernel only; it imports neither torch nor the course.
"""

from __future__ import annotations

import ctypes
import importlib.abc
import importlib.util
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGES = ("course_lib", "coursework")


CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 32, 4096, 0x4000, 1 << 18


def _call(libc, name: str, *args) -> None:
    if getattr(libc, name)(*args) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{name}: {os.strerror(error)}")


def _own_user_namespace(libc) -> None:
    """Enter a new user namespace that maps our own user and group to themselves."""
    uid, gid = os.geteuid(), os.getegid()
    _call(libc, "unshare", CLONE_NEWUSER)
    try:
        Path("/proc/self/setgroups").write_text("deny")
    except OSError:  # older kernels have no setgroups file
        pass
    Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
    Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")


def hide(covered: list[Path], read_only: list[Path], empty: Path) -> bool:
    """Cover the `covered` folders with `empty` and make `read_only` read-only, for this process and its
    children only; then give up the right to undo it. False (and nothing changed) where not allowed."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if os.geteuid() == 0:
            _call(libc, "unshare", CLONE_NEWNS)
        else:
            _own_user_namespace(libc)
            _call(libc, "unshare", CLONE_NEWNS)
        _call(libc, "mount", None, b"/", None, MS_REC | MS_PRIVATE, None)  # nothing leaks to the host
        for folder in covered:
            if folder.is_dir():
                _call(libc, "mount", bytes(empty), bytes(folder), None, MS_BIND, None)
        for folder in read_only:
            if folder.is_dir():
                _call(libc, "mount", bytes(folder), bytes(folder), None, MS_BIND | MS_REC, None)
                _call(libc, "mount", None, bytes(folder), None, MS_BIND | MS_REMOUNT | MS_RDONLY, None)
        _own_user_namespace(libc)  # the mounts above are now locked: this process cannot undo them
    except (OSError, AttributeError):
        return False
    return True


def _leads_to(entry: str, hidden: list[Path]) -> bool:
    """True when the path entry is a hidden folder or a folder above one ('' is the working folder)."""
    try:
        path = Path(entry or ".").resolve()
    except (OSError, RuntimeError, ValueError):
        return False
    return any(path == h or path in h.parents for h in hidden)


def _from_editable_install(obj) -> bool:
    module = getattr(obj, "__module__", None) or type(obj).__module__
    return str(module).startswith("__editable__")


def forget(hidden: list[Path]) -> None:
    """Remove every import path, cache and finder that leads to a hidden folder."""
    sys.path[:] = [entry for entry in sys.path if not _leads_to(entry, hidden)]
    sys.meta_path[:] = [finder for finder in sys.meta_path if not _from_editable_install(finder)]
    sys.path_hooks[:] = [hook for hook in sys.path_hooks if not _from_editable_install(hook)]
    for name in [n for n in sys.modules if n.startswith("__editable__")]:
        del sys.modules[name]
    sys.path_importer_cache.clear()  # cached finders of removed entries


class _MemoryLoader(importlib.abc.InspectLoader):
    def __init__(self, source: str, origin: str):
        self.source, self.origin = source, origin

    def get_source(self, fullname):
        return self.source

    def exec_module(self, module):
        exec(compile(self.source, self.origin, "exec", dont_inherit=True), module.__dict__)


class Snapshot(importlib.abc.MetaPathFinder):
    """Serves the modules of `PACKAGES` from the sources read at start-up (never from disk again)."""

    def __init__(self, root: Path):
        self.modules: dict[str, tuple[str, str, bool]] = {}  # name -> (file, source, is_package)
        for package in PACKAGES:
            for path in sorted((root / package).rglob("*.py")):
                parts = path.relative_to(root).with_suffix("").parts
                is_package = parts[-1] == "__init__"
                name = ".".join(parts[:-1] if is_package else parts)
                self.modules[name] = (str(path), path.read_text(encoding="utf-8"), is_package)

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.modules:
            return None
        origin, source, is_package = self.modules[fullname]
        return importlib.util.spec_from_file_location(
            fullname,
            origin,
            loader=_MemoryLoader(source, origin),
            submodule_search_locations=[str(Path(origin).parent)] if is_package else None,
        )


def main() -> None:
    hide_file = HERE / "hide.json"
    plan = json.loads(hide_file.read_text(encoding="utf-8"))
    hide_file.unlink()
    hide([Path(p) for p in plan["cover"]], [Path(p) for p in plan["read_only"]], Path(plan["empty"]))
    forget([Path(p).resolve() for p in plan["forget"]])
    sys.path[:] = [entry for entry in sys.path if entry and Path(entry).resolve() != HERE]
    sys.meta_path.insert(0, Snapshot(HERE))

    from ipykernel.kernelapp import IPKernelApp

    app = IPKernelApp.instance()
    app.initialize(sys.argv[1:] + ["--IPKernelApp.ignore_cwd=True"])
    sys.path.append("")  # the working folder, after every installed package
    app.start()


if __name__ == "__main__":
    main()
