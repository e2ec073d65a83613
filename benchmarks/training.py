"""Training throughput (images/s through the real training step) on the device found: fp32 eager
against bf16 autocast, channels_last, torch.compile and the fast path (`train.fast_options`, what
`--fast` picks). Prints a table, writes a JSON of medians.

    python -m benchmarks.training                 # the UvA-sized model: 64 channels, 7 layers, 256 levels
    python -m benchmarks.training --model default # the course's default binary model

Each row: median images/s over --steps timed steps after --warmup untimed ones (compilation and
autotuning happen in the warm-up), with the device synchronised around every step.
"""

import argparse

import torch

from benchmarks.common import table, write
from course_lib import GatedPixelCNN, count_parameters
from course_lib.benchmark import machine, training_throughput
from course_lib.device import cpu_has_bf16, pick_device
from course_lib.train import fast_options

MODELS = {
    # about the size of the UvA deep-learning tutorial's model: 859k parameters, 256-way softmax
    "uva": dict(image_shape=(1, 28, 28), levels=256, channels=64, dilations=(1, 2, 1, 4, 1, 2, 1)),
    "default": dict(),
}


def variants(device, batch, compile_on_cpu=False):
    """(name, batch size, TrainConfig options) of each measured configuration on `device`."""
    rows = [("fp32 eager", batch, {})]
    cuda = device.type == "cuda"
    if cuda:
        bf16 = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        rows += [
            (f"{bf16}", batch, dict(precision=bf16)),
            (f"{bf16} + channels_last", batch, dict(precision=bf16, channels_last=True)),
            (f"{bf16} + channels_last + compile", batch, dict(precision=bf16, channels_last=True, compile=True)),
        ]
    elif device.type == "cpu":
        rows.append(("channels_last", batch, dict(channels_last=True)))
        if cpu_has_bf16():
            rows.append(("bf16", batch, dict(precision="bf16")))
        if compile_on_cpu:
            rows.append(("compile", batch, dict(compile=True)))
    fast = fast_options(device, batch)
    big = 8 * batch if cuda else batch  # a GPU wants big batches: 8x here (the CLI's --fast takes 4x)
    options = {k: v for k, v in fast.items() if k not in ("batch_size", "lr")}
    rows.append((f"fast path ({', '.join(f'{k}={v}' for k, v in options.items()) or 'fp32 eager'})", big, options))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="uva", choices=list(MODELS))
    p.add_argument("--batch-size", type=int, default=None, help="default: 128 on a GPU, 32 on a CPU")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--compile-on-cpu", action="store_true", help="also time torch.compile on a CPU (slow to build)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/training_<device>.json)")
    args = p.parse_args(argv)

    device = pick_device(args.device)
    batch = args.batch_size or (128 if device.type == "cuda" else 32)
    torch.manual_seed(0)
    model = GatedPixelCNN(**MODELS[args.model])
    print(
        f"GatedPixelCNN ({args.model}), {count_parameters(model):,} parameters, {model.levels} levels, "
        f"{'x'.join(map(str, model.image_shape))}, on {device}",
        flush=True,
    )
    results, rows = [], []
    for name, b, options in variants(device, batch, args.compile_on_cpu):
        r = training_throughput(model, batch_size=b, steps=args.steps, warmup=args.warmup, device=device, **options)
        results.append(
            {
                "name": name,
                "batch_size": b,
                "options": options,
                "images_per_s": r["images_per_s"],
                "step_seconds": r["step_seconds"],
            }
        )
        base = results[0]["images_per_s"]
        rows.append([name, b, f"{r['images_per_s']:.0f}", f"{r['images_per_s'] / base:.2f}x"])
        print(f"  {name}: {r['images_per_s']:.0f} images/s", flush=True)
    text = table(["configuration", "batch", "images/s", "vs fp32 eager"], rows)
    write(
        "training",
        device,
        {
            "benchmark": "training",
            "model": args.model,
            "config": model.config,
            "parameters": count_parameters(model),
            "machine": machine(device),
            "steps": args.steps,
            "warmup": args.warmup,
            "results": results,
            "table": text,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
