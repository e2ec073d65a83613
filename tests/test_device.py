"""Devices: the automatic choice, the device of a model, waiting for a device (a no-op on the CPU), and the
CPU threads of cached sampling."""

import os
import subprocess
import sys

import pytest
import torch

from course_lib import GatedPixelCNN, IndependentPixelModel, device
from course_lib.device import cpu_has_bf16, model_device, pick_device, synchronize


def test_pick_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device() == torch.device("cuda") and pick_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device(None) == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device() == torch.device("cpu")
    assert pick_device("cuda:1") == torch.device("cuda", 1)  # an explicit choice is used as given


def test_model_device_reads_parameters_or_buffers():
    assert model_device(GatedPixelCNN((1, 4, 4), channels=4, dilations=(1,))) == torch.device("cpu")
    assert model_device(IndependentPixelModel((1, 2, 2))) == torch.device("cpu")  # buffers only
    assert model_device(torch.nn.ReLU()) == torch.device("cpu")  # nothing at all: the CPU


def test_cpu_has_bf16_asks_torch(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert cpu_has_bf16() is False
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert cpu_has_bf16() is True


def test_synchronize_waits_only_on_asynchronous_devices(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(("cuda", device)))
    monkeypatch.setattr(torch.mps, "synchronize", lambda: calls.append(("mps", None)))
    synchronize("cpu")
    synchronize("cuda:0")
    synchronize(torch.device("mps"))
    assert calls == [("cuda", torch.device("cuda", 0)), ("mps", None)]


def test_cpu_has_bf16_is_false_on_a_torch_without_the_probes(monkeypatch):
    """Older torch builds lack the CPU probes: then the answer is no, not an error."""
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    assert cpu_has_bf16() is False


# --- CPU quotas: fake /proc and /sys trees under tmp_path (`root=`), laid out as Linux lays them out ---

V2_MOUNT = "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev shared:4 - cgroup2 cgroup2 rw,nsdelegate"
V1_MOUNTS = (
    "33 25 0:29 / /sys/fs/cgroup/memory rw,nosuid shared:9 - cgroup cgroup rw,memory\n"
    "34 25 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:10 - cgroup cgroup rw,cpu,cpuacct"
)


def fake_root(tmp_path, cgroup, mountinfo, files=()):
    """A fake file system: /proc/self/cgroup, /proc/self/mountinfo and `files` ({path: text})."""
    for path, text in {"proc/self/cgroup": cgroup, "proc/self/mountinfo": mountinfo, **dict(files)}.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text + "\n")
    return tmp_path


def v2(tmp_path, cpu_max, group="/user.slice/student"):
    files = {f"sys/fs/cgroup{group}/cpu.max": cpu_max} if cpu_max is not None else {}
    return fake_root(tmp_path, f"0::{group}", V2_MOUNT, files)


def v1(tmp_path, quota, period="100000", group="/hub/student"):
    folder = f"sys/fs/cgroup/cpu,cpuacct{group}"
    cgroup = f"5:memory:{group}\n4:cpu,cpuacct:{group}\n0::/"
    return fake_root(
        tmp_path, cgroup, V1_MOUNTS, {f"{folder}/cpu.cfs_quota_us": quota, f"{folder}/cpu.cfs_period_us": period}
    )


@pytest.mark.parametrize(
    "cpu_max, cores", [("150000 100000", 1.5), ("100000 100000", 1.0), ("50000 100000", 0.5), ("max 100000", None)]
)
def test_cgroup_v2_quota_is_cpu_max_over_its_period(tmp_path, cpu_max, cores):
    """cgroup v2: `cpu.max` holds "quota period" in microseconds; "max" means no limit."""
    assert device.cpu_quota(v2(tmp_path, cpu_max)) == cores


@pytest.mark.parametrize(
    "quota, period, cores", [("100000", "100000", 1.0), ("250000", "100000", 2.5), ("-1", "100000", None)]
)
def test_cgroup_v1_quota_is_cfs_quota_over_cfs_period(tmp_path, quota, period, cores):
    """cgroup v1: `cpu.cfs_quota_us` over `cpu.cfs_period_us` of the `cpu` hierarchy; -1 means no limit."""
    assert device.cpu_quota(v1(tmp_path, quota, period)) == cores


@pytest.mark.parametrize(
    "cpu_max", ["", "lots", "150000", "150000 100000 7", "0 100000", "-5 100000", "100000 0", None]
)
def test_a_malformed_or_missing_cpu_max_means_no_quota(tmp_path, cpu_max):
    assert device.cpu_quota(v2(tmp_path, cpu_max)) is None


@pytest.mark.parametrize("quota, period", [("abc", "100000"), ("100000", ""), ("", ""), ("100000", "-1")])
def test_a_malformed_v1_quota_means_no_quota(tmp_path, quota, period):
    assert device.cpu_quota(v1(tmp_path, quota, period)) is None


def test_no_cgroup_files_means_no_quota(tmp_path):
    """Off Linux (or without /proc) there is nothing to read: no quota, and the affinity alone counts."""
    assert device.cpu_quota(tmp_path) is None
    assert device.cpu_quota(fake_root(tmp_path, "0::/a", "")) is None  # no cgroup mounted
    assert device.cpu_quota(fake_root(tmp_path, "garbage\n::\n", V2_MOUNT)) is None


def test_the_smallest_quota_on_the_path_to_the_process_cgroup_wins(tmp_path):
    """Kubernetes nests a container's cgroup in its pod's: a parent's limit binds its children too; the
    hierarchy's top (the mount point) and unrelated cgroups are ignored."""
    pod = "sys/fs/cgroup/kubepods/pod7"
    files = {f"{pod}/cpu.max": "200000 100000", f"{pod}/student/cpu.max": "max 100000"}
    files["sys/fs/cgroup/kubepods/pod8/cpu.max"] = "10000 100000"  # a neighbour's pod
    root = fake_root(tmp_path, "0::/kubepods/pod7/student", V2_MOUNT, files)
    assert device.cpu_quota(root) == 2.0
    (root / pod / "student/cpu.max").write_text("150000 100000\n")
    assert device.cpu_quota(root) == 1.5


def test_inside_a_container_the_mount_shows_the_container_cgroup_itself(tmp_path):
    """Docker with cgroup v1 mounts the container's own cgroup (field 4 of mountinfo) at /sys/fs/cgroup/cpu;
    /proc/self/cgroup still names the full path: the quota is read at the mount point, not below it."""
    mount = "40 31 0:29 /docker/abc /sys/fs/cgroup/cpu rw,nosuid - cgroup cgroup rw,cpu"
    files = {"sys/fs/cgroup/cpu/cpu.cfs_quota_us": "50000", "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000"}
    assert device.cpu_quota(fake_root(tmp_path, "3:cpu:/docker/abc", mount, files)) == 0.5


@pytest.mark.parametrize(
    "cpu_max, cores, threads",
    [
        ("max 100000", 8, 8),
        ("150000 100000", 8, 1),
        ("50000 100000", 8, 1),
        ("400000 100000", 2, 2),
        ("299999 100000", 8, 2),
    ],
)
def test_cpu_threads_is_the_affinity_capped_by_the_quota_rounded_down(tmp_path, monkeypatch, cpu_max, cores, threads):
    monkeypatch.setattr(device, "_affinity", lambda: set(range(cores)))
    assert device.cpu_threads(v2(tmp_path, cpu_max)) == threads


def test_torch_default_threads_are_the_cores_or_hardware_threads_of_the_mask_or_machine(tmp_path, monkeypatch):
    """8 hardware threads on 4 hyper-threaded cores, this process on 4 of them (2 cores)."""
    siblings = ["0,4", "1,5", "2,6", "3,7", "0,4", "1,5", "2,6", "3,7"]
    for cpu, text in enumerate(siblings):
        (tmp_path / f"sys/devices/system/cpu/cpu{cpu}/topology").mkdir(parents=True)
        (tmp_path / f"sys/devices/system/cpu/cpu{cpu}/topology/core_cpus_list").write_text(text + "\n")
    monkeypatch.setattr(device.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(device, "_affinity", lambda: {0, 1, 4, 5})
    assert device.torch_default_threads(tmp_path) == {8, 4, 2}
    assert device.torch_default_threads(tmp_path / "nothing") == {8, 4}  # no topology: logical counts only


@pytest.fixture
def torch_threads(monkeypatch):
    """torch.get/set_num_threads on a fake count (the real one stays as it is); 8 CPUs, a 1.5-core quota."""
    state = {"threads": 8}
    monkeypatch.setattr(device.torch, "get_num_threads", lambda: state["threads"])
    monkeypatch.setattr(device.torch, "set_num_threads", lambda n: state.update(threads=n))
    monkeypatch.setattr(device, "torch_default_threads", lambda root="/": {4, 8})
    monkeypatch.setattr(device, "cpu_threads", lambda root="/": 1)
    return state


def test_import_lowers_a_default_thread_count_to_the_quota(torch_threads):
    assert device.use_allowed_threads(environ={}) == 1 and torch_threads["threads"] == 1
    torch_threads["threads"] = 4  # one per physical core: also PyTorch's own choice
    assert device.use_allowed_threads(environ={}) == 1


@pytest.mark.parametrize("name", ["OMP_NUM_THREADS", "MKL_NUM_THREADS"])
def test_a_count_set_in_the_environment_is_kept(torch_threads, name):
    assert device.use_allowed_threads(environ={name: "8"}) == 8 and torch_threads["threads"] == 8


def test_a_count_set_by_torch_set_num_threads_is_kept(torch_threads):
    """3 is no count PyTorch picks by itself on this machine: someone called torch.set_num_threads(3)."""
    torch_threads["threads"] = 3
    assert device.use_allowed_threads(environ={}) == 3


def test_a_count_below_the_quota_is_never_raised(torch_threads, monkeypatch):
    monkeypatch.setattr(device, "cpu_threads", lambda root="/": 16)
    assert device.use_allowed_threads(environ={}) == 8


def python_after_import(code, env=None, preexec_fn=None, tasks=None):
    """Run `code` after `import torch, course_lib` in a fresh Python; its stdout, stripped."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")} | (env or {})
    args = [sys.executable, "-c", "import torch, course_lib\n" + code]
    if tasks is not None:  # enter the cgroup whose tasks file is given, then run Python
        args = ["sh", "-c", f'echo $$ > "{tasks}" && exec "$@"', "sh", *args]
    out = subprocess.run(args, env=env, preexec_fn=preexec_fn, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux CPU affinity")
def test_import_keeps_the_count_set_by_omp_num_threads():
    """On one CPU (its affinity mask) with OMP_NUM_THREADS=2, importing course_lib leaves torch on 2 threads."""
    cpu = min(os.sched_getaffinity(0))
    out = python_after_import(
        "print(torch.get_num_threads(), course_lib.device.cpu_threads())",
        env={"OMP_NUM_THREADS": "2"},
        preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
    )
    assert out == "2 1"


def test_import_runs_torch_on_one_thread_inside_a_real_one_core_quota():
    """A real cgroup v1 `cpu` group with a 1-core quota (needs root): `import course_lib` lowers PyTorch's
    default (one thread per visible CPU) to 1. Under CI the controller must be there."""
    from benchmarks.quota import cpu_controller, quota_group

    if cpu_controller() is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI runs as root with a writable cgroup v1 cpu controller (/sys/fs/cgroup/cpu); none found")
        pytest.skip("no writable cgroup v1 cpu controller (needs root and /sys/fs/cgroup/cpu)")
    code = "import os\nprint(course_lib.device.cpu_quota(), torch.get_num_threads(), len(os.sched_getaffinity(0)))"
    with quota_group(1) as tasks:
        quota, threads, cpus = python_after_import(code, tasks=tasks).split()
    assert (float(quota), int(threads)) == (1.0, 1), f"{cpus} CPUs visible"


# -- the thread policy of cached sampling -------------------------------------------------------------
@pytest.mark.parametrize(
    "loadavg, cores, idle",
    [
        ("0.52 0.40 0.31 1/80 123", 2, 2),
        ("1.90 0.40 0.31 2/80 123", 2, 1),
        ("3 3 3 9/80 1", 2, 1),
        ("1 1 1 3/9 1", 8, 6),
    ],
)
def test_idle_cores_counts_the_cores_that_no_other_running_task_wants(tmp_path, monkeypatch, loadavg, cores, idle):
    """The fourth field of /proc/loadavg counts the tasks running now, this process's own included."""
    (tmp_path / "loadavg").write_text(loadavg + "\n")
    monkeypatch.setattr(device, "LOADAVG", str(tmp_path / "loadavg"))
    monkeypatch.setattr(device.os, "sched_getaffinity", lambda pid: set(range(cores)) if pid == 0 else {0})
    assert device.idle_cores() == idle
    assert device.row_threads(4) == min(4, idle) and device.row_threads(1) == 1


@pytest.mark.parametrize("content", [None, "", "garbage"])
def test_without_a_load_figure_the_rows_use_your_thread_count(tmp_path, monkeypatch, content):
    if content is not None:
        (tmp_path / "loadavg").write_text(content)
    monkeypatch.setattr(device, "LOADAVG", str(tmp_path / "loadavg"))  # missing (macOS, Windows) or unreadable
    assert device.idle_cores() is None and device.row_threads(3) == 3


@pytest.mark.parametrize("allowed, idle", [(None, 3), (1, 1), (2, 2), (8, 3)])
def test_idle_cores_are_capped_by_the_quota(tmp_path, monkeypatch, allowed, idle):
    """4 cores, one other task running: 3 idle, but never more than the quota allows."""
    (tmp_path / "loadavg").write_text("1 1 1 2/9 1\n")
    monkeypatch.setattr(device, "LOADAVG", str(tmp_path / "loadavg"))
    monkeypatch.setattr(device.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert device.idle_cores(allowed) == idle and device.row_threads(8, allowed) == idle


def test_on_a_gpu_the_sampling_threads_stay_as_you_set_them(monkeypatch):
    """Only the CPU gets the automatic policy: on a GPU rows and steps keep your count (and a fixed count wins)."""
    monkeypatch.setattr(device, "cpu_threads", lambda: pytest.fail("the quota is read for the CPU only"))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with device.sampling_threads(torch.device("cuda")) as policy:
            assert not policy.automatic and policy.step_threads == 2 and policy.allowed is None
            policy.for_row()
            assert torch.get_num_threads() == 2
            policy.for_steps()
            assert torch.get_num_threads() == 2
        with device.sampling_threads("cuda", threads=1) as policy:
            policy.for_row()
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


# A container's mountinfo as Docker writes it (cgroup v2, private cgroup namespace): other file systems
# on every line but one, and the cgroup2 mount's source is "cgroup", not its type.
DOCKER_MOUNTINFO = "\n".join(
    [
        "620 540 0:52 / / rw,relatime master:299 - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w",
        "621 620 0:55 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw",
        "622 620 0:56 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755",
        "625 620 0:57 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro",
        "626 625 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw,nsdelegate",
    ]
)


def test_a_container_quota_is_read_among_all_its_mounts(tmp_path):
    """Docker `--cpus=1.5` with cgroup v2: /proc/self/cgroup says "0::/" (the container's own cgroup is the
    namespace's root), mountinfo lists every mount of the container, and the quota is in the mount point's
    cpu.max. Only the cgroup2 line counts, found by its type (field 1 after " - "), whatever its source."""
    root = fake_root(tmp_path, "0::/", DOCKER_MOUNTINFO, {"sys/fs/cgroup/cpu.max": "150000 100000"})
    assert device.cpu_quota(root) == 1.5


def test_v1_reads_the_cgroup_of_the_cpu_hierarchy_not_of_the_others(tmp_path):
    """cgroup v1 gives each hierarchy its own cgroup path: the quota is read under the path of the hierarchy
    whose controllers include `cpu` (here /hub/student), not that of memory or of systemd's named one."""
    cgroup = "5:memory:/system.slice/hub.service\n4:cpu,cpuacct:/hub/student\n1:name=systemd:/session-2.scope\n0::/"
    folder = "sys/fs/cgroup/cpu,cpuacct"
    files = {f"{folder}/hub/student/cpu.cfs_quota_us": "200000", f"{folder}/hub/student/cpu.cfs_period_us": "100000"}
    for other in ("system.slice/hub.service", "session-2.scope"):  # a smaller quota where it does not apply
        files |= {f"{folder}/{other}/cpu.cfs_quota_us": "50000", f"{folder}/{other}/cpu.cfs_period_us": "100000"}
    assert device.cpu_quota(fake_root(tmp_path, cgroup, V1_MOUNTS, files)) == 2.0


def test_a_cgroup_whose_name_only_begins_like_the_mounted_one_is_not_below_it(tmp_path):
    """The mount shows /docker/abc; a process in /docker/abcdef is not inside it (a path prefix is not a
    parent folder), so only the mount point's quota applies, not that of a folder "def" under it."""
    mount = "40 31 0:29 /docker/abc /sys/fs/cgroup/cpu rw,nosuid - cgroup cgroup rw,cpu"
    files = {"sys/fs/cgroup/cpu/cpu.cfs_quota_us": "50000", "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000"}
    files |= {"sys/fs/cgroup/cpu/def/cpu.cfs_quota_us": "20000", "sys/fs/cgroup/cpu/def/cpu.cfs_period_us": "100000"}
    assert device.cpu_quota(fake_root(tmp_path, "3:cpu:/docker/abcdef", mount, files)) == 0.5


def test_without_an_affinity_mask_every_cpu_is_allowed(monkeypatch):
    """Off Linux (no os.sched_getaffinity) the process may run on every CPU; on one if the count is unknown."""
    monkeypatch.delattr(device.os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(device.os, "cpu_count", lambda: 6)
    assert device._affinity() == set(range(6))
    monkeypatch.setattr(device.os, "cpu_count", lambda: None)
    assert device._affinity() == {0}


def test_older_kernels_name_the_hyperthread_siblings_thread_siblings_list(tmp_path, monkeypatch):
    """Kernels before 5.7 have topology/thread_siblings_list and no core_cpus_list: the same cores are found."""
    for cpu, text in enumerate(["0,2", "1,3", "0,2", "1,3"]):
        (tmp_path / f"sys/devices/system/cpu/cpu{cpu}/topology").mkdir(parents=True)
        (tmp_path / f"sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").write_text(text + "\n")
    monkeypatch.setattr(device.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(device, "_affinity", lambda: {0, 1, 2, 3})
    assert device.torch_default_threads(tmp_path) == {4, 2}


def test_an_unknown_cpu_count_counts_as_one_cpu(tmp_path, monkeypatch):
    """os.cpu_count() may return None: the machine then counts as one CPU (as in _affinity), never zero."""
    monkeypatch.setattr(device.os, "cpu_count", lambda: None)
    monkeypatch.setattr(device, "_affinity", lambda: {0, 1, 2})
    assert device.torch_default_threads(tmp_path) == {3, 1}


def test_idle_cores_are_at_least_one_whatever_the_allowance(tmp_path, monkeypatch):
    """However little is allowed (an allowance of 0 cores included), one thread still runs."""
    (tmp_path / "loadavg").write_text("1 1 1 2/9 1\n")
    monkeypatch.setattr(device, "LOADAVG", str(tmp_path / "loadavg"))
    monkeypatch.setattr(device.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert device.idle_cores(0) == 1


def test_automatic_rows_without_a_load_figure_use_your_thread_count(tmp_path, monkeypatch):
    """On the CPU with no load figure (no /proc/loadavg), the rows run on your thread count, as
    `row_threads` says, not on the quota's; the per-pixel steps on one thread."""
    monkeypatch.setattr(device, "LOADAVG", str(tmp_path / "missing"))
    monkeypatch.setattr(device, "cpu_threads", lambda: 2)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        with device.sampling_threads("cpu") as policy:
            assert policy.automatic and policy.allowed == 2
            policy.for_row()
            assert torch.get_num_threads() == 3
            policy.for_steps()
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
