"""Shared by the benchmark scripts: argument defaults, table printing and JSON output."""

import json
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
