"""What one submission can do to the grader and to its classmates, in a class run of `pixelcnn-grade` on
the tiny synthetic lesson of tests/test_grader.py: attackers first, untouched classmates after each.

Each submission's kernel runs in a throwaway bubblewrap sandbox (`coursework.sandbox`). An attacker here
reports what it could reach through its own `square` function, whose return value the check prints
("square(3) returned ..."). Each test states what the sandbox protects: a daemon a submission leaves
behind dies with it and harms no one; it cannot write into the Python environment; it sees no classmate,
no repository (.git, solutions/), no grader and no network; it cannot kill the grader; a fork bomb and a
memory hog cost only its own points; hostile file names reach neither the terminal nor the spreadsheet as
anything but text. Also: the grader refuses to run without a sandbox unless told, and a class run keeps
what it graded when interrupted.
"""

import csv
import json
import os
import shutil
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import nbformat
import pytest
from sandbox_support import require_sandbox
from test_grader import SOLUTION, notebook, write

from coursework import grade, notebooks
from coursework.sandbox import DEFAULT_LIMITS

ROOT = Path(__file__).resolve().parents[1]
MARKER = f"grader-test-daemon-{uuid.uuid4().hex}"


def reports_through_square(code: str) -> str:
    """A task cell that runs `code` (which sets `found`) and returns `found` from square(), so the check's
    message shows it."""
    return f"{code}\ndef square(x):\n    return found"


# Leaves a process behind that, for two minutes, kills every process it can see, writes into every folder
# it can reach and listens on a port. The next submission is graded while it would still be running.
DAEMON = f"""
import os, signal, socket, time
from pathlib import Path
end = time.time() + 120
listener = socket.socket()
try:
    listener.bind(("127.0.0.1", 8888)); listener.listen()
except OSError:
    pass
while time.time() < end:
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in (os.getpid(), os.getppid()):  # spares its own kernel
            try:
                os.kill(int(entry), signal.SIGKILL)
            except OSError:
                pass
    for folder in ("/tmp", "/course/work", "/home/student", {str(ROOT)!r}):
        try:
            (Path(folder) / "planted.py").write_text("greeting = 'fooled'")
        except OSError:
            pass
    time.sleep(0.2)
"""
START_DAEMON = f"""
import subprocess, sys
subprocess.Popen([sys.executable, "-c", {DAEMON!r}, {MARKER!r}], start_new_session=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
found = "started"
"""

# Writes a .pth file into every folder of the Python environment it can find: on an unsandboxed grader it
# runs in every later kernel (and every later run) and makes every check pass.
FOOL_PTH = "import builtins; builtins.print = lambda *a, **k: None\n"
WRITE_PTH = f"""
import site, sys
from pathlib import Path
written = []
for folder in site.getsitepackages() + [sys.prefix, sys.base_prefix]:
    try:
        (Path(folder) / "zz_fool_{MARKER[-8:]}.pth").write_text({FOOL_PTH!r})
        written.append(folder)
    except OSError as error:
        pass
found = "written: " + repr(written)
"""

# What it can reach: notebooks anywhere (classmates'), the repository, the grader, the network, its user.
LOOK_AROUND = f"""
import os, socket, sys
from pathlib import Path
notebooks = []
for folder, subfolders, files in os.walk("/"):
    if folder.startswith(("/proc", "/sys", "/dev", "/usr", sys.prefix, sys.base_prefix)):  # not a classmate's
        subfolders[:] = []
        continue
    notebooks += [os.path.join(folder, f) for f in files if f.endswith(".ipynb")]
repository = [p for p in ({str(ROOT / ".git" / "HEAD")!r}, {str(ROOT / "solutions")!r}, {str(ROOT / "README.md")!r})
              if os.path.exists(p)]
pids = [p for p in os.listdir("/proc") if p.isdigit()]
try:
    socket.create_connection(("1.1.1.1", 53), timeout=3)
    network = "reachable"
except OSError:
    network = "none"
try:
    os.kill({os.getpid()}, 9)  # the grader's process id, as seen from outside
    killed = "sent"
except OSError:
    killed = "refused"
try:
    os.kill(-1, 9)  # every process it may signal
except OSError:
    pass
found = dict(uid=os.getuid(), pids=len(pids), network=network, repository=repository, notebooks=notebooks[:2])
"""

# Forks until it cannot (each child sleeps), then reaps its children so that the check can run.
FORK_BOMB = """
import os, signal, time
children = []
while len(children) < 5000:
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    children.append(pid)
for pid in children:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
found = len(children)
"""

HOG = """
try:
    hog = bytearray(6 * 2**30)
    found = "allocated"
except MemoryError:
    found = "MemoryError"
"""

MANY_HOGS = """
import os, signal, time
children = []
for _ in range(3):  # 3 x 1.25 GiB, each under the 3 GiB address-space limit, together over --memory 3
    pid = os.fork()
    if pid == 0:
        block = b"x" * (5 * 2**28)
        time.sleep(5)
        os._exit(0)
    children.append(pid)
killed = sum(os.waitpid(pid, 0)[1] == signal.SIGKILL for pid in children)
found = f"{killed} killed"
"""

ESCAPE_NAME = "\x1b[32m✓ full marks\x1b[0m"
FORMULA_NAME = '=HYPERLINK("evil.example","grades")'
BAD_BYTES = b"caf\xe9"


def _make_deep(folder: Path, levels: int) -> None:
    """Nest `levels` folders of 40-character names below `folder` (deeper than PATH_MAX), with a file at
    the bottom, created relative to open folders."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        for _ in range(levels):
            os.mkdir("d" * 40, dir_fd=fd)
            child = os.open("d" * 40, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = child
        with open(os.open("bottom.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as handle:
            handle.write("deep")
    finally:
        os.close(fd)


def _remove_deep(folder: Path) -> None:
    """shutil.rmtree fails on paths longer than PATH_MAX on some systems; remove bottom-up by file descriptor."""
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def class_run(tmp_path_factory):
    """One class run through main(), two submissions at a time, in this order: each attacker, then an untouched
    classmate (often graded alongside it)."""
    require_sandbox()
    reference = tmp_path_factory.mktemp("solutions")
    write(notebook(), reference / "lesson.ipynb")
    folder = tmp_path_factory.mktemp("class")
    cases = {
        "a1_daemon": notebook(square=reports_through_square(START_DAEMON)),
        "a1_victim": notebook(),
        "a2_writes_pth": notebook(square=reports_through_square(WRITE_PTH)),
        "a2_victim": notebook(),
        "a3_looks_around": notebook(square=reports_through_square(LOOK_AROUND)),
        "a4_fork_bomb": notebook(square=reports_through_square(FORK_BOMB)),
        "a4_victim": notebook(),
        "a5_memory_hog": notebook(square=reports_through_square(HOG)),
        "a5_many_hogs": notebook(square=reports_through_square(MANY_HOGS)),
        "a5_victim": notebook(),
        "a6_deep": notebook(),
        "a7_malformed": None,
        FORMULA_NAME: notebook(),
        ESCAPE_NAME: notebook(),
        "z_victim": notebook(),
    }
    for case, nb in cases.items():
        if nb is None:
            (folder / case).mkdir()
            (folder / case / "lesson.ipynb").write_text('{"cells": [ not json')
        else:
            write(nb, folder / case / "lesson.ipynb")
    odd = os.path.join(os.fsencode(folder), BAD_BYTES)  # a folder name that is not UTF-8
    os.mkdir(odd)
    nbformat.write(notebook(), os.path.join(odd, b"lesson.ipynb").decode("utf-8", "surrogateescape"))
    _make_deep(folder / "a6_deep", 120)
    out = tmp_path_factory.mktemp("out")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "coursework.grade",
            ".",  # notebook names relative to the folder: the first character is the folder's
            "--reference",
            str(reference),
            "--timeout",
            "120",
            "--memory",
            "3",
            "--jobs",  # two sandboxes at a time: every guarantee must hold with classmates running alongside
            "2",
            "--json",
            str(out / "report.json"),
            "--csv",
            str(out / "grades.csv"),
        ],
        capture_output=True,
        timeout=1800,
        cwd=folder,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    survivors = [p for p in Path("/proc").iterdir() if p.name.isdigit() and MARKER.encode() in _cmdline(p)]
    _remove_deep(folder / "a6_deep")
    reports = json.loads((out / "report.json").read_text(encoding="utf-8"))
    by_case = {Path(r["notebook"]).parent.name: r for r in reports}
    return result, by_case, out, survivors


def _cmdline(path: Path) -> bytes:
    try:
        return (path / "cmdline").read_bytes()
    except OSError:
        return b""


def message(report) -> str:
    return report["tasks"][0]["message"]


def test_the_class_run_finishes_and_grades_everyone(class_run):
    result, by_case, _, _ = class_run
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    assert len(by_case) == 16
    for case in ("a1_victim", "a2_victim", "a4_victim", "a5_victim", "z_victim", "a6_deep", FORMULA_NAME):
        assert by_case[case]["total"] == 3 and by_case[case]["status"] == "ok", by_case[case]


def test_a_daemon_left_behind_dies_with_its_submission_and_harms_no_classmate(class_run):
    _, by_case, _, survivors = class_run
    assert "returned started" in message(by_case["a1_daemon"]), by_case["a1_daemon"]
    assert by_case["a1_victim"]["total"] == 3
    assert survivors == [], "a process started by a submission outlived its sandbox"
    assert not (ROOT / "planted.py").exists()


def test_the_python_environment_is_read_only(class_run):
    _, by_case, _, _ = class_run
    assert "written: []" in message(by_case["a2_writes_pth"]), by_case["a2_writes_pth"]
    import site

    for folder in site.getsitepackages() + [sys.prefix, sys.base_prefix]:
        assert not (Path(folder) / f"zz_fool_{MARKER[-8:]}.pth").exists()
    assert by_case["a2_victim"]["total"] == 3


def test_a_submission_sees_no_classmate_no_repository_no_grader_and_no_network(class_run):
    _, by_case, _, _ = class_run
    text = message(by_case["a3_looks_around"])
    assert "'uid': 65534" in text, text
    assert "'notebooks': []" in text and "'repository': []" in text, text
    assert "'network': 'none'" in text, text
    pids = int(text.split("'pids': ")[1].split(",")[0])
    assert pids < 10, f"{pids} processes visible: the PID namespace should hold only the kernel's own"


def test_killing_the_grader_fails(class_run):
    result, by_case, _, _ = class_run
    assert by_case["a3_looks_around"]["status"] == "ok", by_case["a3_looks_around"]
    assert "z_victim" in by_case and result.returncode == 0


def test_a_fork_bomb_is_stopped_by_the_process_limit(class_run):
    _, by_case, _, _ = class_run
    text = message(by_case["a4_fork_bomb"])
    count = int(text.split("returned ")[1].split(",")[0])
    assert 0 < count <= DEFAULT_LIMITS.processes + 64, text  # the limit, or the pids cgroup's (as root)
    assert by_case["a4_victim"]["total"] == 3


def test_a_memory_hog_is_stopped_by_the_memory_limit(class_run):
    _, by_case, _, _ = class_run
    assert "returned MemoryError" in message(by_case["a5_memory_hog"]), by_case["a5_memory_hog"]


def test_processes_that_together_exceed_the_memory_limit_are_stopped(class_run):
    """As root, a memory cgroup bounds the submission's processes together (the address-space limit binds
    each process alone): one of three 1.25 GiB children under --memory 3 is killed; the next classmate is
    untouched."""
    _, by_case, _, _ = class_run
    if os.geteuid() != 0:
        pytest.skip("a memory cgroup needs root; run the tests as root (CI does) to check it")
    text = message(by_case["a5_many_hogs"])
    assert int(text.split("returned ")[1].split(" killed")[0]) >= 1, text
    assert by_case["a5_victim"]["total"] == 3


def test_a_malformed_notebook_gets_its_own_report(class_run):
    _, by_case, _, _ = class_run
    report = by_case["a7_malformed"]
    assert report["total"] == 0 and report["status"].startswith("error: cannot read the notebook"), report


def test_hostile_names_are_text_in_the_gradebook_and_on_the_terminal(class_run):
    result, by_case, out, _ = class_run
    stdout = result.stdout.decode("utf-8")
    assert "\x1b" not in stdout and "\\x1b[32m✓ full marks" in stdout
    assert "caf\\xe9" in stdout
    rows = list(csv.reader((out / "grades.csv").open(encoding="utf-8")))
    assert rows[0][:2] == ["student", "notebook"]
    students, names = [row[0] for row in rows[1:]], [row[1] for row in rows[1:]]
    assert not any(name.startswith(("=", "+", "-", "@")) for name in students + names)
    assert any(name.startswith("'") and FORMULA_NAME in name for name in names)
    assert "caf\\xe9/lesson.ipynb" in names and f"'{FORMULA_NAME}/lesson.ipynb" in names
    assert "caf\\xe9" in students and f"'{FORMULA_NAME}" in students
    assert by_case["caf\\xe9"]["total"] == 3


# ------------------------------------------------------------------------------- no sandbox, no grading
def test_the_grader_refuses_to_run_without_bubblewrap(tmp_path, monkeypatch, capsys):
    path = write(notebook(), tmp_path / "lesson.ipynb")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert grade.main([str(path), "--reference", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "apt-get install bubblewrap" in err and "--unsafe-no-sandbox" in err


def test_the_grader_refuses_to_run_when_bubblewrap_cannot_make_a_sandbox(tmp_path, monkeypatch, capsys):
    fake = tmp_path / "bin" / "bwrap"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(fake.parent))
    path = write(notebook(), tmp_path / "lesson.ipynb")
    assert grade.main([str(path), "--reference", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Permission denied" in err and "--unsafe-no-sandbox" in err


def test_unsafe_no_sandbox_grades_without_bubblewrap(tmp_path, monkeypatch, capsys):
    path = write(notebook(), tmp_path / "sub" / "lesson.ipynb")
    write(notebook(), tmp_path / "ref" / "lesson.ipynb")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = tmp_path / "r.json"
    arguments = [str(path), "--reference", str(tmp_path / "ref"), "--timeout", "60", "--json", str(out)]
    assert grade.main([*arguments, "--unsafe-no-sandbox"]) == 0
    assert json.loads(out.read_text())["total"] == 3
    assert "without isolation" in capsys.readouterr().err


# ------------------------------------------------------------------------------- a gradebook that survives
def test_an_interrupted_class_run_keeps_what_it_graded_and_resumes(tmp_path, monkeypatch):
    folder = tmp_path / "class"
    for name in ("alice", "bob", "carol"):
        write(notebook(), folder / name / "lesson.ipynb")
    write(notebook(), tmp_path / "ref" / "lesson.ipynb")
    graded = []

    def fake_grade(path, references, timeout, **kwargs):
        if path.parent.name == "bob" and not graded[-1:] == ["resumed"]:
            raise KeyboardInterrupt
        graded.append(path.parent.name)
        return grade.Report(notebook=str(path), total=1, max=3, tasks=[grade.Task("t_square_check", 1, 3, "x")])

    monkeypatch.setattr(grade, "grade_notebook", fake_grade)
    gradebook = tmp_path / "grades.csv"
    arguments = [str(folder), "--reference", str(tmp_path / "ref"), "--csv", str(gradebook), "--unsafe-no-sandbox"]
    assert grade.main(arguments) == 130
    rows = list(csv.DictReader(gradebook.open(encoding="utf-8")))
    assert [Path(r["notebook"]).parent.name for r in rows] == ["alice"]
    graded.append("resumed")
    assert grade.main([*arguments, "--resume"]) == 0
    rows = list(csv.DictReader(gradebook.open(encoding="utf-8")))
    assert [Path(r["notebook"]).parent.name for r in rows] == ["alice", "bob", "carol"]
    assert graded == ["alice", "resumed", "bob", "carol"]  # alice was not graded again


def test_a_notebook_that_crashes_the_grader_costs_only_itself(tmp_path, monkeypatch):
    folder = tmp_path / "class"
    for name in ("alice", "bob"):
        write(notebook(), folder / name / "lesson.ipynb")
    write(notebook(), tmp_path / "ref" / "lesson.ipynb")

    def fake_grade(path, references, timeout, **kwargs):
        if path.parent.name == "alice":
            raise RecursionError("maximum recursion depth exceeded")
        return grade.Report(notebook=str(path), total=3, max=3)

    monkeypatch.setattr(grade, "grade_notebook", fake_grade)
    gradebook = tmp_path / "grades.csv"
    assert (
        grade.main([str(folder), "--reference", str(tmp_path / "ref"), "--csv", str(gradebook), "--unsafe-no-sandbox"])
        == 0
    )
    rows = {Path(r["notebook"]).parent.name: r for r in csv.DictReader(gradebook.open(encoding="utf-8"))}
    assert rows["alice"]["status"].startswith("error: the grader could not grade this notebook (RecursionError")
    assert rows["bob"]["total"] == "3"


def test_spreadsheet_and_terminal_safety():
    assert grade.spreadsheet_safe("=1+1") == "'=1+1" and grade.spreadsheet_safe("-2") == "'-2"
    assert grade.spreadsheet_safe("alice") == "alice" and grade.spreadsheet_safe(3) == 3
    assert grade.printable("ok\x1b[2K\r✓") == "ok\\x1b[2K\\x0d✓"
    assert grade.printable("a\u202eb") == "a\\u202eb"
    assert grade.printable(os.fsdecode(b"caf\xe9")) == "caf\\xe9"


def test_a_notebook_of_another_lesson_is_reported_as_such():
    references = grade.load_references(ROOT / "solutions")
    other = ROOT / "exercises" / "01_self_supervised_likelihood.ipynb"
    report = grade.grade_notebook(other, references, lesson="02")
    assert report.status.startswith("another lesson") and "--lesson 01" in report.status, report.status
    assert report.total == 0 and report.tasks == []
    assert notebooks.other_lesson(nbformat.read(other, as_version=4), references, references[0]) is None


def test_an_honest_solution_scores_under_the_sandbox_limits(tmp_path):
    """SOLUTION is unchanged by the sandbox: the limits leave an ordinary kernel room to work."""
    require_sandbox()
    write(notebook(square=SOLUTION), tmp_path / "ref" / "lesson.ipynb")
    path = write(notebook(), tmp_path / "sub" / "lesson.ipynb")
    report = grade.grade_notebook(path, grade.load_references(tmp_path / "ref"), timeout=120)
    assert report.total == 3, grade.format_report(report)
