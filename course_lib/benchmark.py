"""Honest speed measurements: warm up first, synchronise the device around every timed step, report medians."""

import copy
import statistics
import time

import torch

from .data import ImageDataset
from .device import cpu_has_bf16, model_device, pick_device, synchronize
from .sampling import sample
from .train import TrainConfig, Trainer


def random_images(n, image_shape, levels=2, seed=0):
    """A synthetic ImageDataset of n random images (for timing only)."""
    g = torch.Generator().manual_seed(seed)
    return ImageDataset("random", torch.rand(n, *image_shape, generator=g), torch.zeros(n), levels=levels)


def training_throughput(model, batch_size=32, steps=10, warmup=3, device=None, **options):
    """Training speed of a copy of `model` (the original is untouched) through the real training step.

    options: TrainConfig fields such as precision="bf16", channels_last=True, compile=True.
    Returns {"images_per_s": median over timed steps, "step_seconds": [...], "device": str}.
    """
    device = pick_device(device)
    data = random_images(batch_size, model.image_shape, model.levels)
    trainer = Trainer(
        copy.deepcopy(model), data, config=TrainConfig(batch_size=batch_size, **options), device=device, progress=False
    )
    x = data.images.to(device)
    y = data.labels.to(device)
    if trainer.cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    times = []
    for k in range(warmup + steps):
        synchronize(device)
        start = time.perf_counter()
        trainer.step(x, y, trainer.cfg.lr)
        synchronize(device)
        if k >= warmup:
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {"images_per_s": batch_size / median, "step_seconds": times, "device": str(device)}


def timed_call(f, device):
    """Wall time in seconds of one call of f(), with `device` synchronised before and after."""
    synchronize(device)
    start = time.perf_counter()
    f()
    synchronize(device)
    return time.perf_counter() - start


def sampling_seconds(model, batch_size, method="cached", repeats=3, seed=0, threads=None):
    """Median wall time in seconds of `sample(model, batch_size, method=..., threads=...)` over `repeats`
    runs, after a warm-up run on a small batch (first-call costs: memory allocation, kernel selection)."""
    device = model_device(model)
    labels = None if model.num_classes is None else 0
    sample(model, min(batch_size, 2), labels=labels, seed=seed, method=method, threads=threads)
    return statistics.median(
        timed_call(lambda: sample(model, batch_size, labels=labels, seed=seed, method=method, threads=threads), device)
        for _ in range(repeats)
    )


def forward_seconds(model, batch_size, repeats=5, seed=0):
    """Median wall time in seconds of one full forward pass (eval mode, no_grad) over a batch of
    `batch_size` random images, after one warm-up pass: the yardstick for sampling (whole-batch cached
    sampling computes, pixel by pixel, what one such pass computes)."""
    device = model_device(model)
    x = random_images(batch_size, model.image_shape, model.levels, seed).images.to(device)
    labels = None if model.num_classes is None else torch.zeros(batch_size, dtype=torch.long, device=device)
    with torch.no_grad():
        model(x, labels)
        return statistics.median(timed_call(lambda: model(x, labels), device) for _ in range(repeats))


def naive_sampling_seconds(model, batch_size, rows=3, seed=0):
    """Estimated wall time in seconds of naive sampling of `batch_size` whole images: the median time
    of naively sampling one row (C*W full forward passes; the other rows are given, and naive sampling
    skips given sub-pixels) over `rows` different rows, times H. Every naive step is the same full
    forward pass, so every row costs the same; this saves timing hours of identical passes."""
    device = model_device(model)
    c, h, w = model.image_shape
    labels = None if model.num_classes is None else 0
    images = torch.zeros(batch_size, c, h, w, dtype=torch.long)
    times = []
    for r in [round(k * (h - 1) / max(rows - 1, 1)) for k in range(rows)]:
        known = torch.ones(1, 1, h, w, dtype=torch.bool)
        known[..., r, :] = False
        times.append(
            timed_call(
                lambda known=known: sample(
                    model, batch_size, labels=labels, given=(images, known), seed=seed, method="naive"
                ),
                device,
            )
        )
    return statistics.median(times) * h


def machine(device="cpu") -> dict:
    """The one description of the machine a measurement ran on, stored beside its numbers: by the benchmarks,
    the pretraining records (tools/pretrain.py), the studies of lesson 06 and `pixelcnn-course train`.

    Keys: device (what ran the work), cpu (model name), cpu_cores, threads (PyTorch's intra-op threads),
    native_bf16, gpu (the GPU's name, or None without CUDA), torch, python, platform.
    """
    import os
    import platform

    device = torch.device(device)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    gpu = None
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(device if device.type == "cuda" else 0)
    return {
        "device": str(device),
        "cpu": cpu,
        "cpu_cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "native_bf16": cpu_has_bf16(),
        "gpu": gpu,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
