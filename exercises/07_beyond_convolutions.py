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
# # Exercises 07 · MADE degrees and causal attention
#
# Lesson 07 built two autoregressive models without convolutions: MADE, a fully connected network whose
# masks come from *degrees*, and a transformer whose attention is causal. Here you write the pieces that
# make each of them autoregressive, and the checks build models from your pieces to test that no output
# sees its own sub-pixel or a later one.
#
# ## What you will practise
# 1. **Input degrees**: number the sub-pixels of an image in sampling order (2 points).
# 2. **Masks from degrees**: the MADE rule, with and without the strict inequality of the output layer
#    (2 points).
# 3. **The causal mask**: which tokens each token may not read (1 point).
# 4. **Scaled dot-product attention**: with and without a mask (2 points).
#
# Each check runs your function on fresh inputs, prints `✓ ...` when it behaves like the reference, or
# `✗ ...` with what is wrong and a hint. Run the cells from the top.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math

import torch

from course_lib import MADE
from course_lib.made import hidden_degrees
from coursework import checks

torch.manual_seed(0)

# %% [markdown] nbgrader={"grade": false, "grade_id": "task1_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 1 · Input degrees (2 points)
#
# MADE numbers the $D = C \cdot H \cdot W$ sub-pixels of an image $1..D$ in the order they are sampled:
# row by row, left to right, and R → G → B inside a pixel (raster-then-channel order). Sub-pixel
# $(c, i, j)$ of a $C \times H \times W$ image has the degree $(i W + j) C + c + 1$.
#
# Write `input_degrees(image_shape) -> (C, H, W)`: `image_shape` is a tuple `(C, H, W)`; return the degree
# of every sub-pixel as an int64 tensor laid out like the image, so `degrees[c, i, j]` is the degree of
# sub-pixel $(c, i, j)$. For a 1×2×2 image that is `[[[1, 2], [3, 4]]]`.
#
# **Library:** `course_lib`'s `input_degrees` does this task for you: calling it earns no points; PyTorch is
# yours to use.
#
# **Check:** grey and colour images, square and not, down to a single pixel. Degrees in channel-major order
# (all of R first), counted from 0, column by column, reversed, shared by the channels of a pixel, laid out
# as (H, W, C), or floats each get their own message.


# %% nbgrader={"grade": false, "grade_id": "t07_input_degrees", "locked": false, "schema_version": 3, "solution": true, "task": false}
def input_degrees(image_shape):
    """Degree (C, H, W) int64 of every sub-pixel: 1..D in raster-then-channel order."""
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "t07_input_degrees_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
checks.lesson07.check_input_degrees(input_degrees)

# %% [markdown] nbgrader={"grade": false, "grade_id": "task2_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 2 · Masks from degrees (2 points)
#
# A layer of MADE links unit $o$ of its output to unit $i$ of its input when their degrees allow it:
#
# - into a hidden unit (`strict=False`): $m(o) \ge m(i)$, a hidden unit of degree $m$ may see the first $m$
#   sub-pixels;
# - into the output (`strict=True`): $m(o) > m(i)$, the output of sub-pixel $d$ must not see sub-pixel $d$.
#
# Write `mask_from_degrees(out_degrees, in_degrees, strict=False) -> (out, in)`: the degrees are int64
# tensors of shape `(out,)` and `(in,)`; return a float tensor of ones (link allowed) and zeros, with rows
# for the output units and columns for the input units, like the weight of `nn.Linear`.
#
# **Library:** `course_lib`'s `mask_from_degrees` does this task for you: calling it earns no points; PyTorch
# is yours to use.
#
# **Check:** random degrees, more outputs than inputs and fewer, with `strict` left out, `False` and `True`;
# then a small MADE whose three masks are yours (two hidden layers, then the strict output) must be
# autoregressive, by its Jacobian. The strict and non-strict rules swapped or ignored, the inequality
# reversed, the mask transposed and a bool or integer mask get their own messages.


# %% nbgrader={"grade": false, "grade_id": "t07_mask_from_degrees", "locked": false, "schema_version": 3, "solution": true, "task": false}
def mask_from_degrees(out_degrees, in_degrees, strict=False):
    """The (out, in) float mask of a MADE layer: 1 where out_degree >= in_degree (strict: >), else 0."""
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "t07_mask_from_degrees_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
checks.lesson07.check_mask_from_degrees(mask_from_degrees)

# %% [markdown] nbgrader={"grade": false, "grade_id": "made_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Your masks in the library's MADE
#
# `MADE` builds its masks from the same two functions. With yours, the masks of a MADE for 2×3 colour images
# with two hidden layers of 10 units must be the very masks the model holds (`True` below).

# %% nbgrader={"grade": false, "grade_id": "made", "locked": true, "schema_version": 3, "solution": false, "task": false}
shape = (3, 2, 3)
made = MADE(shape, levels=4, hidden=(10, 10))
dims = math.prod(shape)
degrees = [input_degrees(shape).permute(1, 2, 0).reshape(-1)]  # 1..D in sampling order
degrees += [hidden_degrees(10, dims), hidden_degrees(10, dims)]
mine = [mask_from_degrees(d_out, d_in) for d_in, d_out in zip(degrees, degrees[1:])]
outputs = torch.arange(1, dims + 1).repeat_interleave(4)  # 4 logits per sub-pixel
mine.append(mask_from_degrees(outputs, degrees[-1], strict=True))
held = [layer.mask for layer in made.hidden] + [made.output.mask]
print("the same masks as the library's MADE:", all(torch.equal(a, b) for a, b in zip(mine, held)))

# %% [markdown] nbgrader={"grade": false, "grade_id": "task3_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 3 · The causal mask (1 point)
#
# The transformer reads the image as $T$ tokens in sampling order: token $t$ carries the value of sub-pixel
# $t - 1$ and predicts sub-pixel $t$. Attention lets token $t$ read tokens $0..t$ (itself included: it
# carries the previous sub-pixel) and never the tokens after it.
#
# Write `causal_mask(tokens) -> (T, T)`: a bool tensor that is **True where attention is forbidden**, row
# $t$ for the query token $t$ and column $s$ for the key token $s$.
#
# **Library:** `course_lib`'s `causal_mask` does this task for you: calling it earns no points; PyTorch is
# yours to use.
#
# **Check:** 1, 2, 5 and 12 tokens; then a small `PixelTransformer` whose attention uses your mask must see
# the whole past of every sub-pixel and nothing else, by its Jacobian. A token forbidden to read itself, the
# past forbidden instead of the future, True where allowed, the next token let through, an additive float
# mask (0 and -inf) and a mask of ones and zeros get their own messages.


# %% nbgrader={"grade": false, "grade_id": "t07_causal_mask", "locked": false, "schema_version": 3, "solution": true, "task": false}
def causal_mask(tokens):
    """(T, T) bool mask, True where query t may not read key s (s > t)."""
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "t07_causal_mask_check", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
checks.lesson07.check_causal_mask(causal_mask)

# %% [markdown] nbgrader={"grade": false, "grade_id": "task4_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 4 · Scaled dot-product attention (2 points)
#
# Each query $q_t$ scores every key $k_s$ with $q_t \cdot k_s / \sqrt{d_h}$ ($d_h$ is the size of one
# head's vectors, the last dimension of `q`), the scores of forbidden keys are set to $-\infty$, a softmax
# over the keys turns the scores into weights that sum to 1, and the output is the weighted average of the
# values:
#
# $$\mathrm{attend}(Q, K, V) = \mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt{d_h}} + M\right) V,
# \qquad M_{ts} = -\infty \text{ where the mask is True, } 0 \text{ elsewhere}.$$
#
# Write `attend(q, k, v, mask=None) -> (..., Tq, dh)`: `q` is `(..., Tq, dh)`, `k` and `v` are
# `(..., Tk, dh)` with the same leading dimensions (batch, heads), `mask` is `None` (every key allowed) or a
# `(Tq, Tk)` bool tensor, True where forbidden.
#
# **Library:** `course_lib`'s `attend` and PyTorch's `scaled_dot_product_attention` do this task for you:
# calling them earns no points; the rest of PyTorch is yours to use.
#
# **Check:** random queries, keys and values with and without leading dimensions, with fewer queries than
# keys, down to one token, with random masks; then a small `PixelTransformer` whose attention is yours must
# see the whole past of every sub-pixel and nothing else. Scores not scaled or scaled by the wrong number,
# the softmax over the queries, forbidden scores set to 0, the mask applied after the softmax, the mask
# ignored or inverted and the weights returned instead of the output get their own messages.


# %% nbgrader={"grade": false, "grade_id": "t07_attend", "locked": false, "schema_version": 3, "solution": true, "task": false}
def attend(q, k, v, mask=None):
    """softmax(q k^T / sqrt(dh)) v with forbidden keys (mask True) left out. q (..., Tq, dh), k, v (..., Tk, dh)."""
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "t07_attend_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
checks.lesson07.check_attend(attend)

# %% [markdown] nbgrader={"grade": false, "grade_id": "closing", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## What you wrote
# - **Input degrees**: the sampling order as numbers, 1..D, channel fastest, laid out like the image.
# - **Masks from degrees**: one comparison of every output degree with every input degree, `>=` into hidden
#   units and `>` into the outputs; along any path the degrees never decrease and the last step is strict,
#   so no output sees its own sub-pixel or a later one.
# - **The causal mask**: forbid the keys after the query; each token reads itself, because it carries the
#   previous sub-pixel.
# - **Attention**: scores scaled by $1/\sqrt{d_h}$, forbidden ones set to $-\infty$ before the softmax over the
#   keys, then a weighted average of the values.
#
# `course_lib/made.py` and `course_lib/attention.py` hold the library versions: read them now and compare.
