"""Sampling speed: naive (one full forward pass per sub-pixel) against cached (`method="cached"`), for
the default 28x28 Gated PixelCNN at several batch sizes. Prints a table, writes a JSON of medians.

    python -m benchmarks.sampling                       # batch 1, 16, 64, 256 on the device found
    python -m benchmarks.sampling --batch-sizes 64 --full-naive 64   # also one whole naive run

Cached: median of --repeats whole runs; "passes" is that time over one full forward pass of the same batch
(median of --forward-repeats), the cost of sampling in units of the arithmetic it must do. Naive: every
step is the same full forward pass, so the whole run is estimated as H times the median time of one
naively sampled row (--naive-rows rows timed); --full-naive B times one whole naive run at batch B as a
check of that estimate. --busy also times cached sampling while one competing process keeps a core busy
(a shared classroom machine): the benchmark starts that process itself and stops it when done (and it
stops by itself after --busy-seconds in any case). Then, on the CPU, the "kept" columns time sampling and
the pass again with freed memory kept (`keep_freed_memory`): the pass at its steady speed, a stricter
yardstick than the pass as users time it.
"""

import argparse
import ctypes
import json
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from benchmarks.common import table, write
from course_lib import GatedPixelCNN, PixelCNN, count_parameters
from course_lib.benchmark import (
    forward_seconds,
    machine,
    naive_sampling_seconds,
    sampling_seconds,
    timed_call,
)
from course_lib.device import pick_device
from course_lib.sampling import sample


def keep_freed_memory():
    """Ask glibc to keep the memory PyTorch frees instead of handing it back to the operating system.
    A forward pass over a batch allocates tens of MB; by default glibc returns large blocks to the OS at
    once (mmap) or soon (trimming) and the next pass page-faults them in again, which made one pass of
    batch 64 take 140-280 ms on the 2-core test machine instead of about 95. Keeping them times the pass,
    the yardstick of the "passes" column, at its steady speed; sampling is timed under the same setting.
    It cannot be undone, so the benchmark does it last. Returns False where this is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # from glibc's malloc.h
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**30))


@contextmanager
def competing_load(seconds):
    """One other process spinning on a core for at most `seconds` (killed on exit)."""
    spin = f"import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass"
    process = subprocess.Popen([sys.executable, "-c", spin])
    time.sleep(0.5)  # let it start spinning
    try:
        yield
    finally:
        process.kill()
        process.wait()


def readme_table(result: dict) -> str:
    """The README's sampling table, in Markdown, from this script's JSON (`--table PATH` prints it)."""
    kept = result.get("freed_memory_kept")
    head = ["batch", "naive (s)", "cached (s)", "speed-up", "one pass (ms)", "passes", "busy (s)", "busy ÷ idle"]
    head += ["kept: cached (s)", "kept: one pass (ms)", "kept: passes"] if kept else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for e in result["results"]:
        row = [str(e["batch_size"]), f"{e['naive_s']:.2f}", f"{e['cached_s']:.3f}", f"{e['speedup']:.0f}×"]
        row += [f"{1000 * e['forward_s']:.1f}", f"{e['forward_passes']:.2f}"]
        busy = "cached_busy_s" in e
        row += [f"{e['cached_busy_s']:.3f}", f"{e['busy_slowdown']:.2f}×"] if busy else ["-", "-"]
        if kept:
            row += [f"{e['kept_cached_s']:.3f}", f"{1000 * e['kept_forward_s']:.1f}", f"{e['kept_forward_passes']:.2f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64, 256])
    p.add_argument("--model", default="gated", choices=["gated", "pixelcnn"])
    p.add_argument("--image-size", type=int, default=28)
    p.add_argument("--channels", type=int, default=None, help="hidden channels (default: the model's default)")
    p.add_argument("--repeats", type=int, default=3, help="whole cached runs per batch size (median)")
    p.add_argument("--forward-repeats", type=int, default=7, help="full forward passes timed per batch size (median)")
    p.add_argument("--naive-rows", type=int, default=3, help="rows timed for the naive estimate (median)")
    p.add_argument("--full-naive", type=int, nargs="*", default=[], help="batch sizes to also sample naively in full")
    p.add_argument("--busy", action="store_true", help="also time cached sampling beside one busy process")
    p.add_argument("--threads", type=int, default=None, help="fix the cached sampler's CPU threads (default: auto)")
    p.add_argument("--busy-seconds", type=float, default=600, help="upper bound on the competing process's life")
    p.add_argument(
        "--kept-memory",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after the default measurements, time sampling and the pass again with freed memory kept",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/sampling_<device>.json)")
    p.add_argument("--table", default=None, metavar="JSON", help="print the README table of a result JSON and stop")
    args = p.parse_args(argv)
    if args.table:
        print(readme_table(json.loads(Path(args.table).read_text())))
        return

    device = pick_device(args.device)
    torch.manual_seed(0)
    cls = GatedPixelCNN if args.model == "gated" else PixelCNN
    extra = {"channels": args.channels} if args.channels else {}
    model = cls((1, args.image_size, args.image_size), **extra).to(device).eval()
    print(
        f"{cls.__name__}, {count_parameters(model):,} parameters, 1x{args.image_size}x{args.image_size} binary, "
        f"on {device}"
    )
    results = []
    for b in args.batch_sizes:  # with the allocator as PyTorch users have it
        cached = sampling_seconds(model, b, "cached", repeats=args.repeats, threads=args.threads)
        forward = forward_seconds(model, b, repeats=args.forward_repeats)
        naive = naive_sampling_seconds(model, b, rows=args.naive_rows)
        entry = {
            "batch_size": b,
            "cached_s": cached,
            "forward_s": forward,
            "forward_passes": cached / forward,
            "naive_s": naive,
            "speedup": naive / cached,
            "naive_estimated_from_rows": args.naive_rows,
        }
        if b in args.full_naive:
            entry["naive_full_run_s"] = timed_call(lambda b=b: sample(model, b, seed=0, method="naive"), device)
        if args.busy:
            with competing_load(args.busy_seconds):
                entry["cached_busy_s"] = sampling_seconds(
                    model, b, "cached", repeats=args.repeats, threads=args.threads
                )
            entry["busy_slowdown"] = entry["cached_busy_s"] / cached
        results.append(entry)
    kept = args.kept_memory and device.type == "cpu" and keep_freed_memory()
    for entry in results if kept else []:  # the same, with freed memory kept (this cannot be undone)
        b = entry["batch_size"]
        entry["kept_cached_s"] = sampling_seconds(model, b, "cached", repeats=args.repeats, threads=args.threads)
        entry["kept_forward_s"] = forward_seconds(model, b, repeats=args.forward_repeats)
        entry["kept_forward_passes"] = entry["kept_cached_s"] / entry["kept_forward_s"]
    header = ["batch", "naive s", "cached s", "speed-up", "cached ms/image", "forward ms", "passes"]
    header += ["kept: cached s", "kept: forward ms", "kept: passes"] if kept else []
    header += ["cached, busy s"] if args.busy else []
    header += ["naive full run s"] if args.full_naive else []
    rows = []
    for e in results:
        row = [e["batch_size"], f"{e['naive_s']:.2f}", f"{e['cached_s']:.3f}", f"{e['speedup']:.0f}x"]
        row += [
            f"{1000 * e['cached_s'] / e['batch_size']:.1f}",
            f"{1000 * e['forward_s']:.1f}",
            f"{e['forward_passes']:.2f}",
        ]
        if kept:
            row += [f"{e['kept_cached_s']:.3f}", f"{1000 * e['kept_forward_s']:.1f}", f"{e['kept_forward_passes']:.2f}"]
        if args.busy:
            row += [f"{e['cached_busy_s']:.3f} ({e['busy_slowdown']:.2f}x)"]
        if args.full_naive:
            row += [f"{e['naive_full_run_s']:.1f}" if "naive_full_run_s" in e else "-"]
        rows.append(row)
    text = table(header, rows)
    write(
        "sampling",
        device,
        {
            "benchmark": "sampling",
            "model": type(model).__name__,
            "config": model.config,
            "parameters": count_parameters(model),
            "cached_threads": args.threads or "auto",
            "freed_memory_kept": kept,
            "torch_threads": torch.get_num_threads(),
            "machine": machine(device),
            "results": results,
            "table": text,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
