"""Training and cached sampling inside a real CPU quota (what a JupyterHub `cpu_limit` or Docker `--cpus`
gives a student): PyTorch's default thread count (one per visible core) against the quota-aware count that
`import course_lib` sets (`course_lib.device.use_allowed_threads`). Prints a table, writes a JSON.

    sudo .venv/bin/python -m benchmarks.quota            # 1-core and 0.5-core quotas
    sudo .venv/bin/python -m benchmarks.quota --cores 2 1

Needs root and a writable cgroup v1 `cpu` controller (e.g. /sys/fs/cgroup/cpu). Each measurement runs in a
fresh Python process placed in a cgroup with that quota (period 100 ms): training images/s (median over
--steps steps of the default model, batch 32, through the real training step) and the wall time of cached
sampling of --batch images (median over --repeats runs). Leave the machine otherwise idle: the load average
is stored beside the numbers.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from benchmarks.common import RESULTS, remove_group, table

PERIOD_US = 100_000


def cpu_controller():
    """The mount point of the cgroup v1 `cpu` controller if this process may create groups in it, else None."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields, _, after = line.partition(" - ")
        fields, after = fields.split(), after.split()
        if len(after) >= 3 and after[0] == "cgroup" and "cpu" in after[2].split(","):
            mount = Path(fields[4])
            return mount if os.access(mount, os.W_OK) and (mount / "cpu.cfs_quota_us").exists() else None
    return None


@contextmanager
def quota_group(cores, name=None):
    """A fresh cgroup v1 `cpu` group limited to `cores` cores (quota = cores x a 100 ms period); yields its
    `tasks` file (write a pid there to put that process in the group). Removed afterwards, also on failure:
    a process still inside is moved back to the top group first."""
    mount = cpu_controller()
    if mount is None:
        raise RuntimeError("no writable cgroup v1 cpu controller (needs root and /sys/fs/cgroup/cpu)")
    group = mount / (name or f"pixelcnn-quota-{os.getpid()}-{time.monotonic_ns()}")
    group.mkdir()
    try:
        (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (group / "cpu.cfs_quota_us").write_text(str(round(cores * PERIOD_US)))
        yield group / "tasks"
    finally:
        remove_group(group, "tasks")


def run_in_group(tasks, args, env=None, timeout=600):
    """Run `args` as a process inside the cgroup whose `tasks` file is given (it enters before it execs)."""
    wrapper = ["sh", "-c", f'echo $$ > "{tasks}" && exec "$@"', "sh", *args]
    return subprocess.run(wrapper, env=env, capture_output=True, text=True, timeout=timeout, check=True)


# what each measuring process runs: threads "default" puts back the count PyTorch picked before course_lib
MEASURE = """
import json, sys, time
import torch
default = torch.get_num_threads()
import course_lib
from course_lib import GatedPixelCNN
from course_lib.benchmark import sampling_seconds, training_throughput
mode, steps, batch, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if mode == "default":
    torch.set_num_threads(default)
torch.manual_seed(0)
model = GatedPixelCNN()
start = time.process_time()
train = training_throughput(model, batch_size=32, steps=steps, warmup=1, device="cpu")
sampling = sampling_seconds(model.eval(), batch, "cached", repeats=repeats)
print(json.dumps(dict(threads=torch.get_num_threads(), default_threads=default,
                      quota=course_lib.device.cpu_quota(), images_per_s=train["images_per_s"],
                      sampling_s=sampling, cpu_s=time.process_time() - start)))
"""


def loadavg():
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cores", type=float, nargs="+", default=[1.0, 0.5], help="the quotas to measure, in cores")
    p.add_argument("--steps", type=int, default=5, help="timed training steps (after one warm-up step)")
    p.add_argument("--batch", type=int, default=16, help="images per cached sampling run")
    p.add_argument("--repeats", type=int, default=3, help="cached sampling runs (median)")
    p.add_argument("--out", default=str(RESULTS / "quota_cpu.json"))
    args = p.parse_args(argv)
    if cpu_controller() is None:
        sys.exit("needs root and a writable cgroup v1 cpu controller (/sys/fs/cgroup/cpu)")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}
    env["TQDM_DISABLE"] = "1"
    rows, results = [], []
    load_before = loadavg()
    for cores in args.cores:
        for mode in ("default", "quota-aware"):
            with quota_group(cores) as tasks:
                start = time.perf_counter()
                out = run_in_group(
                    tasks,
                    [sys.executable, "-c", MEASURE, mode, str(args.steps), str(args.batch), str(args.repeats)],
                    env=env,
                )
                wall = time.perf_counter() - start
            r = dict(cores=cores, mode=mode, process_wall_s=wall, load=loadavg(), **json.loads(out.stdout))
            results.append(r)
            rows.append(
                [f"{cores:g}", mode, r["threads"], f"{r['images_per_s']:.0f}", f"{r['sampling_s']:.2f}", f"{wall:.0f}"]
            )
    header = [
        "quota (cores)",
        "threads",
        "count",
        "training images/s",
        f"cached sampling {args.batch} images (s)",
        "wall",
    ]
    text = table(header, rows)
    from course_lib.benchmark import machine

    payload = dict(
        machine=machine("cpu"),
        load_average_1min=dict(before=load_before, after=loadavg()),
        settings=vars(args),
        results=results,
        table=text,
    )
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
