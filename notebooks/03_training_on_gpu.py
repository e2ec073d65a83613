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
# - what bf16 / fp16 mixed precision, `channels_last` and `torch.compile` buy, measured on this machine
#   (fp16 and compile only where there is a GPU);
# - the training loop opened up: loss, gradient clipping, learning-rate schedule, learning curves, overfitting;
# - checkpoints, exact resuming and seeds;
# - data-parallel training on several GPUs with `torchrun`, and how long full MNIST would take here.

# %% [markdown]
# ## 1 · Which device?
#
# `pick_device()` returns CUDA if PyTorch sees an NVIDIA GPU, else Apple's MPS, else the CPU. A model and
# the batches it sees must live on the same device: `model.to(device)` once, `x.to(device)` every batch.
# `fit` does both for you.

# %%
import inspect
import math
import time

import matplotlib.pyplot as plt
import torch

from course_lib import GatedPixelCNN, count_parameters, fit, is_fast, load_dataset, pick, pick_device
from course_lib.device import cpu_has_bf16

device = pick_device()
has_gpu = device.type in ("cuda", "mps")
print(f"device: {device}" + ("" if has_gpu else "  (no GPU found: everything in this lesson runs on the CPU)"))
if device.type == "cuda":
    print(f"GPU: {torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} visible")
print(f"CPU threads used by PyTorch: {torch.get_num_threads()}")
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
# 3. report the **median** of several steps (robust to a noisy neighbour on the machine).
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
if has_gpu:
    results["GPU fp32"] = training_throughput(model, batch, steps=steps, device=device)
for name, r in results.items():
    print(f"{name:10s} {r['images_per_s']:8.0f} images/s (median of {len(r['step_seconds'])} steps)")

# %% [markdown]
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
# - **fp16 autocast** has a smaller range: small gradients underflow to zero, so the loss is multiplied by a
#   large factor before `backward()` and the gradients divided again before the step (a *gradient scaler*).
#   `fit(..., precision="fp16")`, CUDA only.
# - **channels_last** stores images as (B, H, W, C) in memory, the layout GPU convolution kernels prefer.
# - **torch.compile** fuses the many small operations of the gated units into fewer kernels; it costs a
#   compilation up front (tens of seconds on a GPU machine, minutes on a small CPU) and pays off over a long
#   run. We measure it only when a GPU is present.
#
# The log-likelihood itself is always computed in float32 (`course_lib.train.Trainer.loss`). We measure
# rather than assert: which of these helps depends on the hardware.
#
# Three more things to know before training on a GPU:
#
# - **TF32.** On NVIDIA GPUs from the Ampere generation on, PyTorch runs "fp32" *convolutions* in TF32 by
#   default (`torch.backends.cudnn.allow_tf32 = True`: inputs rounded to a 10-bit mantissa inside the
#   tensor cores), while fp32 matrix multiplies stay full precision unless you call
#   `torch.set_float32_matmul_precision("high")`. A GPU's "fp32" row is therefore already partly reduced
#   precision.
# - **Memory.** What fills a GPU is mostly activations: every layer keeps its outputs for the backward
#   pass, batch × channels × H × W numbers per feature map. On "CUDA out of memory", halve the batch, train
#   in bf16 (half the bytes per activation), or accumulate gradients over several small batches before each
#   optimiser step (the same effective batch in less memory).
# - **Profiling.** Before optimising, look: `torch.profiler.profile(...)` lists the time spent per
#   operator on the CPU and the GPU, and shows whether convolutions, kernel launches or data loading dominate.
#
# **The fast path.** `fast_options(device)` bundles what pays on each device; it is what
# `python -m course_lib train --fast` uses. On CUDA: bf16 (fp16 with a scaler on cards without bf16),
# channels_last, compile, and a 4× larger batch with twice the learning rate (the square-root rule: a GPU
# is underused by small batches, and a bigger batch averages away gradient noise, so it takes bigger
# steps). On a CPU with native bf16 arithmetic (AVX512-BF16 or AMX, found on recent server CPUs): bf16
# alone. Elsewhere, plain fp32: the other switches gain little there. Read small differences with care:
# on a CPU without native bf16 the "fast path" *is* fp32 eager, so the `CPU fp32` row of section 2 and the
# `fp32` and `fast path` rows below measure the same thing three times; on a shared machine such repeats
# can differ by more than 10%.

# %%
from course_lib.train import fast_options

fast = fast_options(device, batch)
fast_batch = fast.pop("batch_size")
fast.pop("lr")
print(f"fast path on this {device.type}: {fast or 'fp32 eager (nothing faster here)'}, batch {fast_batch}")

variants = {
    "fp32": (batch, {}),
    "bf16": (batch, {"precision": "bf16"}),
    "fp32 + channels_last": (batch, {"channels_last": True}),
}
if has_gpu:  # on a 2-core CPU, compiling takes minutes and gains little for a model this size
    variants["fp32 + compile"] = (batch, {"compile": True})
variants["fast path"] = (fast_batch, fast)
speed = {}
for name, (b, options) in variants.items():
    r = training_throughput(model, b, steps=steps, device=device, **options)
    speed[name] = r["images_per_s"]
    print(f"{name:22s} {r['images_per_s']:8.0f} images/s   ({speed[name] / speed['fp32']:.2f}x fp32)")

fig, ax = plt.subplots(figsize=(7, 3))
ax.barh(list(speed), list(speed.values()), color="tab:blue")
ax.set_title(f"Training throughput on {device.type.upper()}, batch {batch}")
ax.set_xlabel("images per second (median)")
ax.set_ylabel("variant")
plt.tight_layout()
plt.show()

# %% [markdown]
# A sanity check that the measurements are real numbers, not a claim about which variant wins:

# %%
assert all(math.isfinite(v) and v > 0 for v in speed.values())

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
from course_lib.train import Trainer

for method in (Trainer.autocast, Trainer.loss, Trainer.step):
    print(inspect.getsource(method))

# %% [markdown]
# The **learning rate** warms up linearly (optional) and then decays along a cosine to zero: large steps
# early, small careful ones at the end. After each epoch, `fit` evaluates *every* test image and records
# train and test nats per image and test bits/dim.
#
# Let us train on a deliberately small training set to watch **overfitting**: the training loss keeps
# falling while the test loss stops improving and creeps back up, because the model starts memorising its
# few images.

# %%
from course_lib.train import TrainConfig, learning_rate

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
best = min(range(len(history["test_nats"])), key=history["test_nats"].__getitem__)
print(
    f"best test NLL {history['test_nats'][best]:.1f} nats at epoch {best + 1}; "
    f"last: train {history['train_nats'][-1]:.1f}, test {history['test_nats'][-1]:.1f}"
)
plot_history(history, dims=784, title=f"Overfitting: {len(small_train)} training images")
plt.show()

# %% [markdown]
# The gap between the curves is the generalisation gap; with 400 images it opens quickly. More training
# images, early stopping (keeping the checkpoint with the best test loss) and a smaller model are the usual
# remedies.

# %%
assert history["train_nats"][-1] < history["train_nats"][0], "training must reduce the training loss"
gap = history["test_nats"][-1] - history["train_nats"][-1]
if not is_fast():  # fast mode trains too briefly to overfit
    assert gap > 5, "with a few hundred images the model should overfit visibly"

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
# gradients over the processes, so every copy takes the same step, as one process would on the whole
# global batch.
#
# ```bash
# torchrun --nproc_per_node 4 -m course_lib train --batch-size 256 --lr 4e-3   # 4 GPUs: NCCL
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
# The test suite checks that two CPU processes end with the same weights as one process on the same global
# batch. The cell below runs a real multi-process job only where several GPUs exist.

# %%
import subprocess
import sys

n_gpus = torch.cuda.device_count()
if n_gpus > 1:
    out = folder / "ddp"
    job = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={n_gpus}",
            "-m",
            "course_lib",
            "train",
            "--epochs",
            "1",
            "--samples",
            "0",
            "--batch-size",
            str(64 * n_gpus),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    print(job.stdout[-1500:])
    assert job.returncode == 0, job.stderr[-2000:]
else:
    print(f"{n_gpus} GPU(s) visible: skipping the multi-process run (it needs several devices).")

# %% [markdown]
# ## 7 · How long would full MNIST take?
#
# Full MNIST has 60,000 training images. From the throughput measured above we can estimate one epoch,
# and the 50+ epochs a paper-quality model needs. For a GPU that is not here, we quote a reference
# measurement instead of inventing one, and label it as such: the course's notes record that on one H200
# (PyTorch 2.11) the UvA tutorial's gated model (852,160 parameters, 256-way output: a bigger model than
# the binary 152,545-parameter one measured above) trained at about 9,900 images/s in fp32 and about
# 37,800 images/s with bf16, channels_last, compile and batch 1024 (the fp32 figure at batch 128). Those rows are another model on another
# machine, not measured by this notebook; the chart draws them apart, in grey.

# %%
cpu_speed = results["CPU fp32"]["images_per_s"]
rows = [("this CPU, fp32, measured", cpu_speed)]
if has_gpu:
    rows.append((f"this {device.type.upper()}, fp32, measured", results["GPU fp32"]["images_per_s"]))
rows.append((f"this {device.type.upper()}, fast path, measured", speed["fast path"]))
rows += [("H200 fp32 (reference, 852k model)", 9_900), ("H200 bf16+compile (reference, 852k)", 37_800)]
for name, ips in rows:
    epoch = 60_000 / ips
    print(f"{name:38s} {ips:9.0f} images/s -> one epoch {epoch:8.1f} s, 50 epochs {50 * epoch / 3600:6.2f} h")

fig, ax = plt.subplots(figsize=(7, 3))
colours = ["gray" if "reference" in name else "tab:orange" for name, _ in rows]
ax.barh([r[0] for r in rows], [50 * 60_000 / r[1] / 3600 for r in rows], color=colours)
ax.set_xscale("log")
ax.set_title("Estimated time for 50 epochs of full MNIST (grey: another model, quoted)")
ax.set_xlabel("hours (log scale)")
ax.set_ylabel("hardware")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Recap
# - `pick_device()` chooses CUDA, MPS or the CPU; `fit` moves model and batches and pins memory on CUDA.
# - Time GPU work only after warm-up and with synchronisation; report medians.
# - bf16 autocast, fp16 with a gradient scaler, `channels_last` and `torch.compile` are switches of `fit`;
#   measure them on your hardware: on a small CPU model they barely matter, except bf16, which helps a CPU
#   with native bf16 and slows one without it (section 3 measured which kind this machine is);
#   a GPU is where they are expected to pay most (section 7 quotes a reference; not measured here).
#   `fast_options(device)` (the CLI's `--fast`) picks them per device.
# - The loop: mean NLL per image, clipping, warm-up + cosine learning rate, full test evaluation each epoch;
#   watch the train/test gap for overfitting.
# - Checkpoints are atomic, safe to load, rebuild their model, and resume to exactly the same weights on a CPU.
# - `torchrun --nproc_per_node N -m course_lib train` trains data-parallel; `--batch-size` is global.

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
