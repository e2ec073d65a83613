"""What one student costs: each lesson notebook executed in full mode (what a student runs, COURSE_FAST unset)
inside a real CPU quota, with the peak memory, CPU time and wall time of its kernel. Prints a table and a
sizing summary (students per server), writes a JSON.

    sudo .venv/bin/python -m benchmarks.classroom                    # all seven lessons, a 1-core quota
    sudo .venv/bin/python -m benchmarks.classroom --lessons 00 03 --cpus 0.5
    .venv/bin/python -m benchmarks.classroom --table                 # the README's table, from the JSON

Needs root and writable cgroup v1 `cpu`, `cpuacct` and `memory` controllers (e.g. /sys/fs/cgroup/cpu).
Each lesson's notebook is copied, with the `results/` folder beside it, into a temporary folder (nothing is
written into the repository) and executed there by a small Python runner (nbclient, as `jupyter nbconvert
--execute` does) in fresh cgroups: a CPU quota of --cpus cores (period 100 ms), a `cpuacct` group and a
`memory` group. The runner joins the groups before it starts Python, so the kernel it starts, and every
process the kernel starts (lesson 03's torchrun workers, torch.compile's compiler), are counted too.

Measured per lesson:
- peak memory: the memory group's `memory.max_usage_in_bytes` (what a container memory limit counts: the
  processes' memory plus the page cache they filled), and the peak of its resident memory (`memory.stat`
  rss + mapped_file, sampled every 0.2 s). Both include the runner, which stands in for the Jupyter server
  a student's kernel talks to; the `(empty notebook)` row measures a one-cell notebook: the runner and a
  bare kernel, the floor under every lesson;
- CPU seconds: the cpuacct group's `cpuacct.usage` (runner and kernel with its children);
- wall seconds: executing the notebook, kernel start and shutdown included;
- the peak of each code cell (the runner reads the group's peak after each cell and resets it), to find
  the cell behind a lesson's peak, and each cell's wall time;
- the kernel's own peak resident memory (`ru_maxrss` of the runner's children), its torch thread count and
  the quota it saw (`course_lib.device.cpu_quota()`, read by an extra cell appended to the copy), and the
  throttling the quota caused (`cpu.stat`);
- the 1-minute load average before and after each lesson and its mean and maximum during it (wall time
  depends on the load; peak memory and CPU time barely do).
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from benchmarks.common import RESULTS, remove_group, table

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
PERIOD_US = 100_000
CONTROLLERS = ("cpu", "cpuacct", "memory")
MIB = 2**20
EMPTY = "(empty notebook)"

# appended to each copy: what the kernel saw at the end of the lesson (torch is not imported if the
# lesson did not import it, so the empty notebook stays a bare kernel)
PROBE = """
import json as _json, os as _os, sys as _sys
_torch = _sys.modules.get("torch")
_device = _sys.modules.get("course_lib.device")
print("CLASSROOM-PROBE " + _json.dumps(dict(
    pid=_os.getpid(),
    torch_threads=_torch.get_num_threads() if _torch else None,
    torch_version=_torch.__version__ if _torch else None,
    quota=_device.cpu_quota() if _device else None,
    cgroups=open("/proc/self/cgroup").read().split(),
    kernel_status_mib={
        k: int(v.split()[0]) / 1024
        for k, _, v in (line.partition(":") for line in open("/proc/self/status"))
        if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem")
    },
)))
"""

# the runner: executes one notebook in a fresh kernel from the notebook's folder, prints what it measured
RUNNER = """
import json, resource, sys, time
from pathlib import Path
import nbformat
from nbclient import NotebookClient
path, timeout, probe, memory = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
notebook = nbformat.read(path, as_version=4)
notebook.cells.append(nbformat.v4.new_code_cell(probe))
notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
cells, last = [], [time.perf_counter()]
def cell_done(cell, cell_index, **_):
    # the memory group's peak since the previous cell ended, then reset it to the present usage
    peak = int((memory / "memory.max_usage_in_bytes").read_text())
    (memory / "memory.max_usage_in_bytes").write_text("0")
    now = time.perf_counter()
    first = next((line for line in cell.source.splitlines() if line.strip()), "")
    cells.append(dict(index=cell_index, line=first[:80], peak_mib=peak / 2**20, wall_s=now - last[0]))
    last[0] = now
start = time.perf_counter()
NotebookClient(
    notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}},
    on_cell_executed=cell_done, allow_errors=True,  # a student sees the error and runs on
).execute()
wall = time.perf_counter() - start
errors = [
    dict(index=i, ename=o["ename"], evalue=o["evalue"][:300])
    for i, c in enumerate(notebook.cells) if c.cell_type == "code"
    for o in c.get("outputs", []) if o.get("output_type") == "error"
]
text = "".join(o.get("text", "") for o in notebook.cells[-1].outputs if o.get("name") == "stdout")
probe = json.loads(text.split("CLASSROOM-PROBE ", 1)[1])
# ru_maxrss of this process would include its parent's (kept across fork and exec): read its own peak
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print("CLASSROOM-RESULT " + json.dumps(dict(
    execute_wall_s=wall,
    errors=errors,
    cells=cells[:-1],  # code cells only; the appended probe cell is not the lesson's
    peak_before_last_reset_mib=max((c["peak_mib"] for c in cells), default=0),
    runner_peak_rss_mib=int(status["VmHWM"].split()[0]) / 1024,
    runner_cpu_s=me.ru_utime + me.ru_stime,
    largest_process_maxrss_mib=children.ru_maxrss / 1024,
    kernel_cpu_s=children.ru_utime + children.ru_stime,
    **probe,
)))
"""


def lesson_notebooks(names=None):
    """{"00": notebooks/00_start_here.ipynb, ...}, only the lessons named (two-digit prefixes) if given."""
    found = {p.name[:2]: p for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))}
    if names:
        missing = [n for n in names if n not in found]
        if missing:
            raise SystemExit(f"no lesson {', '.join(missing)}; choose from {', '.join(found)}")
        return {n: found[n] for n in names}
    return found


def controller_mounts(controllers=CONTROLLERS):
    """{controller: mount point} of the cgroup v1 hierarchies holding each controller, where this process may
    create groups; a controller that is missing or read-only is left out."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return {}
    mounts = {}
    for line in lines:
        fields, _, after = line.partition(" - ")
        fields, after = fields.split(), after.split()
        if len(after) < 3 or after[0] != "cgroup":
            continue
        mount = Path(fields[4])
        for name in set(after[2].split(",")) & set(controllers):
            if os.access(mount, os.W_OK):
                mounts.setdefault(name, mount)
    return mounts


@contextmanager
def classroom_groups(cpus, name=None):
    """Fresh cgroup v1 groups, one per hierarchy holding `cpu`, `cpuacct` and `memory` (a shared hierarchy
    gets one group); the `cpu` one limited to `cpus` cores (quota = cpus x a 100 ms period). Yields
    {controller: group folder}. Removed afterwards, also on failure: processes still inside are moved back
    to the top group first."""
    mounts = controller_mounts()
    missing = [c for c in CONTROLLERS if c not in mounts]
    if missing:
        raise RuntimeError(f"no writable cgroup v1 {', '.join(missing)} controller (needs root, /sys/fs/cgroup)")
    name = name or f"pixelcnn-classroom-{os.getpid()}-{time.monotonic_ns()}"
    groups = {c: mounts[c] / name for c in CONTROLLERS}
    made = []
    try:
        for folder in dict.fromkeys(groups.values()):
            folder.mkdir()
            made.append(folder)
        (groups["cpu"] / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (groups["cpu"] / "cpu.cfs_quota_us").write_text(str(round(cpus * PERIOD_US)))
        yield groups
    finally:
        for folder in made:
            remove_group(folder)


def memory_stat(group):
    """The memory group's `memory.stat` as {name: bytes}."""
    pairs = (line.split() for line in (group / "memory.stat").read_text().splitlines())
    return {k: int(v) for k, v in pairs}


def loadavg():
    """The 1-minute load average, or None where /proc/loadavg is unreadable."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class Sampler(threading.Thread):
    """Samples, every `interval` seconds until stopped, the memory group's resident memory (rss +
    mapped_file; keeps the peak) and the 1-minute load average (keeps them all)."""

    def __init__(self, memory_group, interval=0.2):
        super().__init__(daemon=True)
        self.group, self.interval, self.done = memory_group, interval, threading.Event()
        self.peak_resident, self.loads = 0, []

    def run(self):
        while not self.done.is_set():
            try:
                stat = memory_stat(self.group)
                self.peak_resident = max(self.peak_resident, stat["rss"] + stat.get("mapped_file", 0))
            except (OSError, KeyError, ValueError):
                pass
            self.loads.append(loadavg())
            self.done.wait(self.interval)

    def stop(self):
        self.done.set()
        self.join()
        return self


def student_env():
    """The environment of a student's kernel: full mode, PyTorch's own thread choice (then `import
    course_lib` caps it to the quota), no progress bars (as `make course` builds the lessons)."""
    drop = ("COURSE_FAST", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "PYTEST_CURRENT_TEST")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["TQDM_DISABLE"] = "1"
    return env


def run_notebook(notebook, cpus, timeout):
    """Execute a copy of `notebook` (with the `results/` folder beside it) in a temporary folder, inside fresh
    cgroups; return what was measured."""
    with tempfile.TemporaryDirectory(prefix="pixelcnn-classroom-") as tmp:
        copy = Path(tmp) / notebook.name
        shutil.copy(notebook, copy)
        if (notebook.parent / "results").is_dir():
            shutil.copytree(notebook.parent / "results", Path(tmp) / "results")
        with classroom_groups(cpus) as groups:
            enter = " && ".join(f'echo $$ > "{groups[c] / "cgroup.procs"}"' for c in dict.fromkeys(CONTROLLERS))
            args = [sys.executable, "-c", RUNNER, str(copy), str(timeout), PROBE, str(groups["memory"])]
            sampler = Sampler(groups["memory"])
            load_before = loadavg()
            sampler.start()
            start = time.perf_counter()
            try:
                job = subprocess.run(
                    ["sh", "-c", f'{enter} && exec "$@"', "sh", *args],
                    env=student_env(),
                    cwd=tmp,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                )
            finally:
                sampler.stop()
            process_wall = time.perf_counter() - start
            if job.returncode != 0:
                raise RuntimeError(f"{notebook.name} failed:\n{job.stderr[-3000:]}")
            result = json.loads(job.stdout.split("CLASSROOM-RESULT ", 1)[1])
            cpu_stat = dict(line.split() for line in (groups["cpu"] / "cpu.stat").read_text().splitlines())
            measured = dict(
                # the runner resets the group's peak after each cell (to find the cell): the largest of them
                peak_mib=max(
                    int((groups["memory"] / "memory.max_usage_in_bytes").read_text()) / MIB,
                    result.pop("peak_before_last_reset_mib"),
                ),
                peak_resident_mib=sampler.peak_resident / MIB,
                cpu_s=int((groups["cpuacct"] / "cpuacct.usage").read_text()) / 1e9,
                wall_s=result.pop("execute_wall_s"),
                process_wall_s=process_wall,
                throttled_periods=int(cpu_stat["nr_throttled"]),
                throttled_s=int(cpu_stat["throttled_time"]) / 1e9,
            )
            group_name = groups["cpu"].name
    loads = [v for v in sampler.loads if v is not None]
    in_group = any(group_name in line for line in result.pop("cgroups"))
    if not in_group:
        raise RuntimeError(f"the kernel of {notebook.name} ran outside the cgroup {group_name}")
    return dict(
        **measured,
        **result,
        kernel_in_cgroup=in_group,
        load_1min=dict(
            before=load_before,
            after=loadavg(),
            mean_during=sum(loads) / len(loads) if loads else None,
            max_during=max(loads, default=None),
        ),
    )


def empty_notebook(folder):
    """A one-cell notebook (a bare kernel: the floor under every lesson), written into `folder`."""
    import nbformat

    path = Path(folder) / "empty.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")]), path)
    return path


def minutes(seconds):
    """Seconds as m:ss (95.4 -> "1:35")."""
    s = round(seconds)
    return f"{s // 60}:{s % 60:02d}"


def readme_table(result):
    """The README's classroom sizing table (Markdown), rendered from a classroom_sizing JSON."""
    quota = f"{result['settings']['cpus']:g}-core quota"
    lines = [
        f"| lesson (full mode, {quota}) | wall (min:s) | CPU s | peak memory MiB |",
        "|---|---:|---:|---:|",
    ]
    for r in result["results"]:
        failed = len(r.get("errors", []))
        name = r["lesson"] + (f" ({failed} cell{'s' * (failed > 1)} failed)" if failed else "")
        lines.append(f"| {name} | {minutes(r['wall_s'])} | {r['cpu_s']:.0f} | {r['peak_mib']:.0f} |")
    return "\n".join(lines)


def memory_per_student_gib(peak_mib, headroom):
    """A student's memory allowance in GiB: the peak times (1 + headroom), rounded up to 0.5 GiB."""
    return math.ceil(peak_mib * (1 + headroom) / 1024 / 0.5) * 0.5


def students_per_server(cores, memory_gib, cpus_per_student, memory_per_student, reserve_gib):
    """How many students a server holds: min(floor(cores / cpus_per_student),
    floor((memory_gib - reserve_gib) / memory_per_student)); never below 0."""
    by_cpu = math.floor(cores / cpus_per_student + 1e-9)
    by_memory = math.floor(max(0.0, memory_gib - reserve_gib) / memory_per_student + 1e-9)
    return max(0, min(by_cpu, by_memory))


def sizing(result, servers, headroom, reserve_gib):
    """The sizing summary from the measurements: the allowance per student and the students per server."""
    lessons = [r for r in result["results"] if r["lesson"] != EMPTY]
    worst = max(lessons, key=lambda r: r["peak_mib"])
    cpus = result["settings"]["cpus"]
    memory = memory_per_student_gib(worst["peak_mib"], headroom)
    fits = []
    for cores, gib in servers:
        fits.append(
            dict(
                cores=cores,
                memory_gib=gib,
                by_cpu=math.floor(cores / cpus + 1e-9),
                by_memory=math.floor(max(0.0, gib - reserve_gib) / memory + 1e-9),
                students=students_per_server(cores, gib, cpus, memory, reserve_gib),
            )
        )
    empty = [r["peak_mib"] for r in result["results"] if r["lesson"] == EMPTY]
    return dict(
        cpus_per_student=cpus,
        empty_notebook_mib=empty[0] if empty else None,
        shared_files_mib=max(r.get("kernel_status_mib", {}).get("RssFile", 0) for r in lessons),
        peak_mib=worst["peak_mib"],
        peak_lesson=worst["lesson"],
        headroom=headroom,
        memory_per_student_gib=memory,
        reserve_gib=reserve_gib,
        servers=fits,
    )


def sizing_text(s):
    """The sizing summary as printed text."""
    lines = [
        f"cores per student: {s['cpus_per_student']:g} (the quota every lesson ran under)",
        f"memory per student: {s['memory_per_student_gib']:g} GiB = the largest peak, {s['peak_mib']:.0f} MiB "
        f"(lesson {s['peak_lesson']}), plus {s['headroom']:.0%} headroom, rounded up to 0.5 GiB",
    ]
    if s.get("empty_notebook_mib") is not None:
        lines.append(
            f"  every peak includes the runner (standing in for the Jupyter server) and the kernel: "
            f"{s['empty_notebook_mib']:.0f} MiB for an empty notebook"
        )
    if s.get("shared_files_mib"):
        lines.append(
            f"  not in the peaks: PyTorch's library files each kernel maps (up to {s['shared_files_mib']:.0f} MiB), "
            "read once per server and shared by every student (in the reserve)"
        )
    lines.append(
        f"students per server = min(floor(cores / {s['cpus_per_student']:g}), "
        f"floor((memory GiB - {s['reserve_gib']:g} GiB for the system and the hub) / {s['memory_per_student_gib']:g}))"
    )
    for f in s["servers"]:
        lines.append(
            f"  {f['cores']:g} cores, {f['memory_gib']:g} GiB: min({f['by_cpu']}, {f['by_memory']}) = "
            f"{f['students']} students at once"
        )
    return "\n".join(lines)


def server(text):
    """ "32:128" -> (32.0, 128.0): cores and GiB of memory."""
    cores, _, gib = text.partition(":")
    return float(cores), float(gib)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lessons", nargs="+", help="two-digit lesson numbers (default: every lesson)")
    p.add_argument("--cpus", type=float, default=1.0, help="the CPU quota per student, in cores")
    p.add_argument("--timeout", type=int, default=1800, help="seconds allowed per lesson (and per cell)")
    p.add_argument("--no-empty", action="store_true", help="skip the empty-notebook measurement")
    p.add_argument("--servers", type=server, nargs="+", default=[(32, 128), (2, 24)], help="CORES:GiB servers to size")
    p.add_argument("--headroom", type=float, default=0.25, help="added to the largest peak, as a fraction")
    p.add_argument("--reserve-gib", type=float, default=2.0, help="memory a server keeps for itself and the hub")
    p.add_argument(
        "--table",
        metavar="JSON",
        nargs="?",
        const=str(RESULTS / "classroom_sizing.json"),
        help="print the README table and the sizing summary of a stored result, measure nothing",
    )
    p.add_argument("--out", default=str(RESULTS / "classroom_sizing.json"))
    args = p.parse_args(argv)
    if args.table:
        result = json.loads(Path(args.table).read_text())
        print(readme_table(result))
        print()
        print(sizing_text(sizing(result, args.servers, args.headroom, args.reserve_gib)))
        return
    if os.geteuid() != 0 or any(c not in controller_mounts() for c in CONTROLLERS):
        sys.exit("needs root and writable cgroup v1 cpu, cpuacct and memory controllers (/sys/fs/cgroup)")
    lessons = lesson_notebooks(args.lessons)
    from course_lib.benchmark import machine

    load_before = loadavg()
    results, rows = [], []
    with tempfile.TemporaryDirectory(prefix="pixelcnn-classroom-empty-") as tmp:
        todo = ([] if args.no_empty else [(EMPTY, empty_notebook(tmp))]) + list(lessons.items())
        for lesson, path in todo:
            name = lesson if lesson == EMPTY else path.stem
            print(f"{name}: running ...", flush=True)
            r = dict(lesson=name, **run_notebook(path, args.cpus, args.timeout))
            results.append(r)
            for e in r["errors"]:
                print(f"{name}: ERROR in code cell {e['index']}: {e['ename']}: {e['evalue']}", flush=True)
            top = max(r["cells"], key=lambda c: c["peak_mib"], default=dict(peak_mib=0, index=None, line=""))
            print(
                f"{name}: wall {minutes(r['wall_s'])}, CPU {r['cpu_s']:.0f} s, peak {r['peak_mib']:.0f} MiB "
                f"(resident {r['peak_resident_mib']:.0f}, kernel {r['kernel_status_mib']['VmHWM']:.0f}), "
                f"threads {r['torch_threads']}, load {r['load_1min']['before']} -> {r['load_1min']['after']}; "
                f"largest cell peak {top['peak_mib']:.0f} MiB at code cell {top['index']}: {top['line']}",
                flush=True,
            )
            rows.append(
                [
                    name,
                    minutes(r["wall_s"]),
                    f"{r['cpu_s']:.0f}",
                    f"{r['peak_mib']:.0f}",
                    f"{r['peak_resident_mib']:.0f}",
                    f"{r['kernel_status_mib']['VmHWM']:.0f}",
                    str(r["torch_threads"]),
                    f"{r['load_1min']['mean_during']:.2f}" if r["load_1min"]["mean_during"] is not None else "-",
                ]
            )
    header = ["lesson", "wall", "CPU s", "peak MiB", "resident MiB", "kernel MiB", "threads", "load"]
    text = table(header, rows)
    info = machine("cpu")
    info.pop("threads", None)  # the runner's, not a kernel's: each kernel's count is in its result
    info["load_average_1min"] = dict(before=load_before, after=loadavg())
    payload = dict(
        machine=info,
        settings=dict(
            cpus=args.cpus,
            period_us=PERIOD_US,
            timeout_s=args.timeout,
            mode="full (COURSE_FAST unset)",
            lessons=list(lessons),
        ),
        results=results,
        table=text,
    )
    payload["sizing"] = sizing(payload, args.servers, args.headroom, args.reserve_gib)
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}\n")
    print(readme_table(payload))
    print()
    print(sizing_text(payload["sizing"]))


if __name__ == "__main__":
    main()
