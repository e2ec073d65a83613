"""Honest speed measurements: warm up first, synchronise the device around every timed step, report medians."""
import copy
import statistics
import time

import torch

from .data import ImageDataset
from .train import TrainConfig, Trainer, pick_device


def synchronize(device):
    """Wait until every queued kernel on `device` has finished (GPU work is asynchronous)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


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
    trainer = Trainer(copy.deepcopy(model), data, config=TrainConfig(batch_size=batch_size, **options),
                      device=device, progress=False)
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
