"""The executor: the separate process that runs one prepared notebook in a fresh kernel.

    python -m coursework.executor GIVEN.ipynb RESULT.json --timeout SECONDS [--pidfile FILE] [--cwd DIR]

It runs every code cell (an error does not stop the run) until the time limit for the whole notebook, and
after each cell rewrites RESULT.json with one small record per executed cell: its status, the check's
verdict (the last line starting with ✓ or ✗), the error's first line and the last printed line; outputs
are dropped (at most OUTPUT_CAP characters per cell are kept while running). The grader starts it in a
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


def _write_json(path: Path, data) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data), encoding="utf-8")
    os.replace(temporary, path)


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


def execute(given: Path, result: Path, timeout: float, pidfile: Path | None, cwd: Path) -> int:
    """The executor (child process): run every code cell, record each one as soon as it finishes."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

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
        timeout=120,
        kernel_name="python3",
        allow_errors=True,
        interrupt_on_timeout=False,
        shutdown_kernel="immediate",
        record_timing=False,
        iopub_timeout=15,
        on_cell_executed=on_cell_executed,
        resources={"metadata": {"path": str(cwd)}},
    )
    outcome: dict = {"status": "running", "cells": {}}
    _write_json(result, outcome)
    try:
        with client.setup_kernel(cwd=str(cwd)):
            process = getattr(getattr(client.km, "provisioner", None), "process", None)
            if pidfile is not None and process is not None:
                pidfile.write_text(str(process.pid))
            client.wait_for_reply(client.kc.kernel_info())
            deadline = time.monotonic() + timeout
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code" or not cell.source.strip():
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    outcome["status"] = "time limit exceeded"
                    break
                client.timeout_func = lambda _cell, r=remaining: max(1, int(math.ceil(r)))
                try:
                    client.execute_cell(cell, index, execution_count=index + 1)
                except CellTimeoutError:
                    outcome["cells"][str(index)] = {
                        "status": "timeout",
                        "verdict": None,
                        "error": None,
                        "last_line": "",
                    }
                    outcome["status"] = "time limit exceeded"
                    break
                except DeadKernelError:
                    outcome["cells"][str(index)] = {"status": "dead", "verdict": None, "error": None, "last_line": ""}
                    outcome["status"] = "kernel died"
                    break
                outcome["cells"][str(index)] = _cell_record(cell, replies.get(index))
                cell.outputs = []  # records are all we keep
                _write_json(result, outcome)
            else:
                outcome["status"] = "ok"
    except Exception as error:  # noqa: BLE001 - the kernel failed to start, or the channel broke
        if outcome["status"] == "running":
            outcome["status"] = f"error: {type(error).__name__}: {str(error)[:200]}"
    _write_json(result, outcome)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m coursework.executor", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("given", type=Path, help="the prepared notebook to run")
    parser.add_argument("result", type=Path, help="where the per-cell records are written (JSON)")
    parser.add_argument("--timeout", type=float, required=True, help="seconds for the whole notebook")
    parser.add_argument("--pidfile", type=Path, help="write the kernel's process id here")
    parser.add_argument("--cwd", type=Path, help="the kernel's working folder (default: the notebook's)")
    args = parser.parse_args(argv)
    return execute(args.given, args.result, args.timeout, args.pidfile, args.cwd or args.given.parent)


if __name__ == "__main__":
    sys.exit(main())
