"""A rehearsal of the course in a real JupyterHub classroom (`make hub-rehearsal`; needs root, Node and npm).

    python -m tools.hub_rehearsal                          # three students, lesson 00 in full (fast mode)
    python -m tools.hub_rehearsal --students 2 --lesson-cells 3 --json timing.json

What it does, on 127.0.0.1, and undoes afterwards (also on failure or Ctrl-C):

1. Installs the hub's proxy, `configurable-http-proxy`, from npm into .hub/ (once; kept for later runs) and the
   course as a hub image has it (`tools/classroom_layout.py`: a wheel installed into a venv every user can read,
   where `jupyterhub-singleuser` runs).
2. Adds the students (Unix users `pxc<random>N`, homes 0700) and copies notebooks/ and exercises/ into each
   home, owned by the student, as nbgitpuller would.
3. Starts JupyterHub (dummy authenticator, the default local-process spawner: each student's server runs as
   that student, with COURSE_FAST=1) and, through its REST API with a service token, every student's server.
4. Runs the lesson (`--lesson-notebook`, default lesson 00) in every student's own server at the same time:
   a kernel per student started through the proxy (/user/NAME/api/sessions), each code cell sent over the
   kernel's websocket; every cell must finish without error.
5. Checks isolation: from the first student's kernel, another student's home cannot be listed, read or written,
   nor the installed package; nothing a student ran wrote outside their own home.
6. Each student hands in exercise 01 through their server's contents API (full marks, partial, empty, in turn);
   the instructor collects them into submissions/<student>/ and grades them with `pixelcnn-grade` (bubblewrap
   sandbox); full must score the maximum, partial exactly the points of its solved tasks, empty 0.
7. Stops the servers, the hub and the proxy, checks no process of a student is left (`pgrep -u`) and deletes
   the students with their homes.

Prints a timing summary; `--json FILE` writes it with the grades. Exit status 0 when every check passed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import websocket  # websocket-client, a dependency of jupyter_server

from tools.classroom_layout import (
    JUNK,
    ROOT,
    add_student,
    install_course,
    missing_piece,
    remove_install,
    remove_student,
    snapshot,
    uid_of,
)

HUB_DIR = ROOT / ".hub"  # the proxy's npm install (ignored by git), reused between runs
PROXY_PACKAGE = "configurable-http-proxy@4"
EXERCISE = "exercises/01_self_supervised_likelihood.ipynb"
SOLUTION = ROOT / "solutions/01_self_supervised_likelihood.ipynb"
PARTIAL_STUBS = ("t02_bpd", "t04_eval")  # the partial hand-in leaves these two tasks as the exercise has them
KINDS = ("full", "partial", "empty")
COURSE_ENV = {
    "COURSE_FAST": "1",
    "TQDM_DISABLE": "1",
    "MPLBACKEND": "Agg",
    "OMP_WAIT_POLICY": "PASSIVE",  # three kernels on a few cores: idle OpenMP threads yield
    "LANG": "C.UTF-8",
}


class RehearsalFailed(AssertionError):
    """A check of the rehearsal did not hold."""


@dataclass
class Student:
    name: str
    home: Path
    kind: str  # what they hand in: full, partial or empty
    lesson_seconds: float = 0.0
    grade: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------- set-up


def hub_missing_piece():
    """Why the rehearsal cannot run here (None where it can)."""
    why = missing_piece()
    if why:
        return why
    for tool in ("node", "npm", "bwrap", "pgrep"):
        if not shutil.which(tool):
            return f"needs `{tool}` on PATH"
    try:
        import jupyterhub  # noqa: F401
    except ImportError:
        return "needs JupyterHub in this environment: pip install -e '.[hub]'"
    return None


def ensure_proxy():
    """The `configurable-http-proxy` executable, installed from npm into .hub/ unless already there."""
    executable = HUB_DIR / "node_modules/.bin/configurable-http-proxy"
    if not executable.exists():
        HUB_DIR.mkdir(exist_ok=True)
        cmd = ["npm", "install", "--prefix", str(HUB_DIR), "--no-audit", "--no-fund", "--loglevel=error"]
        out = subprocess.run([*cmd, PROXY_PACKAGE], capture_output=True, text=True)
        if out.returncode != 0:
            raise RehearsalFailed(f"npm install {PROXY_PACKAGE} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return executable


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def add_singleuser_launcher(venv):
    """`jupyterhub-singleuser` in the students' venv, as pip writes the console script of the `hub` extra."""
    launcher = Path(venv) / "bin/jupyterhub-singleuser"
    launcher.write_text(
        f"#!{venv}/bin/python\nimport sys\nfrom jupyterhub.singleuser import main\n\nsys.exit(main())\n"
    )
    launcher.chmod(0o755)
    return launcher


def add_students(students, count, homes):
    """Append `count` students with random names to `students`, each with a private home holding a copy of the
    course (appended before useradd, so that a failure half way still removes every account)."""
    suffix = secrets.token_hex(3)
    for i in range(count):
        student = Student(f"pxc{suffix}{i}", Path(homes) / f"pxc{suffix}{i}", KINDS[i % len(KINDS)])
        students.append(student)
        add_student(student.name, student.home)
        copy_course(student)


def copy_course(student):
    """notebooks/ and exercises/ into the student's home, owned by the student (what nbgitpuller leaves)."""
    for folder in ("notebooks", "exercises"):
        shutil.copytree(ROOT / folder, student.home / folder, ignore=JUNK)
    (student.home / "tmp").mkdir()
    for path in [student.home, *student.home.rglob("*")]:
        shutil.chown(path, student.name, student.name)


# ------------------------------------------------------------------------------------------------------ hub


@dataclass
class Hub:
    """A JupyterHub on 127.0.0.1 whose state (database, cookie secret, config, log) lives in `state`."""

    state: Path
    venv: Path
    proxy: Path
    token: str = field(default_factory=lambda: secrets.token_hex(32))
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def write_config(self, students):
        """jupyterhub_config.py: dummy authenticator, local-process spawner, a service token for the rehearsal."""
        env = dict(COURSE_ENV, PATH=f"{self.venv}/bin:/usr/bin:/bin")
        config = f"""import pwd

c.JupyterHub.bind_url = {self.url!r}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {free_port()}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{free_port()}"
c.ConfigurableHTTPProxy.command = [{str(self.proxy)!r}]
c.ConfigurableHTTPProxy.pid_file = {str(self.state / "proxy.pid")!r}
c.JupyterHub.db_url = "sqlite:///{self.state}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = {str(self.state / "cookie_secret")!r}
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {secrets.token_hex(16)!r}
c.Authenticator.allowed_users = {set(s.name for s in students)!r}
c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = [{str(self.venv / "bin/jupyterhub-singleuser")!r}]
c.Spawner.environment = {env!r}
c.Spawner.environment["TMPDIR"] = lambda spawner: pwd.getpwnam(spawner.user.name).pw_dir + "/tmp"
c.Spawner.start_timeout = 300
c.Spawner.http_timeout = 300
c.JupyterHub.services = [{{"name": "rehearsal", "api_token": {self.token!r}}}]
c.JupyterHub.load_roles = [
    {{"name": "rehearsal", "services": ["rehearsal"], "scopes": ["admin:users", "admin:servers", "access:servers"]}}
]
c.JupyterHub.log_level = "INFO"
"""
        path = self.state / "jupyterhub_config.py"
        path.write_text(config)
        return path

    def start(self, students, timeout=120):
        """Start the hub (in a session of its own, so that Ctrl-C reaches only this script) and wait for its API."""
        config = self.write_config(students)
        log = (self.state / "hub.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(config)],
            cwd=self.state,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RehearsalFailed(f"the hub exited ({self.process.returncode}):\n{self.log_tail()}")
            try:
                self.api("GET", "/hub/api/")
                return
            except (OSError, RehearsalFailed):  # not listening yet, or the proxy without its route to the hub
                time.sleep(0.5)
        raise RehearsalFailed(f"the hub did not answer within {timeout} s:\n{self.log_tail()}")

    def log_tail(self, chars=4000):
        path = self.state / "hub.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def api(self, method, path, body=None, timeout=60):
        """A request through the proxy with the service token; the decoded JSON answer (None when empty)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"token {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer = response.read()
        except urllib.error.HTTPError as error:
            raise RehearsalFailed(f"{method} {path}: {error.code} {error.read()[:1000]!r}") from None
        return json.loads(answer) if answer else None

    def start_servers(self, students, timeout=300):
        """Ask for every student's server at once (the hub made the users from allowed_users), wait until all
        are ready."""
        for s in students:
            self.api("POST", f"/hub/api/users/{s.name}/server")
        waiting, deadline = {s.name for s in students}, time.monotonic() + timeout
        while waiting and time.monotonic() < deadline:
            for name in sorted(waiting):
                server = self.api("GET", f"/hub/api/users/{name}")["servers"].get("", {})
                if server.get("ready"):
                    waiting.discard(name)
            time.sleep(0.5)
        if waiting:
            raise RehearsalFailed(f"servers not ready after {timeout} s: {sorted(waiting)}\n{self.log_tail()}")

    def stop(self, students):
        """Stop every student's server through the API, then the hub (which stops its proxy); kill what remains."""
        for s in students:
            try:
                self.api("DELETE", f"/hub/api/users/{s.name}/server", timeout=30)
            except (OSError, RehearsalFailed):
                pass
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.stop_leftover_proxy()

    def stop_leftover_proxy(self):
        """Kill the proxy if the hub left it running; whether it had to."""
        pid_file = self.state / "proxy.pid"
        try:
            pid = int(pid_file.read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return False
        os.killpg(pid, signal.SIGKILL)
        return True


# --------------------------------------------------------------------------------------------------- kernels


class Kernel:
    """A kernel in a student's own server, driven over its websocket with the Jupyter messaging protocol."""

    def __init__(self, hub, user, notebook_path):
        self.hub, self.user = hub, user
        model = hub.api(
            "POST",
            f"/user/{user}/api/sessions",
            {"path": notebook_path, "type": "notebook", "name": "", "kernel": {"name": "python3"}},
        )
        self.session_id, self.kernel_id = model["id"], model["kernel"]["id"]
        ws_url = hub.url.replace("http", "ws", 1) + f"/user/{user}/api/kernels/{self.kernel_id}/channels"
        self.ws = websocket.create_connection(ws_url, header=[f"Authorization: token {hub.token}"], timeout=600)
        self.client_session = uuid.uuid4().hex

    def execute(self, code):
        """Run `code`; (status, text printed, error) once the kernel is idle again."""
        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "msg_type": "execute_request", "session": self.client_session}
        header.update(username="instructor", version="5.3", date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        content = {"code": code, "silent": False, "store_history": True, "user_expressions": {}}
        content.update(allow_stdin=False, stop_on_error=True)
        message = {"header": header, "parent_header": {}, "metadata": {}, "content": content, "channel": "shell"}
        self.ws.send(json.dumps(message))
        status, text, error, idle = None, [], None, False
        while status is None or not idle:
            raw = self.ws.recv()
            if isinstance(raw, bytes):  # a message with binary buffers (widgets): not needed here
                continue
            reply = json.loads(raw)
            if reply.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = reply["header"]["msg_type"]
            if kind == "execute_reply":
                status = reply["content"]["status"]
            elif kind == "stream":
                text.append(reply["content"]["text"])
            elif kind == "error":
                error = f"{reply['content']['ename']}: {reply['content']['evalue']}"
            elif kind == "status" and reply["content"]["execution_state"] == "idle":
                idle = True
        return status, "".join(text), error

    def close(self):
        """Close the websocket and shut the kernel down (deleting its session)."""
        try:
            self.ws.close()
        finally:
            self.hub.api("DELETE", f"/user/{self.user}/api/sessions/{self.session_id}")


@contextmanager
def kernel(hub, user, notebook_path):
    """A Kernel for `user`, closed afterwards."""
    k = Kernel(hub, user, notebook_path)
    try:
        yield k
    finally:
        k.close()


def code_cells(path, limit=None):
    """The sources of the notebook's code cells, the first `limit` of them when given."""
    cells = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    return cells[:limit] if limit else cells


def run_lesson(hub, student, notebook, limit=None):
    """Execute the lesson's code cells in the student's own server, in order; fail at the first error."""
    start = time.perf_counter()
    with kernel(hub, student.name, notebook) as k:
        for number, source in enumerate(code_cells(student.home / notebook, limit), 1):
            status, text, error = k.execute(source)
            if status != "ok":
                raise RehearsalFailed(f"{student.name}: {notebook} code cell {number} failed: {error}\n{text[-2000:]}")
    student.lesson_seconds = time.perf_counter() - start


def run_lessons_concurrently(hub, students, notebook, limit=None):
    """Every student runs the lesson at the same time, each in their own server."""
    pool = concurrent.futures.ThreadPoolExecutor(len(students))
    try:
        for future in [pool.submit(run_lesson, hub, s, notebook, limit) for s in students]:
            future.result()
    finally:  # on a failure or Ctrl-C, do not wait: stopping the servers ends the other threads
        pool.shutdown(wait=False, cancel_futures=True)


# ------------------------------------------------------------------------------------------------- isolation

PROBE = """
import json, os, sys
import course_lib

def attempt(action):
    try:
        action()
        return "allowed"
    except PermissionError:
        return "denied"

home, package = {home!r}, {package!r}
print(json.dumps({{
    "python": sys.executable,
    "course_lib": course_lib.__file__,
    "list the home": attempt(lambda: os.listdir(home)),
    "read a notebook": attempt(lambda: open(home + "/{exercise}").read()),
    "write a file": attempt(lambda: open(home + "/intruder.txt", "w").write("x")),
    "write into the installed package": attempt(lambda: open(package + "/intruder.py", "w").write("x")),
}}))
"""


def check_isolation(hub, student, other, install):
    """From `student`'s kernel: the course is the installed wheel, run by the venv's Python; `other`'s home and
    the installed package are out of reach."""
    code = PROBE.format(home=str(other.home), package=str(install.site), exercise=EXERCISE)
    with kernel(hub, student.name, "probe.ipynb") as k:
        status, text, error = k.execute(code)
    if status != "ok":
        raise RehearsalFailed(f"the isolation probe failed to run: {error}")
    found = json.loads(text.strip().splitlines()[-1])
    if not (
        Path(found.pop("course_lib")).is_relative_to(install.site) and found.pop("python").startswith(str(install.venv))
    ):
        raise RehearsalFailed(f"{student.name}'s kernel does not run the installed course: {text}")
    allowed = [what for what, verdict in found.items() if verdict != "denied"]
    if allowed or (other.home / "intruder.txt").exists() or (install.site / "intruder.py").exists():
        raise RehearsalFailed(f"{student.name} could {allowed} in {other.name}'s home or the installed package")


def files_owned_outside_home(student, searched):
    """Files owned by `student` under the `searched` folders but outside the student's home."""
    out = subprocess.run(
        ["find", *map(str, searched), "-xdev", "-user", student.name], capture_output=True, text=True
    ).stdout
    return sorted(p for p in out.split() if not Path(p).is_relative_to(student.home))


# ---------------------------------------------------------------------------------------- hand-in and grading


def partial_submission():
    """Exercise 01 with some tasks solved: the solution with the PARTIAL_STUBS task cells put back as the
    exercise has them (the way tests/test_grader.py builds a submission with a stubbed task)."""
    solution = nbformat.read(SOLUTION, as_version=4)
    exercise = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nbformat.read(ROOT / EXERCISE, 4).cells}
    for cell in solution.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") in PARTIAL_STUBS:
            cell.source = exercise[cell.metadata["nbgrader"]["grade_id"]].source
    return solution


def submission(kind):
    """The notebook a student of `kind` hands in."""
    if kind == "full":
        return nbformat.read(SOLUTION, as_version=4)
    if kind == "partial":
        return partial_submission()
    return nbformat.read(ROOT / EXERCISE, as_version=4)


def hand_in(hub, student):
    """The student saves their exercise 01 through their server's contents API (into their home)."""
    body = {"type": "notebook", "format": "json", "content": submission(student.kind)}
    hub.api("PUT", f"/user/{student.name}/api/contents/{EXERCISE}", body)


def collect(students, folder):
    """The instructor copies each student's exercise 01 into `folder`/<student>/ (in a folder only root enters)."""
    for s in students:
        (folder / s.name).mkdir(parents=True)
        shutil.copy(s.home / EXERCISE, folder / s.name / Path(EXERCISE).name)


def grade(students, folder, report):
    """Grade `folder` with the real `pixelcnn-grade` (sandboxed, fast mode); each student's total and max."""
    grader = Path(sys.executable).with_name("pixelcnn-grade")
    cmd = [grader] if grader.exists() else [sys.executable, "-m", "coursework.grade"]
    cmd += [folder, "--lesson", "01", "--json", report, "--csv", folder.parent / "grades.csv"]
    env = dict(os.environ, **COURSE_ENV)
    out = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, env=env, cwd=folder.parent)
    if out.returncode != 0 or not Path(report).exists():
        raise RehearsalFailed(f"pixelcnn-grade failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    by_student = {Path(r["notebook"]).parent.name: r for r in json.loads(Path(report).read_text())}
    for s in students:
        s.grade = {k: by_student[s.name][k] for k in ("total", "max", "status")}


def expected_total(kind, maximum):
    """What a hand-in of `kind` must score: all points, those of the tasks left solved, or none."""
    if kind == "full":
        return maximum
    if kind == "empty":
        return 0
    cells = nbformat.read(SOLUTION, as_version=4).cells
    lost = sum(
        c.metadata["nbgrader"].get("points", 0)
        for c in cells
        if c.metadata.get("nbgrader", {}).get("grade_id") in {f"{t}_check" for t in PARTIAL_STUBS}
    )
    return maximum - lost


def check_grades(students):
    """Full scores the maximum, partial strictly between 0 and the maximum (its solved tasks' points), empty 0."""
    for s in students:
        total, maximum = s.grade["total"], s.grade["max"]
        right = maximum > 0 and total == expected_total(s.kind, maximum)
        if not right or (s.kind == "partial" and not 0 < total < maximum):
            raise RehearsalFailed(f"{s.name} handed in {s.kind} and got {total}/{maximum}: {s.grade['status']}")


# ------------------------------------------------------------------------------------------------- tear-down


def leftover_processes(students):
    """{student: [pid, ...]} of every process still running as a student (`pgrep -u`)."""
    found = {}
    for s in students:
        if uid_of(s.name) is None:
            continue
        pids = subprocess.run(["pgrep", "-u", s.name], capture_output=True, text=True).stdout.split()
        if pids:
            found[s.name] = pids
    return found


def tear_down(hub, students, grace=20):
    """Stop the hub and everything it started; remove the students. Problems found on the way, as text."""
    problems = []
    if hub is not None and hub.stop(students):
        problems.append("the hub left its proxy running")
    deadline = time.monotonic() + grace  # servers and kernels exit in their own time after SIGTERM
    while leftover_processes(students) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = leftover_processes(students)
    if left:
        problems.append(f"processes of students left running (killed now): {left}")
    for s in students:
        remove_student(s.name, s.home)
    if leftover_processes(students) or any(uid_of(s.name) is not None for s in students):
        problems.append("a student account or process could not be removed")
    return problems


# ------------------------------------------------------------------------------------------------------ main


@contextmanager
def timed(timings, name):
    """Record the wall time of the block in timings[name] (seconds)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(time.perf_counter() - start, 1)


def rehearse(n_students, lesson, lesson_cells, timings):
    """The whole rehearsal; returns the students (with their lesson times and grades). Cleans up in any case."""
    base = Path(tempfile.mkdtemp(prefix="pixelcnn-hub-rehearsal-", dir="/tmp"))
    base.chmod(0o755)  # the students' venv and homes live here; the hub's state and the grading are root's alone
    install, hub, students, failure = None, None, [], None
    try:
        with timed(timings, "proxy_install"):
            proxy = ensure_proxy()
        with timed(timings, "course_install"):
            install = install_course(base)
            add_singleuser_launcher(install.venv)
        with timed(timings, "students_added"):
            (base / "home").mkdir()
            add_students(students, n_students, base / "home")
        (base / "hub").mkdir(mode=0o700)
        hub = Hub(base / "hub", install.venv, proxy)
        with timed(timings, "hub_start"):
            hub.start(students)
        with timed(timings, "servers_start"):
            hub.start_servers(students)
        package_before = snapshot(install.venv)
        with timed(timings, "lesson_concurrent"):
            run_lessons_concurrently(hub, students, lesson, lesson_cells)
        if len(students) > 1:
            check_isolation(hub, students[0], students[1], install)
        if snapshot(install.venv) != package_before:
            raise RehearsalFailed("a student's run changed the installed package")
        for s in students:
            outside = files_owned_outside_home(s, [base, "/tmp", "/var/tmp", "/dev/shm"])
            if outside:
                raise RehearsalFailed(f"{s.name} wrote outside their home: {outside[:10]}")
        with timed(timings, "hand_in"):
            for s in students:
                hand_in(hub, s)
            (base / "instructor").mkdir(mode=0o700)
            collect(students, base / "instructor/submissions")
        with timed(timings, "grading"):
            grade(students, base / "instructor/submissions", base / "instructor/report.json")
        check_grades(students)
        return students
    except BaseException as error:
        failure = error
        raise
    finally:
        with timed(timings, "shutdown"):
            problems = tear_down(hub, students)
        if failure is not None and hub is not None and not isinstance(failure, KeyboardInterrupt):
            print(f"hub log (tail):\n{hub.log_tail(3000)}", file=sys.stderr)
        remove_install(base, install.mounted if install else None)
        if problems and failure is None:
            raise RehearsalFailed("; ".join(problems))
        for problem in problems:
            print(f"also: {problem}", file=sys.stderr)


def summary(timings, students, args):
    """The timing summary and grades, as printed and as written to --json."""
    return {
        "students": len(students),
        "lesson": args.lesson_notebook,
        "lesson_cells": args.lesson_cells or "all",
        "seconds": timings,
        "lesson_seconds_per_student": {s.name: round(s.lesson_seconds, 1) for s in students},
        "grades": {s.name: dict(kind=s.kind, **s.grade) for s in students},
        "cpus": os.cpu_count(),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=3, help="how many students (default 3)")
    parser.add_argument("--json", type=Path, help="write the timing summary and grades to this file")
    parser.add_argument(
        "--lesson-notebook", default="notebooks/00_start_here.ipynb", help="the lesson every student runs"
    )
    parser.add_argument("--lesson-cells", type=int, help="run only the lesson's first N code cells")
    args = parser.parse_args(argv)
    why = hub_missing_piece()
    if why:
        print(f"the hub rehearsal {why}", file=sys.stderr)
        return 2
    for signum in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C or `kill` (also when started in the background)
        signal.signal(signum, signal.default_int_handler)  # raise KeyboardInterrupt: the finally blocks clean up
    timings = {}
    start = time.perf_counter()
    try:
        students = rehearse(args.students, args.lesson_notebook, args.lesson_cells, timings)
    except RehearsalFailed as error:
        print(f"REHEARSAL FAILED: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the hub, the servers and the students are gone", file=sys.stderr)
        return 130
    timings["total"] = round(time.perf_counter() - start, 1)
    result = summary(timings, students, args)
    print(f"hub rehearsal, {len(students)} students, {args.lesson_notebook} (fast mode):")
    for name in ("hub_start", "servers_start", "lesson_concurrent", "hand_in", "grading", "shutdown", "total"):
        print(f"  {name.replace('_', ' '):<18} {timings[name]:>6.1f} s")
    for s in students:
        print(f"  {s.name}: lesson {s.lesson_seconds:.1f} s, handed in {s.kind}: {s.grade['total']}/{s.grade['max']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
