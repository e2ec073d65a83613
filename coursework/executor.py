"""The executor: the separate process that runs one prepared notebook in a fresh kernel.

    python -m coursework.executor GIVEN.ipynb --results-fd FD --timeout SECONDS [--cwd DIR] [--kernel NAME]
                                  [--transport ipc] [--cgroup DIR ...]

It runs every code cell (an error does not stop the run) until the time limit for the whole notebook, and
reports on the pipe FD that the grader handed it, one JSON line at a time (each with the token the grader
wrote to its standard input): the kernel's process id, then
one small record per executed cell (its status, the check's verdict: the last line starting with ✓ or ✗,
the error's first line, the last printed line and its seconds), the times it started the kernel, finished
the cells and stopped the kernel, then the final status. Outputs are dropped (at most
OUTPUT_CAP characters per cell are kept while running). The pipe is never passed on to the kernel and no
file carries the results, so a submission cannot write its own grade. The grader starts the executor in a
session of its own, so a kernel that loops forever or prints megabytes never takes the grader down.
It needs neither torch nor course_lib.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

OUTPUT_CAP = 200_000  # characters of output kept per cell while executing


MESSAGE_CAP = 500  # characters of a task's message


PASS_MARK, FAIL_MARK = "✓", "✗"


class Channel:
    """The write end of the grader's pipe: one JSON object per line, each carrying the token the grader sent
    on standard input (read before the kernel starts), so lines that anyone else writes into the pipe are
    ignored."""

    def __init__(self, fd: int, token: str):
        os.set_inheritable(fd, False)  # the kernel and its children never get it
        self.stream = os.fdopen(fd, "w", encoding="utf-8", buffering=1)
        self.token = token

    def send(self, **record) -> None:
        self.stream.write(json.dumps({**record, "token": self.token}) + "\n")
        self.stream.flush()


def _cell_record(cell, reply_status: str | None) -> dict:
    """Status, verdict line and error line of one executed cell (small: no outputs are kept)."""
    text, error = [], None
    for out in cell.get("outputs", []):
        kind = out.get("output_type")
        if kind == "stream":
            text.append(out.get("text", ""))
        elif kind in ("execute_result", "display_data"):
            text.append(str(out.get("data", {}).get("text/plain", "")))
        elif kind == "error":
            error = f"{out.get('ename', 'Error')}: {out.get('evalue', '')}".strip().rstrip(":")
    lines = [line.strip() for chunk in text for line in chunk.splitlines()]
    verdicts = [line for line in lines if line.startswith((PASS_MARK, FAIL_MARK))]
    verdict = verdicts[-1] if verdicts else None
    if error and FAIL_MARK in error and not (verdict or "").startswith(FAIL_MARK):
        verdict = error[error.index(FAIL_MARK) :]
    failed = error is not None or (reply_status not in (None, "ok"))
    return {
        "status": "error" if failed else "ok",
        "verdict": verdict[:MESSAGE_CAP] if verdict else None,
        "error": error.splitlines()[0][:MESSAGE_CAP] if error else (None if not failed else "the cell failed"),
        "last_line": next((line for line in reversed(lines) if line), "")[:MESSAGE_CAP],
    }


SLOW_UNUSED = ("rfc3987_syntax",)  # builds a parser at import (0.7 s); jsonschema only needs it for "iri" formats


def _skip_slow_imports() -> None:
    """Mark SLOW_UNUSED as absent, which jsonschema (imported by nbformat) accepts: nbformat's schema checks
    no IRI, and the executor is started once per submission, so its imports are paid once per submission."""
    for name in SLOW_UNUSED:
        sys.modules.setdefault(name, None)


def execute(
    given: Path, channel: Channel, timeout: float, cwd: Path, kernel_name: str = "python3", transport: str = "tcp"
) -> int:
    """The executor (child process): run every code cell, record each one as soon as it finishes.

    `transport`: how it talks to the kernel; "ipc" (sockets in the runtime folder) reaches a kernel in a
    sandbox without a network."""
    _skip_slow_imports()
    import nbformat
    from jupyter_client import AsyncKernelManager
    from jupyter_core.paths import jupyter_runtime_dir
    from nbclient import NotebookClient

    class CappedClient(NotebookClient):
        """Keeps at most OUTPUT_CAP characters of output per cell; the rest is dropped."""

        sizes: dict = {}

        def output(self, outs, msg, display_id, cell_index):
            content = msg.get("content", {})
            size = len(str(content.get("text", ""))) + sum(len(str(v)) for v in content.get("data", {}).values())
            used = self.sizes.get(cell_index, 0)
            self.sizes[cell_index] = used + size
            if msg.get("msg_type") != "error" and used + size > OUTPUT_CAP:
                if used <= OUTPUT_CAP:
                    outs.append(
                        nbformat.v4.new_output(
                            "stream", name="stderr", text=f"\n[grader: output cut after {OUTPUT_CAP} characters]\n"
                        )
                    )
                return None
            return super().output(outs, msg, display_id, cell_index)

    nb = nbformat.read(given, as_version=4)
    replies: dict[int, str] = {}

    def on_cell_executed(cell, cell_index, execute_reply):
        replies[cell_index] = (execute_reply or {}).get("content", {}).get("status")

    client = CappedClient(
        nb,
        km=AsyncKernelManager(
            kernel_name=kernel_name,
            transport=transport,
            connection_file=os.path.join(jupyter_runtime_dir(), f"kernel-{os.getpid()}.json"),
        ),
        timeout=120,
        kernel_name=kernel_name,
        allow_errors=True,
        interrupt_on_timeout=False,
        shutdown_kernel="immediate",
        record_timing=False,
        iopub_timeout=15,
        on_cell_executed=on_cell_executed,
        resources={"metadata": {"path": str(cwd)}},
    )
    status = "running"
    timing = {"imported": time.time()}
    try:
        with client.setup_kernel(cwd=str(cwd)):
            process = getattr(getattr(client.km, "provisioner", None), "process", None)
            if process is not None:
                channel.send(kernel_pid=process.pid)
            client.wait_for_reply(client.kc.kernel_info())
            timing["kernel_ready"] = time.time()
            status = _run_cells(client, nb, channel, replies, time.monotonic() + timeout)
            timing["cells_done"] = time.time()
    except Exception as error:  # the kernel failed to start, or the channel broke
        if status == "running":
            status = f"error: {type(error).__name__}: {str(error)[:200]}"
    timing["kernel_stopped"] = time.time()
    channel.send(timing=timing)
    channel.send(status=status, done=True)
    return 0


def _run_cells(client, nb, channel: Channel, replies: dict, deadline: float) -> str:
    """Run the notebook's code cells in order until `deadline` (time.monotonic()), sending one record per
    cell; the run's status ("ok", "time limit exceeded", "kernel died")."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "time limit exceeded"
        client.timeout_func = lambda _cell, r=remaining: max(1, int(math.ceil(r)))
        started = time.monotonic()
        try:
            client.execute_cell(cell, index, execution_count=index + 1)
        except CellTimeoutError:
            channel.send(cell=index, status="timeout", verdict=None, error=None, last_line="")
            return "time limit exceeded"
        except DeadKernelError:
            channel.send(cell=index, status="dead", verdict=None, error=None, last_line="")
            return "kernel died"
        channel.send(cell=index, seconds=round(time.monotonic() - started, 3), **_cell_record(cell, replies.get(index)))
        cell.outputs = []  # records are all we keep
    return "ok"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m coursework.executor", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("given", type=Path, help="the prepared notebook to run")
    parser.add_argument("--results-fd", type=int, required=True, help="the pipe the records are written to")
    parser.add_argument("--timeout", type=float, required=True, help="seconds for the whole notebook")
    parser.add_argument("--cwd", type=Path, help="the kernel's working folder (default: the notebook's)")
    parser.add_argument("--kernel", default="python3", help="the kernel specification's name")
    parser.add_argument("--transport", choices=("tcp", "ipc"), default="tcp", help="how to reach the kernel")
    parser.add_argument(
        "--cgroup", type=Path, action="append", default=[], help="a cgroup to join first (with the kernel it starts)"
    )
    args = parser.parse_args(argv)
    for cgroup in args.cgroup:
        (cgroup / "cgroup.procs").write_text(str(os.getpid()))
    channel = Channel(args.results_fd, sys.stdin.readline().strip())
    code = execute(args.given, channel, args.timeout, args.cwd or args.given.parent, args.kernel, args.transport)
    # every record is written and the kernel is shut down: skip the interpreter's slow teardown
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
