"""The grading kernel's launcher: the IPython kernel that runs one submission, started inside its sandbox.

    python <lib>/course_grader_kernel.py [--copy FROM TO] [--limits BYTES PROCESSES FILE_BYTES] -f CONNECTION_FILE

The grader copies this file into the sandbox's ``lib/`` (`coursework.sandbox`) next to the snapshot of
`course_lib` and `coursework`, which comes first on ``PYTHONPATH``. Before any submission code runs, it

1. copies the submission's folder (read-only in the sandbox) into the working folder, if asked;
2. sets the limits it is given, hard and soft, so nothing in the kernel can raise them: address space,
   processes and threads (-1: left alone), size of a file written, and no core files;
3. puts the working folder at the end of ``sys.path`` instead of before the installed packages, so a
   ``torch/`` folder (or any file) next to a submission never shadows a real package (this folder, the
   snapshot, stays first).

It runs with the standard library and ipykernel only; it imports neither torch nor the course.
"""

from __future__ import annotations

import resource
import shutil
import sys

PACKAGES = ("course_lib", "coursework")


def set_limits(memory: int, processes: int, file_size: int) -> None:
    """Hard and soft limits for this process and every process it starts (-1: leave that one alone)."""
    wanted = [(resource.RLIMIT_AS, memory), (resource.RLIMIT_FSIZE, file_size), (resource.RLIMIT_CORE, 0)]
    if processes >= 0:
        wanted.append((resource.RLIMIT_NPROC, processes))
    for which, value in wanted:
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, value))


def parse(argv: list[str]) -> tuple[tuple[str, str] | None, tuple[int, int, int] | None, list[str]]:
    """The launcher's own options (--copy, --limits), and the rest for the kernel."""
    copy = limits = None
    rest = []
    index = 0
    while index < len(argv):
        if argv[index] == "--copy":
            copy = (argv[index + 1], argv[index + 2])
            index += 3
        elif argv[index] == "--limits":
            limits = tuple(int(v) for v in argv[index + 1 : index + 4])
            index += 4
        else:
            rest.append(argv[index])
            index += 1
    return copy, limits, rest


def main() -> None:
    copy, limits, rest = parse(sys.argv[1:])
    if copy is not None:
        shutil.copytree(copy[0], copy[1], symlinks=True, dirs_exist_ok=True)
    if limits is not None:
        set_limits(*limits)
    sys.path[:] = [entry for entry in sys.path if entry]  # the snapshot (this folder) stays first

    from ipykernel.kernelapp import IPKernelApp

    app = IPKernelApp.instance()
    app.initialize(rest + ["--IPKernelApp.ignore_cwd=True"])
    sys.path.append("")  # the working folder, after every installed package
    app.start()


if __name__ == "__main__":
    main()
