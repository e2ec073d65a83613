"""Devices: where tensors live and how to wait for them.

pick_device    "auto" -> CUDA if present, else Apple MPS, else the CPU
model_device   the device a model's parameters (or buffers) are on
cpu_has_bf16   whether this CPU computes in bf16 natively (then bf16 autocast pays off)
synchronize    wait for the queued GPU work: a GPU runs asynchronously, so timings need it
cpu_quota      the CPU quota of this process's cgroup in cores (a hub's or a container's `--cpus`), or None
cpu_threads    how many CPU threads this process may keep busy: its cores, capped by its quota
use_allowed_threads  lower PyTorch's thread count to `cpu_threads()` (done by `import course_lib`)
idle_cores     how many of those cores no other task wants right now (/proc/loadavg)
sampling_threads  the thread counts of cached sampling: its small steps on one thread, its rows on the idle cores

A JupyterHub on Kubernetes (`cpu_limit`) or Docker (`--cpus 1`) limits a student with a CFS quota: so many
microseconds of CPU time per period. Every core of the server stays visible (`os.cpu_count()`, the affinity
mask), so PyTorch starts a thread per core, and the threads beyond the quota only wait to be throttled.
"""

import os
from contextlib import contextmanager
from pathlib import Path

import torch


def pick_device(device=None) -> torch.device:
    """`None`/"auto" -> CUDA if present, else Apple MPS, else CPU. Any other string is used as given."""
    if device not in (None, "auto"):
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def model_device(model) -> torch.device:
    """The device holding the model's parameters (or buffers, for the baseline)."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def cpu_has_bf16() -> bool:
    """True when this CPU computes in bf16 natively (AVX512-BF16 or AMX): bf16 autocast is then faster."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def synchronize(device):
    """Wait until every queued kernel on `device` has finished (GPU work is asynchronous)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _read(path):
    """The text of a small file, or None where it is missing or unreadable."""
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _cpu_cgroup_folders(root="/"):
    """The folders, under `root`, of this process's cgroup in each hierarchy that has the `cpu` controller,
    and of their parents up to where the hierarchy is mounted, innermost first.

    Reads /proc/self/cgroup ("0::/user/42" in cgroup v2; "4:cpu,cpuacct:/user/42" in v1: hierarchy,
    controllers, this process's cgroup) and /proc/self/mountinfo (where each hierarchy is mounted: field 4
    is the cgroup shown at that mount point, field 5 the mount point; after " - " the file system type,
    `cgroup2` or `cgroup`, and for v1 its options, which name the controllers).
    """
    groups = {}  # "cgroup2" or "cgroup" (v1) -> this process's cgroup path
    for line in (_read(Path(root, "proc/self/cgroup")) or "").splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            groups["cgroup2"] = path
        elif "cpu" in controllers.split(","):
            groups["cgroup"] = path
    folders = []
    for line in (_read(Path(root, "proc/self/mountinfo")) or "").splitlines():
        fields, _, after = line.partition(" - ")
        fields, after = fields.split(), after.split()
        if len(fields) < 5 or len(after) < 3 or after[0] not in groups:
            continue
        if after[0] == "cgroup" and "cpu" not in after[2].split(","):
            continue  # a v1 hierarchy of another controller
        shown, mount_point, path = fields[3], fields[4], groups[after[0]]
        # inside a container the mount shows the container's own cgroup: keep the part of the path below it
        inside = path[len(shown) :] if path == shown or path.startswith(shown.rstrip("/") + "/") else ""
        top = Path(root, mount_point.lstrip("/"))
        folder = Path(top, inside.lstrip("/"))
        while True:
            folders.append(folder)
            if folder == top:
                break
            folder = folder.parent
    return folders


def _quota_in(folder):
    """The quota set in one cgroup folder in cores, or None: cgroup v2 `cpu.max` ("150000 100000": 150000 us
    of CPU time per 100000 us = 1.5 cores; "max 100000": no limit), or cgroup v1 `cpu.cfs_quota_us` over
    `cpu.cfs_period_us` (quota -1: no limit). A missing or malformed file means no limit."""
    v2 = _read(folder / "cpu.max")
    if v2 is not None:
        quota, _, period = v2.strip().partition(" ")
    else:
        quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
    try:
        quota, period = int(quota), int(period)
    except (TypeError, ValueError):  # "max", a missing file, garbage
        return None
    return quota / period if quota > 0 and period > 0 else None


def cpu_quota(root="/"):
    """The CPU quota of this process in cores (1.5 = one and a half cores), or None where there is none.

    The smallest quota set on this process's cgroup or on any cgroup above it (a limit on a parent folder
    limits its children too), in cgroup v2 (`cpu.max`) or v1 (`cpu.cfs_quota_us`, `cpu.cfs_period_us`),
    found through /proc/self/cgroup and /proc/self/mountinfo. `root` is where those paths start (the real
    file system; a fake tree in the tests). None off Linux and wherever the files are missing or malformed.
    """
    quotas = [q for q in map(_quota_in, _cpu_cgroup_folders(root)) if q is not None]
    return min(quotas, default=None)


def _affinity():
    """The CPUs this process may run on: its affinity mask (Linux), else all of them."""
    if hasattr(os, "sched_getaffinity"):
        return os.sched_getaffinity(0)  # pid 0: this process
    return set(range(os.cpu_count() or 1))


def cpu_threads(root="/") -> int:
    """How many CPU threads this process may keep busy: the CPUs in its affinity mask, but no more than its
    CPU quota (`cpu_quota`) rounded down; at least 1 (a quota of half a core still runs one thread)."""
    cores = len(_affinity())
    quota = cpu_quota(root)
    return max(1, cores if quota is None else min(cores, int(quota)))


def _physical_cores(cpus, root="/"):
    """How many physical cores `cpus` lie on (hyper-threads of one core count once), from
    /sys/devices/system/cpu/cpuN/topology/core_cpus_list; None where that is unreadable."""
    cores = set()
    for cpu in cpus:
        topology = Path(root, f"sys/devices/system/cpu/cpu{cpu}/topology")
        siblings = _read(topology / "core_cpus_list") or _read(topology / "thread_siblings_list")
        if siblings is None:
            return None
        cores.add(siblings.strip())
    return len(cores)


def torch_default_threads(root="/"):
    """The thread counts PyTorch picks by itself: one per physical core or one per hardware thread, of the
    CPUs this process may run on or of the whole machine (which one depends on how PyTorch was built)."""
    mine, machine = _affinity(), range(os.cpu_count() or 1)
    counts = {len(mine), len(machine), _physical_cores(mine, root), _physical_cores(machine, root)}
    return counts - {None}


def use_allowed_threads(root="/", environ=None):
    """Lower PyTorch's thread count to `cpu_threads()` when it is above it, unless the count was chosen by
    hand. `import course_lib` calls this once. Returns the thread count in use afterwards.

    Chosen by hand means: OMP_NUM_THREADS or MKL_NUM_THREADS is set (PyTorch then takes its count from
    there), or the count is none of those PyTorch picks by itself (`torch_default_threads`), so
    `torch.set_num_threads` was called before `import course_lib`. A count set by hand that equals one
    PyTorch would have picked cannot be told apart from it; to keep such a count on a machine with a
    quota, set it after `import course_lib` (or set OMP_NUM_THREADS).
    """
    environ = os.environ if environ is None else environ
    current, allowed = torch.get_num_threads(), cpu_threads(root)
    if allowed >= current:
        return current
    if any(environ.get(name, "").strip() for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")):
        return current
    if current not in torch_default_threads(root):
        return current
    torch.set_num_threads(allowed)
    return allowed


LOADAVG = "/proc/loadavg"  # Linux: "1.02 0.80 0.61 2/153 4242"; the fourth field is running/existing tasks


def idle_cores(allowed=None):
    """How many of the CPU cores this process may use no other task wants right now: those cores minus
    the runnable tasks besides this one that Linux reports (the fourth field of /proc/loadavg, read at
    this moment, not an average), and no more than `allowed` (this process's CPU quota in whole cores,
    `cpu_threads()`); at least 1. None where the file does not exist (macOS, Windows)."""
    try:
        with open(LOADAVG) as f:
            running = int(f.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None
    cores = len(os.sched_getaffinity(0))  # the cores this process (pid 0: itself) may run on; Linux, as the file
    idle = max(1, cores - max(running - 1, 0))
    return idle if allowed is None else max(1, min(allowed, idle))


def row_threads(user_threads, allowed=None):
    """Threads for the cached sampler's once-per-row convolutions: your count, but no more than the cores
    that are idle right now within your quota (`idle_cores`), so that no thread waits for a core another
    process holds or the quota withholds."""
    idle = idle_cores(allowed)
    return user_threads if idle is None else min(user_threads, idle)


def _use_threads(n):
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


class SamplingThreads:
    """The thread counts of a loop of tiny per-pixel steps with a few larger convolutions at each row's start.

    A step is a few dozen tiny operations, which several CPU threads do not speed up and which become many
    times slower on a shared machine (a classroom server, a test run beside it), where threads wait for a
    core at every operation. So on the CPU, with threads=None, the steps run on one thread and the rows on
    your thread count, but on no more threads than there are idle cores at the start of that row
    (`row_threads`). threads=n uses n threads for both; on a GPU your count is left as it is.
    """

    def __init__(self, device, threads=None):
        self.user_threads = torch.get_num_threads()
        self.automatic = threads is None and torch.device(device).type == "cpu"
        self.step_threads = 1 if self.automatic else threads or self.user_threads
        self.allowed = cpu_threads() if self.automatic else None  # the CPU quota, read once: about 0.5 ms

    def for_row(self):
        """Set the thread count for a row's convolutions."""
        _use_threads(row_threads(self.user_threads, self.allowed) if self.automatic else self.step_threads)

    def for_steps(self):
        """Set the thread count for the per-pixel steps."""
        _use_threads(self.step_threads)


@contextmanager
def sampling_threads(device, threads=None):
    """`with sampling_threads(device, threads) as policy:` call `policy.for_row()` before each row's work
    and `policy.for_steps()` before its per-pixel steps (`SamplingThreads`); your
    `torch.get_num_threads()` count is restored afterwards, also after an error."""
    policy = SamplingThreads(device, threads)
    try:
        yield policy
    finally:
        torch.set_num_threads(policy.user_threads)
