"""Command line: `python -m course_lib {train,sample,evaluate} --help`.

`python -m course_lib train` with no arguments trains the default Gated PixelCNN on binarized
mnist-subset and writes checkpoint.pt, samples.png, completions.png and metrics.json to runs/default.
`python -m course_lib sample --pretrained binary` draws from a model shipped with the course.
"""

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

from . import benchmark, distributed
from .checkpoint import load_checkpoint, load_model
from .data import DATASETS, load_dataset
from .device import pick_device
from .errors import CourseError
from .likelihood import IndependentPixelModel, evaluate
from .models import MODELS, build_model, count_parameters
from .plotting import save_grid
from .sampling import occlude, sample
from .train import fast_options, fit, seed_everything
from .zoo import pretrained


def _number(kind, low, high=None, what="a number"):
    """An argparse type: a `kind` (int or float) in [low, high]; anything else stops with one sentence."""

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if value < low or (high is not None and value > high) or (kind is float and not math.isfinite(value)):
            bound = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"{text} is out of range: use {what} {bound}")
        return value

    return parse


COUNT = _number(int, 1, what="a whole number")  # epochs, batch size, images, channels
LEVELS = _number(int, 2, 256, what="a number of levels")


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} is out of range: use a positive number such as 1.0")
    return value


def _data_args(p, default=None):
    p.add_argument(
        "--data", default=default, choices=DATASETS, help="data set (default: mnist-subset, or the checkpoint's)"
    )
    p.add_argument("--levels", type=LEVELS, default=None, help="2 for binary images (default), up to 256")
    p.add_argument("--limit", type=COUNT, default=None, help="use only this many images of each split")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m course_lib", description="PixelCNN course: train, sample, evaluate."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model and write checkpoint, samples, completions and metrics")
    _data_args(t, "mnist-subset")
    t.add_argument("--model", default="gated", choices=list(MODELS), help="architecture (default: gated)")
    t.add_argument("--channels", type=COUNT, default=None, help="hidden channels (default: the model's default)")
    t.add_argument("--conditional", action="store_true", help="condition the model on class labels")
    t.add_argument("--epochs", type=COUNT, default=8)
    t.add_argument("--batch-size", type=COUNT, default=32)
    t.add_argument("--lr", type=_positive_float, default=2e-3)
    t.add_argument("--precision", default=None, choices=["fp32", "bf16", "fp16"], help="default: fp32 (or --fast's)")
    t.add_argument("--compile", action="store_true", help="torch.compile the model (worth it on a GPU)")
    t.add_argument("--channels-last", action="store_true", help="NHWC memory layout (faster convolutions on GPUs)")
    t.add_argument(
        "--fast",
        action="store_true",
        help="the fast path for the device: on CUDA bf16 + channels_last + compile and a 4x batch "
        "with 2x learning rate; on a CPU with native bf16, bf16 (see train.fast_options)",
    )
    t.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps")
    t.add_argument("--out", default="runs/default", help="output folder")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    t.add_argument(
        "--samples",
        type=_number(int, 0, what="a whole number"),
        default=16,
        help="number of samples to draw after training (0: none)",
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--tensorboard", action="store_true", help="log to OUT/tensorboard")

    s = sub.add_parser("sample", help="draw samples from a checkpoint into a PNG grid")
    source = s.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a checkpoint written by train")
    source.add_argument("--pretrained", metavar="NAME", help="a model shipped with the course (binary, levels256, ...)")
    s.add_argument("--n", type=COUNT, default=16)
    s.add_argument("--temperature", type=_positive_float, default=1.0)
    s.add_argument("--label", type=int, default=None, help="class to generate (conditional models)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto")
    s.add_argument("--out", default="samples.png")

    e = sub.add_parser("evaluate", help="test NLL (nats/image and bits/dim) of a checkpoint")
    e.add_argument("--checkpoint", required=True)
    _data_args(e)
    e.add_argument("--split", default="test", choices=["train", "test"])
    e.add_argument("--device", default="auto")
    return parser


def _writable_folder(folder):
    """Make `folder` (a Path) if needed; a CourseError naming the fix when it cannot be written to."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        writable = os.access(folder, os.W_OK | os.X_OK)
    except OSError as err:
        writable, why = False, err.strerror
    else:
        why = "permission denied"
    if not writable:
        raise CourseError(f"Cannot write to {folder} ({why}); pass --out with a folder you can write to.")
    return folder


def cmd_train(args):
    out = _writable_folder(Path(args.out))
    seed_everything(args.seed)
    levels = args.levels or 2
    train = load_dataset(args.data, "train", levels=levels, limit=args.limit)
    test = load_dataset(args.data, "test", levels=levels, limit=args.limit and max(1, args.limit // 4))
    config = dict(
        image_shape=train.image_shape, levels=levels, num_classes=train.num_classes if args.conditional else None
    )
    if args.channels:
        config["channels"] = args.channels
    model = build_model(args.model, **config)
    device = pick_device(args.device)
    rank, world_size, _ = distributed.world()
    say = print if rank == 0 else (lambda *a, **k: None)
    where = f"{world_size} processes ({'NCCL' if device.type == 'cuda' else 'gloo'})" if world_size > 1 else str(device)
    say(
        f"Training {type(model).__name__} ({count_parameters(model):,} parameters) on {train} for "
        f"{args.epochs} epochs on {where}.",
        flush=True,
    )
    start = time.perf_counter()

    def report(epoch, history):
        test_text = f", test {history['test_nats'][-1]:.2f} nats/image ({history['test_bpd'][-1]:.4f} bits/dim)"
        say(
            f"epoch {epoch + 1}/{args.epochs}: train {history['train_nats'][-1]:.2f} nats/image{test_text}, "
            f"{history['seconds'][-1]:.0f} s",
            flush=True,
        )

    speed = dict(batch_size=args.batch_size, lr=args.lr)
    if args.fast:
        speed = fast_options(device, args.batch_size, args.lr)
        say("--fast: " + ", ".join(f"{k}={v}" for k, v in speed.items()), flush=True)
    if args.precision:
        speed["precision"] = args.precision
    speed["compile"] = speed.get("compile", False) or args.compile
    speed["channels_last"] = speed.get("channels_last", False) or args.channels_last
    try:
        history = fit(
            model,
            train,
            test,
            device=device,
            checkpoint=out / "checkpoint.pt",
            resume=args.resume,
            epochs=args.epochs,
            seed=args.seed,
            on_epoch_end=report,
            **speed,
            log_dir=out / "tensorboard" if args.tensorboard else None,
        )
    except KeyboardInterrupt:
        say(_interrupted(out / "checkpoint.pt", args.epochs), file=sys.stderr, flush=True)
        raise
    train_seconds = time.perf_counter() - start
    if rank != 0:
        return  # rank 0 alone evaluates, samples and writes the outputs (fit has left the process group)
    result = evaluate(model, test)
    baseline = evaluate(IndependentPixelModel.fit(train), test)
    written = ["checkpoint.pt", *_write_samples(model, test, args, out, levels), "metrics.json"]
    metrics = {
        "data": args.data,
        "levels": levels,
        "model": args.model,
        "parameters": count_parameters(model),
        "epochs": len(history["epoch"]),
        "test_nats_per_image": result["nats"],
        "test_bits_per_dim": result["bpd"],
        "test_images": result["n_images"],
        "baseline_test_nats_per_image": baseline["nats"],
        "baseline_test_bits_per_dim": baseline["bpd"],
        "history": history,
        "processes": world_size,
        "options": speed,
        "train_seconds": train_seconds,
        "wall_seconds": time.perf_counter() - start,
        "device": _describe(device),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(
        f"Test NLL {result['nats']:.2f} nats/image ({result['bpd']:.4f} bits/dim); independent-pixel baseline "
        f"{baseline['nats']:.2f} nats/image. Wrote {', '.join(written)} to {out}."
    )


def _interrupted(path, epochs):
    """One line after Ctrl-C: which epoch the checkpoint holds and the command that resumes."""
    argv = [a for a in sys.argv[1:] if a != "--resume"] + ["--resume"]
    resume = "python -m course_lib " + " ".join(argv)
    try:
        done = load_checkpoint(path)["epoch"] + 1
    except CourseError:
        return f"Interrupted before the first epoch ended: no checkpoint was written. Start again with: {resume}"
    return f"Interrupted: {path} holds epoch {done} of {epochs}. Resume with: {resume}"


def _write_samples(model, test, args, out, levels):
    """samples.png: `args.samples` new images; completions.png: bottom halves of 8 test images, 3 times each.
    Returns the names of the files written (none for --samples 0)."""
    if args.samples <= 0:
        return []
    labels = torch.arange(args.samples) % test.num_classes if args.conditional else None
    samples = sample(model, args.samples, labels=labels, seed=args.seed)
    save_grid(samples, out / "samples.png", f"{args.samples} samples, {args.data}", levels=levels)
    picks = range(0, len(test), max(1, len(test) // 8))[:8]
    shown = torch.stack([test[i][0] for i in picks])
    repeats = 3
    given = occlude(shown.repeat_interleave(repeats, 0), "bottom")
    shown_labels = torch.stack([test[i][1] for i in picks]).repeat_interleave(repeats) if args.conditional else None
    done = sample(model, len(given[0]), given=given, labels=shown_labels, seed=args.seed)
    grid = torch.cat([shown[:, None], done.view(len(shown), repeats, *done.shape[1:])], 1).flatten(0, 1)
    save_grid(
        grid,
        out / "completions.png",
        "Bottom-half completions (column 1: the real test digit)",
        nrow=repeats + 1,
        levels=levels,
        xlabel="original, then completions",
        ylabel="test digit",
    )
    return ["samples.png", "completions.png"]


def cmd_sample(args):
    _writable_folder(Path(args.out).parent)  # before sampling, not after
    model = pretrained(args.pretrained) if args.pretrained else load_model(args.checkpoint)
    model = model.to(pick_device(args.device))
    labels = args.label if model.num_classes else None
    if model.num_classes and labels is None:
        labels = torch.arange(args.n) % model.num_classes
    images = sample(model, args.n, temperature=args.temperature, labels=labels, seed=args.seed)
    save_grid(images, args.out, f"{args.n} samples at temperature {args.temperature}", levels=model.levels)
    print(f"Wrote {args.n} samples to {args.out}.")


def cmd_evaluate(args):
    payload = load_checkpoint(args.checkpoint)
    data = payload.get("data", {})
    model = load_model(args.checkpoint).to(pick_device(args.device))
    name = args.data or data.get("name", "mnist-subset")
    dataset = load_dataset(
        name,
        args.split,
        levels=args.levels or model.levels,
        limit=args.limit,
        binarize=data.get("binarize", "threshold"),
    )
    result = evaluate(model, dataset)
    print(json.dumps({"data": name, "split": args.split, **result}, indent=2))


def _describe(device):
    """The device and machine in a few words, from the description the benchmarks store (benchmark.machine)."""
    info = benchmark.machine(device)
    if device.type == "cuda":
        return f"cuda ({info['gpu']})"
    return f"{device.type} ({info['cpu']}, {info['threads']} threads)"


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        {"train": cmd_train, "sample": cmd_sample, "evaluate": cmd_evaluate}[args.command](args)
    except CourseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
