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

# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# # Exercises 02 · Masked convolutions
#
# Lesson `notebooks/02_masked_convolutions` showed why a plain convolution cheats and how masks make a
# network autoregressive. Here you build the masks and the layer yourself, and the tools that test whether a
# network is causal.
#
# ## What you will practise
# 1. `make_mask(...)`: masks A and B in raster order, with R → G → B channel groups. *3 points*
# 2. `MaskedConv2d`: a causal convolution layer that stays causal while it trains. *2 points*
# 3. `receptive_field_map(model, i, j, c)`: which inputs an output sees, from gradients. *2 points*
# 4. `is_causal(model)`: the Jacobian test of causality, which finds the classic leaks. *2 points*
#
# **How it works.** Write your code where a cell says `# YOUR CODE HERE` (delete the
# `raise NotImplementedError()` line), run the cell, then run the check cell right below it. A check tests
# your code on fresh random inputs and prints `✓ ...` when it is right, or `✗ what is wrong. Hint: ...`.
# The autograder (`pixelcnn-grade`) runs the same checks. Do not edit the check cells.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import torch
import torch.nn as nn
import torch.nn.functional as F

from course_lib import PixelCNN, pick
from coursework import checks

torch.manual_seed(0)
print("checks loaded:", checks.lesson02.__name__)

# %% [markdown] nbgrader={"grade": false, "grade_id": "t01_mask_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 1 · `make_mask(kernel_size, mask_type, in_channels, out_channels, data_channels=1)` (3 points)
#
# Return the 0/1 mask, shape `(out_channels, in_channels, k, k)` like a `Conv2d` weight, float, for an odd
# `kernel_size` k with centre `(k // 2, k // 2)`:
#
# - rows above the centre: all ones; centre row: ones left of the centre; the rest of the centre row and
#   every row below: zeros;
# - the centre weight follows the colour order. Split the channels of each side into `data_channels`
#   contiguous groups: channel `n` of `C` belongs to group `n * data_channels // C` (with 3 data channels:
#   R, G, B). At the centre, an output of group `g` reads an input of group `g'` only if `g' < g`
#   (**mask A**, first layer) or `g' <= g` (**mask B**, later layers).
#
# With `data_channels=1` every channel is in group 0, so mask A has a zero centre and mask B a one.
#
# **Library:** `course_lib`'s `raster_mask` and `channel_groups` do this task for you: calling them earns no
# points; PyTorch is yours to use.
#
# **Checked:** against the reference on random kernel sizes and channel counts, single-channel and colour.
# Mistakes recognised: A and B swapped, the centre wrongly included (A) or excluded (B), channel order
# ignored, reversed or interleaved, the centre row's right half kept, the future kept instead of the past,
# in/out channels swapped.


# %% nbgrader={"grade": false, "grade_id": "t01_mask", "locked": false, "schema_version": 3, "solution": true, "task": false}
def make_mask(kernel_size, mask_type, in_channels, out_channels, data_channels=1):
    """Causal mask (out_channels, in_channels, k, k) of type "A" or "B" for raster and R -> G -> B order."""
    ### BEGIN SOLUTION
    k, c = kernel_size, kernel_size // 2
    mask = torch.zeros(out_channels, in_channels, k, k)
    mask[:, :, :c, :] = 1
    mask[:, :, c, :c] = 1
    g_out = (torch.arange(out_channels) * data_channels // out_channels)[:, None]
    g_in = (torch.arange(in_channels) * data_channels // in_channels)[None, :]
    centre = (g_out > g_in) if mask_type == "A" else (g_out >= g_in)
    mask[:, :, c, c] = centre.float()
    return mask
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "t01_mask_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
checks.lesson02.check_mask(make_mask)

# %% nbgrader={"grade": false, "grade_id": "t01_demo", "locked": true, "schema_version": 3, "solution": false, "task": false}
print("mask A, 5x5:\n", make_mask(5, "A", 1, 1)[0, 0].int().numpy())
print("mask B, 5x5:\n", make_mask(5, "B", 1, 1)[0, 0].int().numpy())
print(
    "centre of mask A, 3 -> 3 colour channels (rows: output R, G, B; columns: input R, G, B):\n",
    make_mask(3, "A", 3, 3, 3)[:, :, 1, 1].int().numpy(),
)

# %% [markdown] nbgrader={"grade": false, "grade_id": "t02_conv_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 2 · `class MaskedConv2d(nn.Conv2d)` (2 points)
#
# A convolution layer whose kernel is multiplied by your mask.
#
# - `MaskedConv2d(in_channels, out_channels, kernel_size, mask_type="B", data_channels=1)`: subclass
#   `nn.Conv2d` with "same" padding (`kernel_size // 2`), so the output has the input's height and width;
#   keep the mask as a **buffer** (`self.register_buffer`), not a trainable parameter;
# - `forward(x)`: `(B, in_channels, H, W) -> (B, out_channels, H, W)`, the convolution with
#   `self.weight * self.mask` as its kernel.
#
# Apply the mask in every forward pass: masking the weight once in `__init__` looks right until the first
# optimiser step brings the hidden weights back. Multiply `self.weight` itself (not `self.weight.data`, and
# not a detached copy), so that the gradient reaches the weight and the layer can learn.
#
# **Library:** `course_lib`'s `MaskedConv2d` does this task for you: calling it earns no points; PyTorch is
# yours to use.
#
# **Checked:** outputs against a masked reference convolution with your layer's weights, for masks A and B,
# single-channel and colour; the gradients of the weight and the bias; then the outputs again after one SGD
# step. Mistakes recognised: no mask, A and B swapped, channel order ignored, no padding, a mask that is a
# parameter or a plain attribute (not in `state_dict`, left behind by `.to(device)`), a mask applied only
# once, a gradient that never reaches the weight.


# %% nbgrader={"grade": false, "grade_id": "t02_conv", "locked": false, "schema_version": 3, "solution": true, "task": false}
class MaskedConv2d(nn.Conv2d):
    """A 'same'-padded Conv2d whose kernel is multiplied by a causal mask: (B, in, H, W) -> (B, out, H, W)."""

    def __init__(self, in_channels, out_channels, kernel_size, mask_type="B", data_channels=1):
        ### BEGIN SOLUTION
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.register_buffer("mask", make_mask(kernel_size, mask_type, in_channels, out_channels, data_channels))
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "t02_conv_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
checks.lesson02.check_masked_conv(MaskedConv2d)

# %% [markdown] nbgrader={"grade": false, "grade_id": "t02_model_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# A small PixelCNN made of your layers: a 3×3 mask-A layer, then mask-B layers, then a 1×1 head that
# outputs one Bernoulli logit per sub-pixel. (Any model with an `image_shape` attribute that maps a float
# image `(1, C, H, W)` to logits `(1, C, H, W)` works with tasks 3 and 4.)


# %% nbgrader={"grade": false, "grade_id": "t02_model", "locked": true, "schema_version": 3, "solution": false, "task": false}
class TinyPixelCNN(nn.Module):
    def __init__(self, image_shape=(1, 7, 7), channels=8, n_layers=3, first_mask="A"):
        super().__init__()
        self.image_shape = tuple(image_shape)
        c = self.image_shape[0]
        self.layers = nn.ModuleList(
            [MaskedConv2d(c, channels, 3, first_mask, c)]
            + [MaskedConv2d(channels, channels, 3, "B", c) for _ in range(n_layers - 1)]
        )
        self.head = MaskedConv2d(channels, c, 1, "B", c)

    def forward(self, x, labels=None):
        h = x
        for layer in self.layers:
            h = torch.tanh(layer(h))
        return self.head(h)


# %% [markdown] nbgrader={"grade": false, "grade_id": "t03_field_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 3 · `receptive_field_map(model, i, j, c=0)` (2 points)
#
# Which inputs can the output at sub-pixel `(c, i, j)` see? Exactly those where the gradient of that one
# logit is not zero (a masked path contributes exactly 0).
#
# - `model`: maps a float image `(1, C, H, W)` to Bernoulli logits `(1, C, H, W)`; `model.image_shape` is
#   `(C, H, W)`;
# - return: a boolean tensor `(C, H, W)`, True where $\partial\,\mathrm{logit}_{c,i,j} / \partial x \neq 0$.
#
# Use a random float input that requires gradients (random, so that no gradient vanishes by accident) and
# differentiate the single logit `[0, c, i, j]`.
#
# **Library:** `course_lib`'s `receptive_field` and `dependency_matrix` do this task for you: calling them
# earns no points; PyTorch is yours to use.
#
# **Checked:** against the exact (float64) gradient support on small random causal models, 1 and 3
# channels. Mistakes recognised: rows and columns swapped, all channels of the pixel (or all outputs)
# differentiated at once, a missing channel or an extra batch dimension.


# %% nbgrader={"grade": false, "grade_id": "t03_field", "locked": false, "schema_version": 3, "solution": true, "task": false}
def receptive_field_map(model, i, j, c=0):
    """Boolean map (C, H, W) of the inputs that the logit of sub-pixel (c, i, j) depends on."""
    ### BEGIN SOLUTION
    x = torch.rand(1, *model.image_shape, requires_grad=True)
    logit = model(x)[0, c, i, j]
    (grad,) = torch.autograd.grad(logit, x)
    return grad[0] != 0
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "t03_field_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
checks.lesson02.check_receptive_field(receptive_field_map)

# %% [markdown] nbgrader={"grade": false, "grade_id": "t03_demo_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# The receptive field of the centre pixel of your tiny PixelCNN (1 = seen, `X` = the output pixel). Look
# above and to the right of the output: the **blind spot**, past pixels that stacked masks never reach.

# %% nbgrader={"grade": false, "grade_id": "t03_demo", "locked": true, "schema_version": 3, "solution": false, "task": false}
size = pick(fast=7, full=9)
torch.manual_seed(0)
tiny = TinyPixelCNN((1, size, size), n_layers=3)
ci = cj = size // 2
seen = receptive_field_map(tiny, ci, cj)[0]
for r in range(size):
    print(" ".join("X" if (r, col) == (ci, cj) else str(int(seen[r, col])) for col in range(size)))

# %% [markdown] nbgrader={"grade": false, "grade_id": "t04_causal_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 4 · `is_causal(model)` (2 points)
#
# Number the sub-pixels in raster order and, inside a pixel, R → G → B. A model is **causal** when no output
# depends on its own sub-pixel or on any later one. Use your `receptive_field_map` for every output
# `(c, i, j)` and return `False` as soon as one of them sees a forbidden input:
#
# - any pixel after `(i, j)` in raster order (any channel);
# - at the pixel `(i, j)` itself, channel `c` or any later channel.
#
# Return `True` when no output does.
#
# **Library:** `course_lib`'s `causality_violations`, `dependency_matrix` and `receptive_field` do this task
# for you: calling them earns no points; PyTorch is yours to use.
#
# **Checked:** on random models, causal and broken: correct single-channel and colour stacks, mask B on
# the first layer, a residual from the raw input, a reversed colour order, a skip connection from green to
# red, an unshifted vertical stack, and single leaks at one place each (the first or last row, the first or
# last column, the next pixel, the last channel), so every output must be examined. Each missed leak (or
# false alarm) has its own message.


# %% nbgrader={"grade": false, "grade_id": "t04_causal", "locked": false, "schema_version": 3, "solution": true, "task": false}
def is_causal(model):
    """True when no logit depends on its own sub-pixel or a later one (raster order, then R -> G -> B)."""
    ### BEGIN SOLUTION
    channels, height, width = model.image_shape
    for i in range(height):
        for j in range(width):
            for c in range(channels):
                seen = receptive_field_map(model, i, j, c)
                later_pixels = seen.flatten(1)[:, i * width + j + 1 :]
                if later_pixels.any() or seen[c:, i, j].any():
                    return False
    return True
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "t04_causal_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
checks.lesson02.check_is_causal(is_causal)

# %% [markdown] nbgrader={"grade": false, "grade_id": "t04_demo_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Your test on models of your own and of the course: the classic bug, mask B on the first layer, is caught
# without any training or data.

# %% nbgrader={"grade": false, "grade_id": "t04_demo", "locked": true, "schema_version": 3, "solution": false, "task": false}
torch.manual_seed(0)
candidates = {
    "your tiny PixelCNN": TinyPixelCNN((1, 5, 5)),
    "your tiny PixelCNN, mask B first": TinyPixelCNN((1, 5, 5), first_mask="B"),
    "your colour PixelCNN": TinyPixelCNN((3, 4, 4), channels=6),
    "course_lib's PixelCNN": PixelCNN((1, 5, 5), channels=8, n_blocks=1),
}
for name, model in candidates.items():
    print(f"{name:34s} causal: {is_causal(model)}")

# %% [markdown] nbgrader={"grade": false, "grade_id": "closing", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## What you have built
# Masks A and B with colour groups, a masked convolution that stays causal while it trains, and a test of
# causality by gradients: the three things that make a PixelCNN a valid autoregressive model. The test
# differentiates each output at a random input: a masked path contributes exactly zero, and a real
# dependence almost never has a gradient of exactly zero at a random point, so it finds the classic leaks.
# It is still a test at the inputs it tried, not a proof; a proof is an argument about the architecture,
# that every path from an input to an output passes only through masks that read earlier sub-pixels.
# Lesson 03 trains a PixelCNN on a GPU.
