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
# # 00 · Start here
#
# Welcome to **pixelcnn-course**: deep autoregressive image models, from the first principle
# (the probability of an image) to a Gated PixelCNN that you train, sample from and fine-tune yourself,
# with the code that takes the same training to one or several GPUs.
#
# ## What you will learn
# - what the course covers, in what order, and how long each lesson takes;
# - where everything is: the lessons, the exercises, their solutions and the library;
# - whether your machine is ready: Python, PyTorch, the device, the data sets;
# - what *full mode* and *fast mode* are, and what `pick(fast=..., full=...)` does;
# - how the graded exercises work;
# - a first taste: train a tiny PixelCNN in well under a minute and draw samples from it.
#
# **Who this is for.** You know Python and a little PyTorch (tensors, `nn.Module`, an optimiser).
# No GPU is needed: every lesson runs on a laptop CPU, offline, in under ten minutes, and every output
# stored in these notebooks was produced on a CPU (a 2-core AMD EPYC, no GPU).
#
# **What about GPUs?** Lesson 03 teaches the GPU code paths: choosing the device, mixed precision,
# `torch.compile`, checkpoints and data-parallel training on several GPUs. It runs the parts a CPU can run
# (data parallel with two processes and the gloo backend, `torch.compile`, the fp16 gradient scaler) and
# shows the rest as code. The GPU speeds it quotes come from one earlier measurement on an NVIDIA H200,
# not re-run for the course. If your machine has a GPU, `fit` trains on the device `pick_device()` finds
# (unless a lesson says why it stays on the CPU), so your numbers may differ a little from the stored ones.

# %% [markdown]
# ## The plan
#
# | lesson | the question it answers | full-mode wall time, 2-core CPU (approx.) |
# |---|---|---|
# | 00 · start here | Is my machine ready, and what does a PixelCNN do? | under 1 min |
# | 01 · self-supervised likelihood | How can images be their own labels? What are nats and bits per dimension? | about 2 min |
# | 02 · masked convolutions | How does a CNN predict each pixel from the previous ones without cheating? | under 1 min |
# | 03 · training on a GPU | How do I train fast and safely: devices, mixed precision, checkpoints, several GPUs? | about 3 min |
# | 04 · sampling | How do I draw new images, complete half images, choose the class, and sample fast? | about 3 min |
# | 05 · fine-tuning | How do I reuse a trained model on new data and new tasks? | about 3 min |
# | 06 · levels and colour | What changes with 256 intensity levels and with colour? What does PixelCNN++'s logistic mixture buy? | under 1 min |
# | 07 · beyond convolutions | What do MADE's degrees, self-attention over pixels and real photographs add to the picture? | under 1 min |
#
# After lesson 07 comes a **homework** a class can hand in, `exercises/08_homework.ipynb`: you build the
# gated layer yourself, stack it into a whole model, train it on digits, condition it on the digit's
# class, and write a short report on your numbers (the report is graded by a person, the rest by the
# checks). Its two training runs take a few minutes: you hand in their saved weights with the notebook, so
# grading it does not train again.
#
# The times are the wall times of running each lesson top to bottom in full mode on idle 2-core CPUs
# without a GPU (the repository's `README.md` has the exact figures and names the machine of each); a busy
# or older laptop may take two or three times as long. The lessons have not been timed on a GPU.
#
# ## Finding your way
#
# `make lab` opens JupyterLab at the top folder of the course, with this notebook in front. The file
# browser on the left (the folder icon at the top of the left sidebar shows and hides it) lists the whole
# course. Double-click a folder to open it, and click a name in the path above the list to go back up:
#
# | folder | what is in it |
# |---|---|
# | `notebooks/` | the lessons 00 to 07, this one included: read and run them in order |
# | `exercises/` | one graded notebook per lesson 01 to 07, and the homework 08: you write the missing code (see the end of this lesson) |
# | `solutions/` | the same notebooks, solved: open one when you are stuck or to compare |
# | `course_lib/` | the library every notebook imports; double-click a `.py` file to read it |
#
# `course_lib/` is small, one module per idea (`masks.py`, `models.py`, `likelihood.py`, `causality.py`,
# `data.py`, `train.py`, `checkpoint.py`, `sampling.py`, `cached_sampling.py`, `plotting.py`, ...).
# Reading it top to bottom is part of the course.

# %% [markdown]
# ## Is your machine ready?
#
# The next cell reports what this kernel runs on. "No GPU" is fine: the course then runs on the CPU and
# says so.

# %%
import platform
import sys

import torch

import course_lib
from course_lib import data_dir, is_fast, pick_device

device = pick_device()
print(f"Python      {platform.python_version()} ({sys.executable})")
print(f"PyTorch     {torch.__version__}, {torch.get_num_threads()} CPU threads")
print(f"course_lib  {course_lib.__version__}, fast mode: {is_fast()}")
if device.type == "cuda":
    print(f"Device      cuda: {torch.cuda.get_device_name(0)}")
elif device.type == "mps":
    print("Device      mps: Apple GPU")
else:
    print("Device      cpu: no GPU found, everything runs on the CPU")

# %% [markdown]
# **Which data sets can you use?** `mnist-subset` (5,000 real MNIST digits), `digits` (scikit-learn's
# 8×8 digits) and `shapes` (procedural) ship with the installed packages and always work offline. The full
# `mnist`, `fashion-mnist` and `kmnist` download once from the internet into a cache folder; offline they
# fail with one clear message that points back to `mnist-subset`.

# %%
from course_lib import DatasetUnavailable, load_dataset
from course_lib.data import OFFLINE_SETS, TORCHVISION_SETS

print(f"cache folder for downloads: {data_dir()}  (set COURSE_DATA_DIR to move it)")
for name in OFFLINE_SETS:
    d = load_dataset(name, "test")
    print(f"  {name:14s} offline     {len(d):5d} test images of {'x'.join(map(str, d.image_shape))}")
for name in TORCHVISION_SETS:
    try:  # never download here: only look for an earlier download
        load_dataset(name, "test", download=False)
        print(f"  {name:14s} downloaded  (in the cache)")
    except DatasetUnavailable:
        print(f"  {name:14s} not cached  (load_dataset('{name}') downloads it when you are online)")

# %% [markdown]
# ## A first look at the data
#
# The default data set: real handwritten digits, *binarized* (a pixel is on when its intensity is above
# one half). A binary 28×28 image is a point in a space of $2^{784}$ possible images; a generative model
# puts a probability on every one of them.

# %%
import matplotlib.pyplot as plt

from course_lib.plotting import show_grid

train = load_dataset("mnist-subset", "train")
test = load_dataset("mnist-subset", "test")
print(train)
print(test)
show_grid(
    train.images[::400][:10],
    "Ten training digits (binarized at 0.5)",
    nrow=10,
    xlabel="digit class 0 to 9",
    ylabel="image",
)
plt.show()

# %% tags=["nbval-check-output"]
print(len(train), len(test), train.image_shape, torch.bincount(test.labels).tolist())

# %% [markdown]
# ## Full mode, fast mode and `pick`
#
# Every lesson sizes its data, models and training runs with `pick(fast=..., full=...)` from
# `course_lib/config.py`. It returns its `fast` argument when the environment variable `COURSE_FAST` is
# set to `1`, and its `full` argument otherwise:
#
# ```python
# epochs = pick(fast=1, full=3)  # 3 in full mode, 1 in fast mode
# ```
#
# **Full mode** is the course: the sizes the text is written about, and the outputs stored in the
# notebooks. **Fast mode** is a quick check that everything runs (the same cells, with smaller data, models
# and epochs, about a minute per lesson); its numbers are not meant to be read. To try it, start JupyterLab
# with `COURSE_FAST=1 make lab`; the environment check above printed which mode this kernel runs in.
#
# ## A first taste: train a PixelCNN in well under a minute
#
# A PixelCNN predicts every pixel from the pixels *before* it (above, and to the left). Trained only on
# images, with no labels at all, it learns a probability distribution over images. We measure it in
# **nats per image**: the average negative log-likelihood of the test digits. Lower is better.
#
# The reference point is a model that treats all 784 pixels as independent coins, each with its own
# probability of being on. Lesson 01 explains both numbers in depth. On an idle 2-core CPU the training
# takes well under a minute; the cell prints how long it took on your machine.

# %%
import time

from course_lib import GatedPixelCNN, IndependentPixelModel, count_parameters, evaluate, fit, pick

torch.manual_seed(0)
small_train = load_dataset("mnist-subset", "train", limit=pick(fast=800, full=2000))
small_test = load_dataset("mnist-subset", "test", limit=pick(fast=200, full=None))
model = GatedPixelCNN(channels=16, dilations=(1, 2, 1))
print(f"{count_parameters(model):,} parameters")
start = time.perf_counter()
history = fit(model, small_train, small_test, epochs=2, batch_size=32, lr=1e-2, progress=False)  # on pick_device()
seconds = time.perf_counter() - start
baseline = evaluate(IndependentPixelModel.fit(train), small_test)
print(f"trained in {seconds:.0f} s on {len(small_train)} images")
print(f"independent pixels: {baseline['nats']:6.1f} nats per test image")
print(f"tiny PixelCNN:      {history['test_nats'][-1]:6.1f} nats per test image")

# %% [markdown]
# A check, as every lesson has: the PixelCNN, which sees the pixels before each pixel, must explain the
# test digits far better than independent coins.

# %%
assert history["test_nats"][-1] < baseline["nats"] - 50, "the PixelCNN should beat independent pixels by far"

# %% [markdown]
# ### Drawing new digits
#
# Sampling runs the model once per pixel: draw pixel 1, feed it back, draw pixel 2, and so on, 784 times.
# These images come from the model, not from the data set: nobody drew them. After so short a run of
# training, a tiny model draws strokes and blobs rather than digits (the independent-pixel model, for
# comparison, draws noise); lesson 04 samples from a better model.

# %%
from course_lib import sample

samples = sample(model, 16, seed=0)
noise = sample(IndependentPixelModel.fit(train), 16, seed=0)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
show_grid(samples, "Tiny PixelCNN: 16 samples", ax=axes[0], xlabel="independent draws, 8 per row", ylabel="")
show_grid(noise, "Independent pixels: 16 samples", ax=axes[1], xlabel="independent draws, 8 per row", ylabel="")
plt.tight_layout()
plt.show()
assert samples.shape == (16, 1, 28, 28) and set(samples.unique().tolist()) <= {0, 1}

# %% [markdown]
# ## How the exercises work
#
# Each lesson 01–07 has a graded notebook in `exercises/` (its solved twin is in `solutions/`): in the
# file browser, double-click `exercises/`, then the notebook with the lesson's number. You write
# small, real pieces of the model (a mask, a log-likelihood, a sampling loop) between the marked lines;
# a check cell right after each task tests your code on fresh random inputs and prints what passed, what
# is wrong and a hint, never the answer. Instructors grade a whole folder of submissions with
# `pixelcnn-grade`, and can import the notebooks into nbgrader unchanged.
#
# ## Recap
# - The course has eight lessons (00 to 07); each runs on a CPU in under ten minutes, and in about a minute
#   in fast mode.
#   The file browser shows the lessons (`notebooks/`), the exercises, their solutions and `course_lib/`.
# - `pick(fast=..., full=...)` returns `fast` when `COURSE_FAST=1` is set and `full` otherwise: fast mode
#   is a quick check that everything runs, full mode is the course.
# - `pick_device()` chose this machine's device; offline data sets always work, downloads are optional.
# - A PixelCNN is trained on images alone and scored in nats per image; even a tiny one beats the
#   independent-pixel model by a wide margin, and it can draw new digits pixel by pixel.
#
# ## References
#
# - van den Oord, Kalchbrenner, Kavukcuoglu (2016), *Pixel Recurrent Neural Networks*, ICML, arXiv:1601.06759: PixelRNN and PixelCNN.
# - van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves, Kavukcuoglu (2016), *Conditional Image Generation with PixelCNN Decoders*, NeurIPS, arXiv:1606.05328: the Gated PixelCNN.
#
# ## Exercises
# Lesson 00 has no graded exercise. Try this: change `epochs` or `channels` in the training cell and watch
# the test nats and the samples change. Then open `notebooks/01_self_supervised_likelihood.ipynb` in the
# file browser; its exercises (`exercises/01_self_supervised_likelihood.ipynb`) ask you to write `nll`,
# `bits_per_dim`, the independent baseline and an evaluation loop yourself.
