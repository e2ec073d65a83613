# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Training on a GPU (and on whatever you have)
#
# Lessons 01 and 02 trained small models for a minute. Real PixelCNNs train for hours, so *how* you
# train starts to matter: on which device, in which precision, how fast, and how safely (a crash at
# hour five must not cost five hours).
#
# ## What you will learn
# - how `course_lib` picks a device (CUDA, Apple MPS, CPU) and what moves to it;
# - how to measure training speed honestly: warm-up, device synchronisation, medians;
# - what bf16 / fp16 mixed precision (with a gradient scaler), `channels_last` and `torch.compile` buy,
#   measured on this machine, repeated, with the spread shown;
# - the training loop opened up: loss, gradient clipping, learning-rate schedule, learning curves, overfitting;
# - checkpoints, exact resuming and seeds;
# - data-parallel training with `torchrun`, run here on two CPU processes, and how long full MNIST would take.
#
# **What ran for the stored output, and what did not.** The outputs saved with this lesson come from a
# 2-core AMD EPYC CPU without a GPU (the first cell prints the device and how busy the machine was). Every
# path a CPU can run was executed there: fp32, bf16, `channels_last`, fp16 with a gradient scaler,
# `torch.compile`, and a two-process data-parallel run over gloo. What needs a GPU was **not** executed in
# the stored output, and each such place is marked *GPU only* below: the `GPU fp32` timing (section 2),
# the GPU's fast path with its 4× batch (section 3), TF32 (a GPU setting), and multi-GPU training over NCCL
# (section 6). The H200 figures in section 7 are quoted from an earlier measurement, not measured here.
# On a machine with a GPU, the same cells run their GPU branches too.

# %% [markdown]
# ## 1 · Which device?
#
# `pick_device()` returns CUDA if PyTorch sees an NVIDIA GPU, else Apple's MPS, else the CPU. A model and
# the batches it sees must live on the same device: `model.to(device)` once, `x.to(device)` every batch.
# `fit` does both for you.

# %%
import inspect
import math
import os
import statistics
import time

import matplotlib.pyplot as plt
import torch

from course_lib import GatedPixelCNN, count_parameters, fit, load_dataset, pick, pick_device
from course_lib.device import cpu_has_bf16

device = pick_device()
has_gpu = device.type in ("cuda", "mps")
print(f"device: {device}" + ("" if has_gpu else "  (no GPU found: everything in this lesson runs on the CPU)"))
if device.type == "cuda":
    print(f"GPU: {torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} visible")
print(f"CPU threads used by PyTorch: {torch.get_num_threads()}")
print(
    f"load average over the last minute: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (above 0: others are busy)"
)
print(f"CPU computes bf16 natively (AVX512-BF16 or AMX): {cpu_has_bf16()}")

# %% [markdown]
# **Feeding the device.** A `DataLoader` with `num_workers > 0` prepares batches in background processes,
# and `pin_memory=True` puts them in page-locked memory so the copy to a GPU can overlap with compute
# (`x.to(device, non_blocking=True)`). Our data sets are small tensors already in memory, so on a CPU
# extra workers only add overhead; on a GPU with images decoded from disk they matter. `fit` pins memory
# automatically on CUDA and takes `num_workers=` if you need it.

# %% [markdown]
# ## 2 · Measuring speed honestly
#
# GPU kernels run *asynchronously*: `loss.backward()` returns long before the GPU has finished. A timer
# around it measures how fast Python queues work, not how fast the GPU does it. So we
# 1. run a few **warm-up** steps (memory allocation, cuDNN autotuning, compilation happen there),
# 2. **synchronise** the device before starting and before stopping the clock,
# 3. report the **median** of several steps (robust to a noisy neighbour on the machine),
# 4. **repeat** the whole measurement and show the spread: a shared machine can be 10-30% slower for a
#    minute, and a difference smaller than the spread is not a difference.
#
# `course_lib.benchmark.training_throughput` does exactly that through the real training step of `fit`.
# Here it is, printed from the library:

# %%
from course_lib.benchmark import training_throughput

print(inspect.getsource(training_throughput))

# %%
torch.manual_seed(0)
model = GatedPixelCNN()  # the default model: 1x28x28 binary images
batch = pick(fast=16, full=32)
steps = pick(fast=3, full=8)
print(f"default GatedPixelCNN: {count_parameters(model):,} parameters, batch {batch}")

results = {"CPU fp32": training_throughput(model, batch, steps=steps, device="cpu")}
if has_gpu:  # GPU only: not executed for the stored output
    results["GPU fp32"] = training_throughput(model, batch, steps=steps, device=device)
for name, r in results.items():
    print(f"{name:10s} {r['images_per_s']:8.0f} images/s (median of {len(r['step_seconds'])} steps)")

# %% [markdown]
# One measurement of the CPU (a GPU row appears only where a GPU is present; the stored output has none).
# Section 3 repeats the measurements and shows their spread.
#
# **What dominates where?** Count the arithmetic: every convolution does $2 \cdot C_\text{in} \cdot k_h k_w$
# floating-point operations per output value (a masked kernel's zeros are multiplied too), and a training
# step costs about three forward passes (the backward pass computes two gradients per layer).


# %%
def forward_flops(model):
    """Floating-point operations of one forward pass of one image through the model's convolutions."""
    counts = []

    def count(module, inputs, output):  # returns None: the hook only watches
        counts.append(2 * output.numel() * module.in_channels // module.groups * math.prod(module.kernel_size))

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(1, *model.image_shape, dtype=torch.long))
    for hook in hooks:
        hook.remove()
    return sum(counts)


flops = forward_flops(model)
cpu_ips = results["CPU fp32"]["images_per_s"]
print(f"forward pass: {flops / 1e9:.2f} GFLOP per image")
print(f"training step at batch {batch}: about {3 * flops * batch / 1e9:.1f} GFLOP (3 forward passes' worth)")
print(f"measured CPU fp32 throughput {cpu_ips:.0f} images/s -> about {3 * flops * cpu_ips / 1e9:.0f} GFLOP/s")

# %% [markdown]
# That is the arithmetic a CPU must do for every step, and the printed rate is what this machine achieved on
# it. On a GPU the same arithmetic takes a small fraction of the time; for a model this small, the time goes into *launching* hundreds of small
# kernels and moving memory. That is why on a GPU bigger batches, fewer launches (`torch.compile`) and
# lighter memory traffic (bf16) help so much, and why most of them help little on a CPU. bf16 on a CPU
# depends on the chip: one that computes in bf16 natively (AVX512-BF16 or AMX, on recent server chips) cuts
# the arithmetic itself, and one without it (the first cell printed which this is) converts every number
# to and from bf16 and runs *slower* than fp32. The next section measures it.

# %% [markdown]
# ## 3 · Mixed precision, channels_last, compile
#
# - **bf16 autocast** runs matrix multiplies and convolutions in 16-bit *brain floats* (same exponent range
#   as float32, fewer mantissa bits): half the memory traffic, and tensor cores on recent GPUs. No loss
#   scaling is needed. `fit(..., precision="bf16")`.
# - **fp16 autocast** has a much smaller range (the largest fp16 number is 65,504). Gradients too small
#   for it become zero, so the loss is multiplied by a large factor before `backward()` and the gradients
#   divided again before the step: a *gradient scaler*. If the scaled gradients overflow, the scaler
#   skips that step and halves the factor. `fit(..., precision="fp16")` runs on CUDA and on the CPU.
# - **channels_last** stores images as (B, H, W, C) in memory, the layout GPU convolution kernels prefer.
# - **torch.compile** fuses the many small operations of the gated units into fewer kernels (C++ on a
#   CPU, Triton on a GPU). It costs a compilation up front, measured below, and pays off only over a
#   run long enough to earn that time back.
#
# The log-likelihood itself is always computed in float32 (`course_lib.train.Trainer.loss`). We measure
# rather than assert: which of these helps depends on the hardware.
#
# Three more things to know before training on a GPU:
#
# - **TF32** (*GPU only*, nothing here runs it). On NVIDIA GPUs from the Ampere generation on, PyTorch runs
#   "fp32" *convolutions* in TF32 by default (`torch.backends.cudnn.allow_tf32 = True`: inputs rounded to a
#   10-bit mantissa inside the tensor cores), while fp32 matrix multiplies stay full precision unless you
#   call `torch.set_float32_matmul_precision("high")`. A GPU's "fp32" row is therefore already partly
#   reduced precision.
# - **Memory.** What fills a GPU is mostly activations: every layer keeps its outputs for the backward
#   pass, batch × channels × H × W numbers per feature map. On "CUDA out of memory", halve the batch, train
#   in bf16 (half the bytes per activation), or accumulate gradients over several small batches before each
#   optimiser step (the same effective batch in less memory).
# - **Profiling.** Before optimising, look: `torch.profiler.profile(...)` lists the time spent per
#   operator on the CPU and the GPU, and shows whether convolutions, kernel launches or data loading dominate.
#
# **The fast path.** `fast_options(device)` bundles what pays on each device; it is what
# `python -m course_lib train --fast` uses. On CUDA (*GPU only*, not executed for the stored output):
# bf16 (fp16 with a scaler on cards without bf16), channels_last, compile, and a 4× larger batch with twice
# the learning rate (the square-root rule: a GPU is underused by small batches, and a bigger batch averages
# away gradient noise, so it takes bigger steps). On a CPU with native bf16 arithmetic (AVX512-BF16 or AMX,
# found on recent server CPUs): bf16 alone. Elsewhere, plain fp32.

# %%
from course_lib.train import fast_options

fast = fast_options(device, batch)
fast_batch = fast.pop("batch_size")
fast.pop("lr")
print(f"fast path on this {device.type}: {fast or 'fp32 eager (nothing faster here)'}, batch {fast_batch}")

# %% [markdown]
# **What compiling costs.** The first step of a compiled model traces the Python code, generates fused
# kernels and compiles them (with the C++ compiler on a CPU). We give the compiler an empty cache, so
# the time below is the whole compilation; a second run on the same machine reuses the cache and starts
# much sooner.

# %%
import logging
import tempfile

os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp()  # an empty compile cache
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # a harmless note when CUDA is absent
start = time.perf_counter()
first = training_throughput(model, batch, steps=1, warmup=1, device=device, compile=True)
compile_seconds = time.perf_counter() - start - sum(first["step_seconds"])
print(f"torch.compile on {device.type}: the first training step, compilation included, took {compile_seconds:.0f} s")

# %% [markdown]
# **Every variant, measured three times.** Each variant is timed through the real training step (median
# of its steps), and the whole round is repeated, variants interleaved, so that a slow spell of a shared
# machine hits all of them alike. The bars show the median of the repeats, the whiskers the fastest and
# slowest repeat. A variant is called faster or slower than fp32 below only if *every* repeat of it beat
# (or lost to) *every* repeat of fp32; otherwise the ranges overlap and the measurement shows no difference.

# %%
variants = {
    "fp32": (batch, {}),
    "bf16": (batch, {"precision": "bf16"}),
    "fp16 + gradient scaler": (batch, {"precision": "fp16"}),
    "fp32 + channels_last": (batch, {"channels_last": True}),
    "fp32 + compile": (batch, {"compile": True}),
}
if device.type == "mps":  # the gradient scaler runs on CUDA and on the CPU
    del variants["fp16 + gradient scaler"]
fast_name = next((name for name, (b, o) in variants.items() if (b, o) == (fast_batch, fast)), None)
if fast_name is None:  # GPU only: the fast path is a combination of its own
    fast_name = "fast path"
    variants[fast_name] = (fast_batch, fast)
repeats = pick(fast=2, full=3)
timed_steps = pick(fast=2, full=5)
runs = {name: [] for name in variants}
for _ in range(repeats):
    for name, (b, options) in variants.items():
        r = training_throughput(model, b, steps=timed_steps, warmup=2, device=device, **options)
        runs[name].append(r["images_per_s"])
speed = {name: statistics.median(v) for name, v in runs.items()}


def versus_fp32(name):
    if min(runs[name]) > max(runs["fp32"]):
        return "faster than fp32 in every repeat"
    if max(runs[name]) < min(runs["fp32"]):
        return "slower than fp32 in every repeat"
    return "ranges overlap fp32's: no difference shown"


for name, v in runs.items():
    print(
        f"{name:23s} {speed[name]:6.0f} images/s  (min {min(v):4.0f}, max {max(v):4.0f}; "
        f"{speed[name] / speed['fp32']:.2f}x fp32)  " + ("" if name == "fp32" else versus_fp32(name))
    )
print(f"the fast path on this {device.type} is the row '{fast_name}'")
saved = batch / speed["fp32"] - batch / speed["fp32 + compile"]  # seconds per step
if versus_fp32("fp32 + compile").startswith("faster"):
    print(
        f"compiling cost {compile_seconds:.0f} s; each compiled step saves {saved:.3f} s: it pays back after ", end=""
    )
    print(
        f"about {compile_seconds / saved:,.0f} steps ({compile_seconds / saved * batch / 60_000:.1f} epochs of MNIST)"
    )
else:
    print(f"compiling cost {compile_seconds:.0f} s, and no speed-up was shown: here it does not pay")

labels = [f"{name} (fast path)" if name == fast_name else name for name in runs]
low = [speed[n] - min(v) for n, v in runs.items()]
high = [max(v) - speed[n] for n, v in runs.items()]
fig, ax = plt.subplots(figsize=(7, 3))
ax.barh(labels, list(speed.values()), xerr=[low, high], capsize=4, color="tab:blue")
ax.set_title(f"Training throughput on {device.type.upper()}, batch {batch}: median of {repeats} repeats, min-max")
ax.set_xlabel("images per second")
ax.set_ylabel("variant")
plt.tight_layout()
plt.show()

# %% [markdown]
# Read the chart with its whiskers and the verdict printed beside each row. Whether bf16 helps depends on
# the chip (the first cell printed whether this one computes bf16 natively). fp16 runs on a CPU, but most
# CPUs have no fp16 arithmetic and convert every number to and from 16 bits, which is slow. For a model
# this small on a CPU, `channels_last` and compiling change the speed by the printed ratios, and the last
# line weighs what the compiled steps save against what compiling cost: compiling pays only if the
# compiled steps are faster *and* the run is long. On a GPU these switches are expected to matter much
# more (section 7 quotes a measurement).
#
# **The gradient scaler at work.** Our loss is a sum over 784 pixels, so its gradients are large, and
# what threatens fp16 here is overflow rather than underflow. Watch the scaler find its factor in the
# first steps of an fp16 run (on a small model, to keep it quick):

# %%
from course_lib.train import TrainConfig, Trainer

digits = load_dataset("mnist-subset", "train", limit=16)
x, y = next(iter(torch.utils.data.DataLoader(digits, batch_size=16)))
torch.manual_seed(0)
settings = TrainConfig(precision="fp16", batch_size=16, clip=None)  # unclipped: the gradients printed are raw
scaled = Trainer(GatedPixelCNN(channels=16), digits, config=settings, device="cpu")
print(f"largest fp16 number: {torch.finfo(torch.float16).max:,.0f}")
for k in range(30):
    factor = scaled.scaler.get_scale()
    loss = scaled.step(x, y, lr=1e-3)
    if scaled.scaler.get_scale() < factor:
        print(f"step {k + 1:2d}: scale {factor:7.0f}: scaled gradients overflow -> step skipped, scale halved")
    else:
        largest = max(p.grad.abs().max().item() for p in scaled.model.parameters())
        print(f"step {k + 1:2d}: scale {factor:7.0f}: gradients fit -> Adam step taken (loss {loss:.1f} nats)")
        print(f"largest weight gradient {largest:.0f}; times the scale {largest * factor:,.0f}: within fp16's range")
        break

# %% jupyter={"source_hidden": true} tags=["claims"]
from course_lib.config import claims_checked

assert all(math.isfinite(v) and v > 0 for v in speed.values())
assert scaled.scaler.get_scale() < 2.0**16, "the first fp16 steps overflow and are skipped"
if claims_checked():
    assert repeats == 3

# %% [markdown]
# **Does bf16 cost accuracy?** Speed is worth nothing if the model gets worse. `benchmarks/precision.py`
# (`make bench-precision`) trains the default model for the CLI's 8 epochs twice, same seed, in fp32 and in
# bf16, and scores both in fp32. On a 2-core CPU with native bf16 (AVX512-BF16; the README's benchmark
# machine), it measured 0.1230 bits/dim for fp32 (266 s of training) and 0.1229 for bf16 (158 s): 0.06%
# apart. Autocast keeps the weights, the
# optimizer state and the loss in float32, so only the products inside layers lose precision.

# %% [markdown]
# ## 4 · The training loop, opened up
#
# `fit` builds a `Trainer` (`course_lib/train.py`) and runs it. One step is these methods, printed from the
# library: the forward pass under autocast (a no-op in fp32), the loss in float32 (nats per image, averaged
# over the batch), backward (through the gradient scaler for fp16), **clipping** of the gradient norm (no
# single step can explode), and Adam's step with the learning rate set for this step.
#
# %%
for method in (Trainer.autocast, Trainer.loss, Trainer.step):
    print(inspect.getsource(method))

# %% [markdown]
# The **learning rate** warms up linearly (optional) and then decays along a cosine to zero: large steps
# early, small careful ones at the end. After each epoch, `fit` evaluates *every* test image and records
# train and test nats per image and test bits/dim (nats per image divided by 784 · ln 2: bits per pixel).
#
# Let us train on a deliberately small training set to watch **overfitting**: the training loss keeps
# falling while the test loss stops improving and creeps back up, because the model starts memorising its
# few images. Both are shown in bits/dim below.

# %%
from course_lib.train import learning_rate

cfg = TrainConfig(epochs=10, lr=2e-3, warmup_steps=20)
lrs = [learning_rate(cfg, s, 400) for s in range(400)]
fig, ax = plt.subplots(figsize=(6, 2.5))
ax.plot(lrs)
ax.set_title("Learning-rate schedule: linear warm-up, then cosine decay")
ax.set_xlabel("training step")
ax.set_ylabel("learning rate")
plt.tight_layout()
plt.show()

# %% tags=["nbval-check-output"]
print([round(learning_rate(cfg, s, 400), 6) for s in (0, 19, 20, 210, 399)])

# %% [markdown]
# We train with the fast path measured above (`**fast_options(device, ...)`).

# %%
from course_lib.plotting import plot_history

small_train = load_dataset("mnist-subset", "train", limit=pick(fast=100, full=400))
test = load_dataset("mnist-subset", "test", limit=pick(fast=200, full=500))
torch.manual_seed(0)
overfit_model = GatedPixelCNN(channels=pick(fast=16, full=32))
start = time.perf_counter()
history = fit(
    overfit_model,
    small_train,
    test,
    epochs=pick(fast=8, full=30),
    device=device,
    progress=False,
    **fast_options(device, batch_size=16, lr=3e-3),
)
print(f"{len(small_train)} training images, {history['epoch'][-1]} epochs in {time.perf_counter() - start:.0f} s")
bpd = {k: [v / (784 * math.log(2)) for v in history[k]] for k in ("train_nats", "test_nats")}
gaps = [test - train for train, test in zip(bpd["train_nats"], bpd["test_nats"])]
best = min(range(len(gaps)), key=bpd["test_nats"].__getitem__)
print(f"best test NLL {bpd['test_nats'][best]:.4f} bits/dim at epoch {best + 1}")
for epoch in sorted({1, *range(5, len(gaps) + 1, 5), len(gaps)}):
    train, test = bpd["train_nats"][epoch - 1], bpd["test_nats"][epoch - 1]
    print(f"epoch {epoch:2d}: train {train:.4f}, test {test:.4f} bits/dim, gap {test - train:+.4f}")
plot_history(history, dims=784, title=f"Overfitting: {len(small_train)} training images")
plt.show()

# %% [markdown]
# The gap between the curves is the generalisation gap. Read it off the printed table. In epoch 1 the
# training loss lies *above* the test loss: it is the average over the epoch's steps, taken while the
# model was still improving fast, whereas the test loss is measured at the end of the epoch. Around
# epoch 5 the two curves lie almost on top of each other (the model is learning what all digits share,
# which helps the test images as much as the training ones). The gap opens only in the later epochs,
# when the training loss keeps falling and the test loss flattens and then rises again after its best
# epoch: the model spends its capacity on memorising these 400 images. Early stopping (keeping the
# checkpoint with the best test loss, at the printed epoch), more training images and a smaller model
# are the usual remedies.

# %%
assert history["train_nats"][-1] < history["train_nats"][0], "training must reduce the training loss"

# %% jupyter={"source_hidden": true} tags=["claims"]
from course_lib.config import claims_checked

if claims_checked():  # the prose's claims, on the course's own full-size build
    assert len(small_train) == 400
    assert gaps[0] < 0, "in epoch 1 the training average lies above the test loss"
    assert abs(gaps[4]) < 0.4 * gaps[-1], "around epoch 5 the curves lie close together"
    assert gaps[-1] >= 0.8 * max(gaps), "the gap is widest at the end"
    assert best + 1 < len(gaps) and bpd["test_nats"][-1] > bpd["test_nats"][best], "the test loss rises again"

# %% [markdown]
# ## 5 · Checkpoints, resuming and seeds
#
# `fit(..., checkpoint=path)` writes a checkpoint after every epoch: the weights, the configuration that
# rebuilds the model, the optimizer state and the history. It writes to a temporary file and renames it,
# so a crash mid-write never leaves half a file where a good one was, and a run that fails (a NaN loss)
# stops *before* writing. The file loads with `torch.load(path, weights_only=True)`, which cannot run code.
#
# Every epoch shuffles with a seed made from `(seed, epoch)`, so a run resumed from its checkpoint
# takes exactly the steps the uninterrupted run would have taken. Let us check that on the CPU: train 3
# epochs straight; then train, "crash" after epoch 1, and resume.

# %%
import tempfile
from pathlib import Path

from course_lib import load_model

tiny_train = load_dataset("mnist-subset", "train", limit=pick(fast=64, full=256))
settings = dict(epochs=3, batch_size=32, lr=3e-3, device="cpu", seed=7, progress=False)
folder = Path(tempfile.mkdtemp())


def new_model():
    torch.manual_seed(1)
    return GatedPixelCNN(channels=8, dilations=(1, 2))


straight = new_model()
fit(straight, tiny_train, checkpoint=folder / "straight.pt", **settings)


def crash_after_first_epoch(epoch, history):
    if epoch == 0:
        raise KeyboardInterrupt("simulated crash")


try:
    fit(new_model(), tiny_train, checkpoint=folder / "resumed.pt", on_epoch_end=crash_after_first_epoch, **settings)
except KeyboardInterrupt as crash:
    print(f"interrupted: {crash}")
resumed = new_model()
fit(resumed, tiny_train, checkpoint=folder / "resumed.pt", resume=True, **settings)
same = all(torch.equal(a, b) for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()))
print("resumed run ends with exactly the same weights:", same)
rebuilt = load_model(folder / "resumed.pt")
print("the checkpoint rebuilds its own model:", type(rebuilt).__name__, rebuilt.config["dilations"])

# %%
assert same
assert torch.load(folder / "resumed.pt", weights_only=True)["epoch"] == 2

# %% [markdown]
# (On a GPU, some kernels are not bit-for-bit deterministic, so a resumed GPU run ends *statistically*
# equivalent rather than identical; `torch.use_deterministic_algorithms(True)` trades speed for exactness.)

# %% [markdown]
# ## 6 · Beyond one GPU: data parallelism with `torchrun`
#
# With N GPUs, `torchrun` starts N processes, one per GPU. Each holds a full copy of the model and takes
# its own slice of every **global batch**; during `backward()`, DistributedDataParallel averages the
# gradients over the processes (an *all-reduce*), so every copy takes the same step, as one process would
# on the whole global batch.
#
# ```bash
# torchrun --nproc_per_node 4 -m course_lib train --batch-size 256 --lr 4e-3   # 4 GPUs: NCCL (GPU only)
# torchrun --nproc_per_node 2 -m course_lib train --device cpu                # 2 CPU processes: gloo
# ```
#
# - `--batch-size` is the **global** batch: 256 over 4 GPUs is 64 per GPU.
# - A bigger global batch means fewer, less noisy steps per epoch; a common rule of thumb scales the
#   learning rate with the batch (linearly for SGD, more gently, about with its square root, for Adam), with a
#   warm-up.
# - Each process draws the same shuffled order and takes every N-th image (`course_lib.distributed.ShardSampler`),
#   only rank 0 writes checkpoints and logs, and evaluation splits the test set so that every image is
#   scored exactly once.
#
# The same code runs on CPU processes, which talk over **gloo** instead of NCCL, so we can watch it here.
# The script below trains a small model with `fit`; each process writes down what it saw and the weights
# it ended with. We run it once as a single process and once under `torchrun` as two processes, each
# limited to one CPU thread (torchrun's default), so that the two processes share the machine's cores
# as two GPUs would share a job.

# %%
import json
import subprocess
import sys

script = folder / "ddp_demo.py"
script.write_text("""
import json
import sys

import torch
import torch.distributed as dist

from course_lib import GatedPixelCNN, fit, load_dataset
from course_lib.distributed import ShardSampler, world

n_images, epochs, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rank, size, _ = world()  # from torchrun's environment variables; (0, 1, 0) without torchrun
train = load_dataset("mnist-subset", "train", limit=n_images)
torch.manual_seed(0)  # every process starts from the same weights
model = GatedPixelCNN(channels=16, dilations=(1, 2))
backend = []
history = fit(
    model, train, epochs=epochs, batch_size=32, lr=3e-3, device="cpu", seed=0, progress=False,
    on_epoch_end=lambda epoch, h: backend.append(dist.get_backend() if dist.is_initialized() else "-"),
)
torch.save(torch.cat([p.detach().flatten() for p in model.parameters()]), f"{out}/weights_{size}_{rank}.pt")
mine = ShardSampler(len(train), seed=0, epoch=0, rank=rank, world_size=size)
report = dict(rank=rank, processes=size, backend=backend[0], threads=torch.get_num_threads(),
              images_per_epoch=len(mine), first_images=mine.indices()[:4],
              train_nats=history["train_nats"], seconds=sum(history["seconds"]))
with open(f"{out}/report_{size}_{rank}.json", "w") as f:
    json.dump(report, f)
""")

n_images, epochs = pick(fast=128, full=1024), pick(fast=1, full=3)
jobs = {
    1: [sys.executable, str(script)],
    2: [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
}
wall = {}
for processes, command in jobs.items():
    start = time.perf_counter()
    job = subprocess.run(
        [*command, str(n_images), str(epochs), str(folder)],
        env={**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"},
        capture_output=True,
        text=True,
    )
    wall[processes] = time.perf_counter() - start
    assert job.returncode == 0, job.stderr[-2000:]

reports = [json.loads((folder / f"report_{n}_{r}.json").read_text()) for n, r in ((1, 0), (2, 0), (2, 1))]
print(f"{n_images} training images, {epochs} epoch(s), global batch 32")
print("processes rank backend threads images/epoch first images        train NLL per epoch (nats/image)")
for r in reports:
    nats = ", ".join(f"{v:.4f}" for v in r["train_nats"])
    print(
        f"{r['processes']:9d} {r['rank']:4d} {r['backend']:>7s} {r['threads']:7d} {r['images_per_epoch']:12d} "
        f"{str(r['first_images']):19s} {nats}"
    )
w1, w2a, w2b = (torch.load(folder / f"weights_{n}_{r}.pt") for n, r in ((1, 0), (2, 0), (2, 1)))
print(f"rank 0 and rank 1 end with bit-for-bit identical weights: {torch.equal(w2a, w2b)}")
print(
    f"two processes vs one: largest weight difference {(w1 - w2a).abs().max():.1e} (weights up to {w1.abs().max():.2f})"
)
train_s = {1: reports[0]["seconds"], 2: max(reports[1]["seconds"], reports[2]["seconds"])}
for n in (1, 2):
    print(f"{n} process(es): training {train_s[n]:5.1f} s, whole job with start-up {wall[n]:5.1f} s")

# %% [markdown]
# What the table shows:
#
# - **Each process trained on half the data.** Both ranks drew the same shuffled order as the single
#   process (its first four images are printed) and took every second image of it: rank 0 the 1st, 3rd,
#   ..., rank 1 the 2nd, 4th, ...
# - **The losses agree.** The per-epoch training loss printed by each rank is the all-reduced mean over
#   both processes' images, so it is the same on both ranks and matches the single process up to float
#   rounding.
# - **The weights agree.** Every step, DDP averaged the gradients over the two processes, so both ranks
#   took identical steps and ended bit for bit equal. Against the single process they differ slightly (the
#   printed largest difference): the gradients were summed in another order, and such rounding
#   differences carry over from step to step.
# - **The time.** Two processes, one core each, split every batch, so each computes half as much per step;
#   against that, they exchange gradients after every backward pass. Both jobs also pay for starting
#   Python and loading PyTorch (the difference between the two columns), once per process. With a model
#   and data this small, on one shared 2-core CPU, these timings are single and noisy: they show how the
#   pieces fit together, not how well data parallelism scales. It is meant to pay on GPUs, where each
#   process has a device of its own, NCCL moves the gradients, and a large model spends most of each
#   step computing.
#
# The same run over several GPUs (*GPU only*: it runs only where at least two GPUs are visible, and did
# not run for the stored output):

# %%
n_gpus = torch.cuda.device_count()
if n_gpus > 1:  # GPU only
    job = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n_gpus}", "-m"]
        + ["course_lib", "train", "--epochs", "1", "--samples", "0", "--batch-size", str(64 * n_gpus)]
        + ["--out", str(folder / "ddp")],
        capture_output=True,
        text=True,
    )
    print(job.stdout[-1500:])
    assert job.returncode == 0, job.stderr[-2000:]
else:
    print(f"{n_gpus} GPU(s) visible: this multi-GPU run needs two or more, so it did not run here.")

# %% jupyter={"source_hidden": true} tags=["claims"]
assert [r["backend"] for r in reports] == ["-", "gloo", "gloo"]
assert reports[1]["train_nats"] == reports[2]["train_nats"] and torch.equal(w2a, w2b)
order = reports[0]["first_images"]
assert order[0::2] == reports[1]["first_images"][:2] and order[1::2] == reports[2]["first_images"][:2]
assert 0 < (w1 - w2a).abs().max() < 1e-3 * w1.abs().max(), "equal up to float rounding"
assert all(r["threads"] == 1 for r in reports)

# %% [markdown]
# ## 7 · How long would full MNIST take?
#
# Full MNIST has 60,000 training images. From the throughput measured in section 3 (median of the repeats;
# the whiskers are the fastest and slowest repeat) we can estimate one epoch, and the 50+ epochs a
# paper-quality model needs.
#
# For a GPU we quote, rather than invent. The grey rows come from the course's own benchmark, run earlier
# on **one NVIDIA H200 with PyTorch 2.11**, not on this machine, and not re-run for this lesson. It
# measured a bigger model than ours, a UvA-tutorial-sized gated PixelCNN (852,160 parameters, 256-way
# output, against the 152,545-parameter binary model above): about **9,900 images/s** in fp32 eager mode
# at batch 128, and about **37,800 images/s** with bf16 autocast, `channels_last` and `torch.compile` at
# batch 1024; drawing 64 images with the naive sampler took about 2.1 s there.

# %%
rows = [("this CPU, fp32, measured", runs["fp32"])]
if fast_name != "fp32":
    rows.append((f"this {device.type.upper()}, fast path ({fast_name}), measured", runs[fast_name]))
rows += [("H200 fp32, batch 128 (quoted, 852k model)", [9_900]), ("H200 bf16+compile, batch 1024 (quoted)", [37_800])]
hours = {name: [50 * 60_000 / ips / 3600 for ips in v] for name, v in rows}
for name, v in rows:
    ips = statistics.median(v)
    print(
        f"{name:48s} {ips:7.0f} images/s -> one epoch {60_000 / ips:7.1f} s, 50 epochs {50 * 60_000 / ips / 3600:6.2f} h"
    )

fig, ax = plt.subplots(figsize=(7, 3))
names = list(hours)
middle = [statistics.median(hours[name]) for name in names]
colours = ["gray" if "quoted" in name else "tab:orange" for name in names]
ax.barh(range(len(names)), middle, color=colours)
ax.set_yticks(range(len(names)), names)
for k, name in enumerate(names):  # whiskers on the measured rows: fastest and slowest repeat
    if "quoted" not in name:
        spread = [[middle[k] - min(hours[name])], [max(hours[name]) - middle[k]]]
        ax.errorbar(middle[k], k, xerr=spread, color="black", capsize=4)
ax.set_xscale("log")
ax.set_title("Estimated time for 50 epochs of full MNIST (grey: another model, quoted)")
ax.set_xlabel("hours (log scale)")
ax.set_ylabel("hardware")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Recap
# - `pick_device()` chooses CUDA, MPS or the CPU; `fit` moves model and batches and pins memory on CUDA.
# - Time work only after warm-up and with synchronisation; report medians, repeat, and show the spread:
#   a difference inside the spread is no difference.
# - bf16 autocast, fp16 with a gradient scaler, `channels_last` and `torch.compile` are switches of `fit`,
#   and all of them ran on this CPU. bf16 helps a CPU with native bf16 and slows one without it; fp16 runs
#   on a CPU but slowly, and its scaler skips the first steps while it finds a factor at which the
#   gradients fit; compiling cost its printed time up front. A GPU is where they are expected to pay most
#   (section 7 quotes an H200 measurement; no GPU ran for the stored output).
#   `fast_options(device)` (the CLI's `--fast`) picks them per device.
# - The loop: mean NLL per image, clipping, warm-up + cosine learning rate, full test evaluation each epoch;
#   watch the train/test gap for overfitting.
# - Checkpoints are atomic, safe to load, rebuild their model, and resume to exactly the same weights on a CPU.
# - `torchrun --nproc_per_node N -m course_lib train` trains data-parallel; `--batch-size` is global. Two
#   gloo processes on this CPU took the same steps as one process (up to float rounding); the NCCL
#   multi-GPU run is *GPU only* and did not run here.

# %% [markdown]
# ## References
#
# - Micikevicius et al. (2018), *Mixed Precision Training*, ICLR, arXiv:1710.03740: fp16 with loss scaling; and the PyTorch documentation on automatic mixed precision (`torch.autocast`) and on CUDA semantics (TF32).
# - Kingma, Ba (2015), *Adam: A Method for Stochastic Optimization*, ICLR; Loshchilov, Hutter (2017), *SGDR: Stochastic Gradient Descent with Warm Restarts*, ICLR (the cosine schedule).
# - van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves, Kavukcuoglu (2016), *Conditional Image Generation with PixelCNN Decoders*, NeurIPS, arXiv:1606.05328: the Gated PixelCNN, its vertical and horizontal stacks, and class conditioning.

# %% [markdown]
# ## Exercises
# The graded notebook `exercises/03_training_on_gpu.ipynb` (its solved twin is in `solutions/`) has 5 tasks
# worth 10 points; the check cell under each task tells you as you go whether your code is right, and
# `pixelcnn-grade` grades the whole notebook.
# - **Task 1 · Pick a device** (1 point). Write `pick_device(device=None) -> torch.device`.
# - **Task 2 · One training step with mixed precision** (3 points). Write
#   `train_step(model, optimizer, x, *, precision="bf16", clip=1.0) -> float`.
# - **Task 3 · Evaluate every test image** (3 points). Write
#   `evaluate_nll(model, dataset, batch_size=256) -> dict` returning
#   `{"nats": ..., "bpd": ..., "n_images": ...}`.
# - **Task 4 · Save a checkpoint atomically** (2 points). Write `save_checkpoint_atomically(payload, path)`.
# - **Task 5 · Resume from a checkpoint** (1 point). Write `resume(model, optimizer, path) -> int`, the
#   epoch to continue from.
