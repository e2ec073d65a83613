"""tools/mutate_solutions.py: it makes one-line mutants of every task's reference solution, runs each task's
check on them, and reports what is caught (with the check's message) and what survives."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tools import mutate_solutions as ms

ROOT = Path(__file__).resolve().parents[1]
SELECTED = ms.select_tasks()


def _run(code, timeout=300):
    """Run `code` in a fresh interpreter (the tool forks: keep it away from pytest's process)."""
    env_code = "from tools import mutate_solutions as ms\n" + code
    done = subprocess.run(
        [sys.executable, "-c", env_code], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    return done


def test_every_lesson_and_task_gets_one_line_mutants():
    assert sorted(SELECTED) == sorted(ms.lessons()) and len(SELECTED) >= 5
    for lesson, tasks in SELECTED.items():
        assert tasks, lesson
        for task in tasks:
            mutants = ms.mutants_of(task)
            assert len([m for m in mutants if m.origin == "generated"]) >= 3, task.grade_id
            original = task.source.split("\n")
            assert len({m.source for m in mutants}) == len(mutants), f"duplicate mutants in {task.grade_id}"
            for m in (m for m in mutants if m.origin == "generated"):
                mutated = m.source.split("\n")
                assert m.source != task.source
                # the lines before and after the change are the original's: exactly one line replaces it
                head = next(k for k, (a, b) in enumerate(zip(original + [None], mutated + [None])) if a != b)
                room = min(len(original), len(mutated)) - head
                tail = next(k for k in range(room + 1) if k == room or original[-1 - k] != mutated[-1 - k])
                assert len(mutated) - head - tail == 1, (task.grade_id, m.mutation)
                assert mutated == original[:head] + [mutated[head]] + original[len(original) - tail :]
                assert any(first <= head + 1 and len(original) - tail <= last for first, last in task.blocks), (
                    "outside the solution block"
                )
                assert mutated[head].strip() == m.mutated
                compile(m.source, m.task, "exec")


def test_mutants_include_the_plausible_slips_and_the_catalogue():
    task = next(t for t in SELECTED["01"] if t.grade_id == "t04_eval")
    mutations = {m.mutation for m in ms.mutants_of(task)}
    for expected in (
        "drop `with torch.no_grad()`",
        "`eval` -> `train`",
        "drop the argument of `train`",
        "bits instead of nats",
    ):
        assert expected in mutations
    conv = next(t for t in SELECTED["02"] if t.grade_id == "t02_conv")
    mutations = {m.mutation for m in ms.mutants_of(conv)}
    assert "register_buffer -> a plain attribute `mask`" in mutations and "`.weight` -> `.weight.data`" in mutations


def test_every_equivalent_and_catalogue_entry_matches_a_mutant():
    keys = {m.key for tasks in SELECTED.values() for t in tasks for m in ms.mutants_of(t)}
    stale = [key for key in ms.load_equivalents() if key not in keys]
    assert not stale, f"mistakes/equivalent.toml lists mutants that no longer exist: {stale}"


def test_caught_survived_timeout_and_crash_are_reported():
    code = """
import json
ms.preload()
selected = ms.select_tasks(["02"], ["t01_mask"])
line = "mask = torch.zeros(out_channels, in_channels, k, k)"
from tools.mistakes import Mistake
def mistake(old, new, why):
    return Mistake("02", "t01_mask", why, ("right of the centre",), ((old, new),))
catalogue = [
    mistake("mask[:, :, c, :c] = 1", "mask[:, :, c, :] = 1", "the whole centre row"),
    mistake("k, k)", "k, k) + 0.0", "the same mask"),
    mistake("k, k)", "k, k) * 1.0", "listed as equivalent"),
    mistake("return mask", "while True: pass", "a loop that never ends"),
    mistake("return mask", "import os; os._exit(3)", "a dying process"),
]
equivalents = {("t01_mask", line, "listed as equivalent"): "multiplying by 1.0 changes nothing"}
reports, mutants = ms.evaluate(selected, catalogue=catalogue, generate=False, equivalents=equivalents,
                               timeout=4, progress=False)
r = reports[0]
print(json.dumps({"mutants": {m.mutation: [m.status, m.message] for m in mutants}, "wrong": r.wrong_message,
                  "report": [r.total, r.equivalent, r.check, r.crashed, r.timeout, r.survived, r.score,
                             r.false_failures]}))
"""
    done = _run(code)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    mutants = result["mutants"]
    status, message = mutants["the whole centre row"]
    assert status == "check" and message.startswith("✗") and "right of the centre" in message
    assert mutants["the same mask"][0] == "survived"
    assert mutants["listed as equivalent"] == ["equivalent", "multiplying by 1.0 changes nothing"]
    assert mutants["a loop that never ends"][0] == "timeout"
    assert mutants["a dying process"][0] == "crashed"
    total, equivalent, check, crashed, timeout, survived, score, false_failures = result["report"]
    assert (total, equivalent, check, crashed, timeout, survived) == (5, 1, 1, 1, 1, 1)
    assert score == pytest.approx(75.0) and false_failures == []
    # caught without "right of the centre" in the verdict, or not caught: reported
    assert [line.split(":")[0] for line in result["wrong"]] == [
        "t01_mask the same mask",
        "t01_mask a loop that never ends",
        "t01_mask a dying process",
    ]


def test_a_deterministic_sample_of_every_lesson_scores_at_least_90_percent(tmp_path):
    out = tmp_path / "sample.json"
    args = ["--sample", "3", "--seed", "1", "--fail-under", "90", "--jobs", "2", "--quiet", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "tools.mutate_solutions", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads(out.read_text())
    assert sorted(r["lesson"] for r in data["lessons"]) == sorted(ms.lessons())
    assert all(r["score"] >= 90 and not r["false_failures"] for r in data["lessons"])
    ran = [m for m in data["mutants"] if m["status"] != "equivalent"]
    assert len(ran) == 3 * len(data["lessons"])
    assert all(m["message"] for m in ran if m["status"] in ("check", "crashed", "timeout"))
