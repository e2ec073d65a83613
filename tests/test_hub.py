"""The course in a real JupyterHub classroom (`tools/hub_rehearsal.py`, reduced to fit the test suite).

What the reduced rehearsal keeps: a real JupyterHub with its npm proxy on 127.0.0.1, the course installed as a
wheel in a venv every user can read, three students who are Unix users with private homes and their own
single-user servers (started through the hub's REST API), a kernel per student started through the proxy and
driven over its websocket at the same time, the isolation checks (another student's home and the installed
package are out of reach, nothing written outside one's own home), three hand-ins of exercise 01 through the
contents API (full, partial, empty) graded by the real `pixelcnn-grade` in its sandbox, and the tear-down (no
process of a student left, accounts deleted). What it drops: lesson 00 runs only its first code cell (the
imports and the environment report) instead of the whole lesson; `make hub-rehearsal` runs all of it.

Needs root, useradd, Node and npm (the proxy is installed into .hub/ on first use) and bubblewrap; CI runs as
root, so under CI=true a missing piece fails instead of skipping.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sandbox_support import require_sandbox

from tools.hub_rehearsal import hub_missing_piece

ROOT = Path(__file__).resolve().parents[1]


def require_hub():
    why = hub_missing_piece()
    if why:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"the hub rehearsal runs in CI: {why}")
        pytest.skip(f"the hub rehearsal {why}; it runs as root with useradd, node and npm (`make hub-rehearsal`)")
    require_sandbox()


def test_three_students_run_a_lesson_at_once_hand_in_and_are_graded_in_a_real_hub(tmp_path):
    """The reduced rehearsal passes every check of its own (exit status 0) and reports the grades: full marks
    score the maximum, the partial hand-in its solved tasks' points (strictly between), the empty one 0; the
    student accounts are gone afterwards."""
    require_hub()
    report = tmp_path / "rehearsal.json"
    cmd = [sys.executable, "-m", "tools.hub_rehearsal", "--students", "3", "--lesson-cells", "1"]
    out = subprocess.run([*cmd, "--json", str(report)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{out.stdout[-3000:]}\n{out.stderr[-6000:]}"
    result = json.loads(report.read_text())
    grades = {g["kind"]: g for g in result["grades"].values()}
    assert sorted(grades) == ["empty", "full", "partial"]
    assert grades["full"]["total"] == grades["full"]["max"] > 0
    assert 0 < grades["partial"]["total"] < grades["partial"]["max"]
    assert grades["empty"]["total"] == 0
    for name in result["grades"]:
        assert subprocess.run(["id", "-u", name], capture_output=True).returncode != 0, f"{name} was not deleted"
    print(out.stdout.strip())
