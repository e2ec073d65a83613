"""Shared by the benchmark scripts: argument defaults, table printing and JSON output."""

import json
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def table(header, rows):
    """Print `rows` (lists of strings) under `header` as an aligned plain-text table; return the text."""
    widths = [max(len(str(r[k])) for r in [header, *rows]) for k in range(len(header))]
    lines = ["  ".join(str(v).rjust(w) for v, w in zip(r, widths)) for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def write(name, device, payload, out=None):
    """Write `payload` as JSON to `out` or benchmarks/results/<name>_<device type>.json; return the path."""
    path = Path(out) if out else RESULTS / f"{name}_{device.type}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def remove_group(group, procs="cgroup.procs"):
    """Remove a cgroup v1 group a benchmark made: move any process still inside back to the group above (its
    `procs` file: "cgroup.procs" or "tasks"), then rmdir, retrying for up to 5 s while the kernel still
    counts an exiting task."""
    for pid in (group / procs).read_text().split():
        try:
            (group.parent / procs).write_text(pid)
        except OSError:
            pass  # it has just exited
    for _ in range(50):
        try:
            group.rmdir()
            return
        except OSError:
            time.sleep(0.1)
