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

# %% [markdown] nbgrader={"grade": false, "grade_id": "title", "locked": true, "schema_version": 3, "solution": false, "task": false}
# # Homework 08 · A Gated PixelCNN of your own
#
# In the lessons you used `course_lib`'s Gated PixelCNN. Here you build one yourself, train it on digits and
# condition it on the digit's class, then say in a few sentences what your numbers mean.
#
# ## What you will hand in
# 1. **The gated layer**: the vertical and horizontal stacks, the link between them, the gated activation
#    and the residual connection (6 points).
# 2. **A whole model**: your layers stacked into a model that `fit`, `evaluate` and `sample` accept (4 points).
# 3. **Training it**: a function that trains your model and saves its weights; the check scores the saved
#    weights on the test images itself (4 points).
# 4. **Conditioning**: the same model trained with the digit's class; a digit classifier judges its samples
#    (3 points).
# 5. **Your report**: a short written answer after parts 3 and 4 (2 points each, graded by a person).
#
# Hand in this notebook **and the two weight files it writes** (`homework_08.pt`, `homework_08_cond.pt`),
# in the same folder: the checks of parts 3 and 4 read them and do not train. Each check prints `✓ ...` when your code behaves like the reference, or `✗ ...` with
# what is wrong and a hint. Run the cells from the top.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import os
import time

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F

from course_lib import evaluate, fit, load_dataset, pick, sample
from course_lib.data import per_class
from course_lib.masks import MaskedConv2d
from course_lib.models import AutoregressiveImageModel
from coursework import checks

torch.manual_seed(0)
torch.set_num_threads(min(2, torch.get_num_threads()))

train_data = load_dataset("mnist-subset", "train", size=14)
test_data = load_dataset("mnist-subset", "test", size=14)
CHANNELS, DILATIONS = 32, (1, 2, 1, 2, 1)
TRAIN = pick(fast=per_class(train_data, 20), full=train_data)
EPOCHS = pick(fast=1, full=12)
TEST = pick(fast=per_class(test_data, 10), full=test_data)
ROWS = pick(fast=2, full=8)
WEIGHTS, WEIGHTS_COND = pick(
    fast=("homework_08_fast.pt", "homework_08_cond_fast.pt"), full=("homework_08.pt", "homework_08_cond.pt")
)

# %% [markdown] nbgrader={"grade": false, "grade_id": "task1_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 1 · The gated layer (6 points)
#
# Write `GatedLayer(channels, kernel_size=3, dilation=1, num_classes=None)`, an `nn.Module` whose
# `forward(v, h, labels=None)` takes the vertical and horizontal features, both `(B, p, H, W)` with
# `p = channels`, and returns the new pair `(v, h)`, same shapes. The images are binary, one channel.
#
# - **Vertical stack**: `v_conv`, a `MaskedConv2d` from `p` to `2p` channels with a square kernel and mask
#   `"V"` (the rows above and the row itself: the features it reads already hold only rows above).
# - **Horizontal stack**: `h_conv`, a `MaskedConv2d` from `p` to `2p` channels with a `(1, kernel_size)`
#   kernel and mask `"B"` (the pixels to the left and the position itself, which by now holds only the past).
# - **The link**: `v_to_h`, a 1×1 `nn.Conv2d` from `2p` to `2p` channels, applied to the vertical stack's
#   `2p` features and added to the horizontal stack's `2p` features, before the gate.
# - **Conditioning** (when `num_classes` is set): `class_bias = nn.Embedding(num_classes, 4p)`; its first
#   `2p` numbers are added to the vertical features, the last `2p` to the horizontal ones, after the link
#   and before the gate.
# - **The gated activation** of `2p` features: `tanh(first half) * sigmoid(second half)`, `p` channels.
# - **The outputs**: `v` = the gated vertical features; `h` = the input `h` plus `h_out` (a 1×1
#   `MaskedConv2d`, `p` to `p`, mask `"B"`) of the gated horizontal features. Only the horizontal stack has
#   the residual connection.
# - Every convolution uses `dilation`. Use exactly the names above (`v_conv`, `h_conv`, `v_to_h`, `h_out`,
#   `class_bias`).
#
# **Library:** you may use `MaskedConv2d` from `course_lib`; its `GatedBlock` and `gate` do this task for
# you: calling them earns no points.
#
# **Check:** your layers, stacked behind the course's first convolutions, are causal (Jacobian at several
# inputs) and have no blind spot (the last pixel sees every earlier pixel); the parameter names and count
# are those above; given the weights of `course_lib`'s `GatedBlock` your layer gives the same outputs, with
# and without classes, for several dilations. A link missing or taken from the wrong place, a residual on
# both stacks, swapped gate halves, mask A after the first layer, a stack that sees the current pixel or the
# rows below, and a missing dilation each get their own message.


# %% nbgrader={"grade": false, "grade_id": "t08_gated_layer", "locked": false, "schema_version": 3, "solution": true, "task": false}
class GatedLayer(nn.Module):
    """One gated layer: (v, h) of shape (B, p, H, W) each -> the new (v, h)."""

    def __init__(self, channels, kernel_size=3, dilation=1, num_classes=None):
        super().__init__()
        # YOUR CODE HERE
        raise NotImplementedError()

    def forward(self, v, h, labels=None):
        # YOUR CODE HERE
        raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "t08_gated_layer_check", "locked": true, "points": 6, "schema_version": 3, "solution": false, "task": false}
checks.lesson08.check_gated_layer(GatedLayer)

# %% [markdown] nbgrader={"grade": false, "grade_id": "task2_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 2 · A whole model (4 points)
#
# Write `HomeworkPixelCNN(image_shape, channels=32, dilations=(1, 2, 1, 2, 1), num_classes=None)`, a
# subclass of `course_lib.models.AutoregressiveImageModel` for binary images with one channel (the given
# lines set up its output head and the configuration that rebuilds it). Its layers, in this order:
#
# - `v_in`: a `MaskedConv2d` from 1 to `channels` with a 7×7 kernel and mask `"V0"` (rows strictly above:
#   the vertical stack must never see the current row), and `h_in`: 1 to `channels`, a `(1, 7)` kernel and
#   mask `"A"` (pixels strictly to the left). Both read the scaled image `self.scale(x)`.
# - `layers`: an `nn.ModuleList` of your `GatedLayer(channels, 3, d, num_classes)`, one per dilation `d`;
#   each gets `(v, h, labels)` and returns the next `(v, h)`.
# - `out1` (`channels` to `channels`) and `out2` (`channels` to `self.outputs_per_channel`), 1×1
#   `MaskedConv2d`s with mask `"B"`, read as `out2(elu(out1(elu(h))))`, returned through `self.to_logits`.
#
# **Library:** you may use `MaskedConv2d` from `course_lib`; its `GatedBlock`, `gate` and `GatedPixelCNN` do
# this task for you: calling them earns no points. Use your own `GatedLayer`.
#
# **Check:** the model is built from your `GatedLayer`, with the names above; it is causal and has no blind
# spot; given the weights of a `GatedPixelCNN` of the same size it gives the same logits, with and without
# classes; `fit`, `evaluate` and `sample` run on it. A first vertical convolution that sees the current row
# and a first horizontal one that sees the current pixel get their own messages.


# %% nbgrader={"grade": false, "grade_id": "t08_model", "locked": false, "schema_version": 3, "solution": true, "task": false}
class HomeworkPixelCNN(AutoregressiveImageModel):
    """A Gated PixelCNN for binary one-channel images, built from GatedLayer."""

    def __init__(self, image_shape=(1, 14, 14), channels=32, dilations=(1, 2, 1, 2, 1), num_classes=None):
        super().__init__(image_shape, levels=2, num_classes=num_classes)
        self._config = dict(
            image_shape=list(self.image_shape), channels=channels, dilations=list(dilations), num_classes=num_classes
        )
        # YOUR CODE HERE
        raise NotImplementedError()

    def forward(self, x, labels=None):
        self._check_input(x, labels)
        # YOUR CODE HERE
        raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "t08_model_check", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
checks.lesson08.check_model(HomeworkPixelCNN)

# %% [markdown] nbgrader={"grade": false, "grade_id": "task3_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 3 · Training it (4 points)
#
# Write `train_homework(path, data, *, seed=0, conditional=False, epochs=EPOCHS)`: seed torch with `seed`,
# build `HomeworkPixelCNN(data.image_shape, CHANNELS, DILATIONS)` (with `num_classes=10` when
# `conditional`), train it on `data` with `fit` (`epochs` epochs, your choice of batch size and
# learning rate, `device="cpu"`), save `{"config": model.config, "state_dict": model.state_dict()}` to
# `path` with `torch.save`, and return the model.
#
# After the check, the next cell trains it once (12 epochs over the 4,000 training images: one to four
# minutes on a 2-core laptop) and keeps the weights in `homework_08.pt`; when that file exists it loads it
# instead (delete it to train again). It then reports the test NLL and shows 64 samples.
#
# **Library:** `fit`, `evaluate`, `sample`.
#
# **Check:** it reads your saved file with `torch.load(..., weights_only=True)` (nothing but tensors and
# plain numbers), rebuilds your `HomeworkPixelCNN` from its configuration, checks that its layers are your
# `GatedLayer`, scores the 1,000 test images itself and asks for a test NLL below 32 nats per image
# (0.24 bits/dim); then it draws a few samples. It does not train: hand the weight file in with the notebook.


# %% nbgrader={"grade": false, "grade_id": "t08_train", "locked": false, "schema_version": 3, "solution": true, "task": false}
def train_homework(path, data, *, seed=0, conditional=False, epochs=EPOCHS):
    """Train a HomeworkPixelCNN on `data`, save its configuration and weights to `path`, return it."""
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "t08_train_check", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
checks.lesson08.check_trained(train_homework, WEIGHTS)


# %% nbgrader={"grade": false, "grade_id": "train", "locked": true, "schema_version": 3, "solution": false, "task": false}
def trained(path, conditional=False):
    """The model saved in `path`, trained first when the file does not exist yet."""
    if not os.path.exists(path):
        start = time.perf_counter()
        train_homework(path, TRAIN, conditional=conditional)
        print(f"trained in {time.perf_counter() - start:.0f} s")
    saved = torch.load(path, weights_only=True)
    model = HomeworkPixelCNN(**saved["config"])
    model.load_state_dict(saved["state_dict"])
    return model


model = trained(WEIGHTS)
scores = evaluate(model, TEST)
print(f"test NLL: {scores['nats']:.2f} nats/image = {scores['bpd']:.4f} bits/dim")
images = sample(model, 8 * ROWS, seed=0)
fig, ax = plt.subplots(figsize=(5, 5 * ROWS / 8))
grid = images[:, 0].reshape(ROWS, 8, 14, 14).permute(0, 2, 1, 3).reshape(ROWS * 14, 8 * 14)
ax.imshow(grid, cmap="gray_r")
ax.set(title=f"{8 * ROWS} samples of HomeworkPixelCNN", xlabel="8 samples per row", ylabel=f"{ROWS} rows")
ax.set_xticks([])
ax.set_yticks([])
plt.show()

# %% [markdown] nbgrader={"grade": true, "grade_id": "report_train", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# **Your report on Task 3** (a person grades it): in three to five sentences, what does your test NLL mean,
# in nats per image and in bits per dimension? Compare it with the NLL of a model that gives every pixel
# probability one half (196 ln 2 ≈ 136 nats per image) and say what the samples above show that the number
# does not.
#
# YOUR ANSWER HERE

# %% [markdown] nbgrader={"grade": false, "grade_id": "task4_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 4 · Conditioning on the digit (3 points)
#
# Train the same model with `conditional=True`: your `GatedLayer`s add a learned bias per class, and
# `fit`, `evaluate` and `sample` pass the labels. After the check, the next cell trains it once, keeps its
# weights in `homework_08_cond.pt` and draws 8 samples of every digit.
#
# Nothing new to write if Tasks 1 and 3 are right: write `conditioned(path, data, *, seed=0, epochs=EPOCHS)`,
# which trains and saves the class-conditional model with `train_homework` and returns it.
#
# **Check:** it loads your saved conditional model (weights only), draws 10 samples of every digit and asks
# the course's digit classifier (93% right on the test digits) which digit each one shows: at least 50% of
# them must be the digit asked for (an unconditional model's samples match the digit asked for by chance,
# about one in ten). It does not train: hand the weight file in with the notebook.


# %% nbgrader={"grade": false, "grade_id": "t08_conditioned", "locked": false, "schema_version": 3, "solution": true, "task": false}
def conditioned(path, data, *, seed=0, epochs=EPOCHS):
    """Train and save the class-conditional model; return it."""
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "t08_conditioned_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
checks.lesson08.check_conditioned(conditioned, WEIGHTS_COND)

# %% nbgrader={"grade": false, "grade_id": "train_cond", "locked": true, "schema_version": 3, "solution": false, "task": false}
if not os.path.exists(WEIGHTS_COND):
    start = time.perf_counter()
    conditioned(WEIGHTS_COND, TRAIN)
    print(f"trained in {time.perf_counter() - start:.0f} s")
cond_model = trained(WEIGHTS_COND, conditional=True)
cond_scores = evaluate(cond_model, TEST)
print(f"test NLL given the class: {cond_scores['nats']:.2f} nats/image = {cond_scores['bpd']:.4f} bits/dim")
digits = sample(cond_model, 10 * ROWS, labels=torch.arange(10).repeat_interleave(ROWS), seed=0)
fig, ax = plt.subplots(figsize=(8, 5 * ROWS / 8))
grid = digits[:, 0].reshape(10, ROWS, 14, 14).permute(1, 2, 0, 3).reshape(ROWS * 14, 10 * 14)
ax.imshow(grid, cmap="gray_r")
ax.set(title=f"{ROWS} samples of each digit, class-conditional model", xlabel="digit asked for", ylabel="sample")
ax.set_xticks([7 + 14 * d for d in range(10)], [str(d) for d in range(10)])
ax.set_yticks([])
plt.show()

# %% [markdown] nbgrader={"grade": true, "grade_id": "report_cond", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# **Your report on Task 4** (a person grades it): in three to five sentences, compare the two test NLLs.
# How many nats does knowing the class save per image, and how does that relate to log 10 ≈ 2.3 nats, the
# information in the label? Which digits look right in the figure above and which do not?
#
# YOUR ANSWER HERE
