"""`make lab`, the Quickstart's first command, opens JupyterLab on the whole course: the server's root is the
repository (so exercises/, solutions/ and course_lib/ are in the file browser, as lesson 00 says) and lesson
00 is the notebook it opens. The test runs the target's own command line, as `make -n lab` prints it, on a
real Jupyter server."""

import json
import os
import shlex
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def lab_command() -> list[str]:
    """The `jupyter lab ...` words of `make lab`'s recipe (environment assignments dropped)."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed: install it (apt-get install make) to test `make lab`")
    printed = subprocess.run([make, "-n", "-s", "lab"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    lines = [line for line in printed.splitlines() if " lab" in line and "jupyter" in line]
    assert len(lines) == 1, f"`make -n lab` should print one `jupyter lab` command, printed:\n{printed}"
    words = shlex.split(lines[0])
    while words and "=" in words[0] and not words[0].startswith("-"):
        words.pop(0)
    return words


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, deadline: float):
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.load(response)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_make_lab_roots_the_server_at_the_repository_and_opens_lesson_00(tmp_path):
    command = lab_command()
    program = ROOT / command[0] if not Path(command[0]).is_absolute() else Path(command[0])
    if not program.exists():
        pytest.skip(f"{command[0]} is missing: run `make setup` first")
    port, token = free_port(), "make-lab-test"
    extra = ["--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}"]
    if os.geteuid() == 0:
        extra.append("--allow-root")
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), HOME=str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    log = open(tmp_path / "lab.log", "w")
    server = subprocess.Popen(
        [str(program), *command[1:], *extra], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        listing = get_json(f"http://127.0.0.1:{port}/api/contents?token={token}", time.monotonic() + 120)
        names = {item["name"] for item in listing["content"]}
        assert {"notebooks", "exercises", "solutions", "course_lib"} <= names, (
            f"`make lab` serves {sorted(names)}: its root must be the repository, not a subfolder"
        )
        opened = list((tmp_path / "runtime").glob("jpserver-file-to-run-*-open.html"))
        assert opened, "`make lab` should open a notebook in front"
        assert "/lab/tree/notebooks/00_start_here.ipynb" in opened[0].read_text(), "lesson 00 should open first"
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
