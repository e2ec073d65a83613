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
# # Exercises 01 · Likelihood in nats, bits per dimension, and the independent baseline
#
# Lesson `notebooks/01_self_supervised_likelihood` showed that a likelihood model needs no labels: every
# image is scored by the probability the model gives it. Here you write the pieces that turn a model's
# outputs into honest numbers.
#
# ## What you will practise
# 1. `nll(logits, x)`: the negative log-likelihood of each image in **nats**, summed over its sub-pixels
#    (Bernoulli and K-way categorical logits). *2 points*
# 2. `bits_per_dim(nats_per_image, dims)`: the unit everyone reports. *1 point*
# 3. `fit_independent(images, levels, alpha)`: the independent-pixel baseline, fitted by counting with
#    pseudo-counts. *2 points*
# 4. `evaluate_nll(model, dataset, batch_size)`: an evaluation loop that scores **every** image. *2 points*
#
# **How it works.** Write your code where a cell says `# YOUR CODE HERE` (delete the
# `raise NotImplementedError()` line), run the cell, then run the check cell right below it. A check tests
# your function on fresh random inputs and prints `✓ ...` when it is right, or `✗ what is wrong. Hint: ...`.
# The autograder (`pixelcnn-grade`) runs the same checks. Do not edit the check cells.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from course_lib import IndependentPixelModel, evaluate, load_dataset, pick
from course_lib.data import per_class
from coursework import checks

torch.manual_seed(0)
train = per_class(load_dataset("mnist-subset", "train"), pick(fast=50, full=400))  # binarized at 0.5
test = per_class(load_dataset("mnist-subset", "test"), pick(fast=25, full=100))  # images of every digit
D = math.prod(train.image_shape)
print(train, test, sep="\n")

# %% [markdown] nbgrader={"grade": false, "grade_id": "t01_nll_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 1 · `nll(logits, x)` (2 points)
#
# A model outputs **logits**, one set per sub-pixel; the image `x` itself is the target.
#
# - `logits`: either `(B, C, H, W)` Bernoulli logits (binary images; the logit is $\log\frac{p(x=1)}{p(x=0)}$),
#   or `(B, K, C, H, W)` categorical logits over `K` levels (dimension 1 holds the levels).
# - `x`: `(B, C, H, W)` integer levels (0/1, or 0..K-1).
# - return: a tensor of shape `(B,)`, the NLL of each image in **nats**: $-\sum_{c,i,j} \ln p(x_{cij})$.
#
# Sum over the sub-pixels (the probability of an image is the product of its sub-pixel probabilities),
# keep one value per image, use natural logarithms, and compute log-probabilities from the logits in a
# numerically stable way (PyTorch's `*_with_logits` / `cross_entropy` functions do).
#
# **Library:** `course_lib`'s `log_prob_from_logits` and `nll` do this task for you: calling them earns no
# points; PyTorch is yours to use.
#
# **Checked:** on random logits and images of random shapes, both layouts, 2 to 256 levels (some absent from
# the images), a batch of one image, and very confident logits (±100). Mistakes recognised: bits instead of
# nats, mean instead of sum over pixels, a mean over the batch, a wrong sign, the wrong target, an unstable log.


# %% nbgrader={"grade": false, "grade_id": "t01_nll", "locked": false, "schema_version": 3, "solution": true, "task": false}
def nll(logits, x):
    """NLL in nats of each image, shape (B,).

    logits: (B, C, H, W) Bernoulli logits or (B, K, C, H, W) categorical logits.
    x: (B, C, H, W) integer levels.
    """
    ### BEGIN SOLUTION
    if logits.dim() == 4:
        per_dim = F.binary_cross_entropy_with_logits(logits, x.float(), reduction="none")
    else:
        per_dim = F.cross_entropy(logits, x.long(), reduction="none")
    return per_dim.flatten(1).sum(1)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "t01_nll_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
checks.lesson01.check_nll(nll)

# %% [markdown] nbgrader={"grade": false, "grade_id": "t02_bpd_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 2 · `bits_per_dim(nats_per_image, dims)` (1 point)
#
# Convert an NLL in nats per image into **bits per dimension**: divide by the number of dimensions
# $D = C \cdot H \cdot W$ and convert nats to bits ($1\text{ nat} = 1/\ln 2$ bits).
#
# - `nats_per_image`: a float, or a tensor of NLLs (work element-wise);
# - `dims`: the integer $D$;
# - return: bits per dimension, same type and shape as `nats_per_image`.
#
# **Library:** `course_lib`'s `bits_per_dim` does this task for you: calling it earns no points; PyTorch is
# yours to use.
#
# **Checked:** on random NLLs and dimensions, a float and a tensor (the result keeps the input's type).
# Mistakes recognised: no conversion to bits, no division by $D$, multiplying by $\ln 2$, $\log_{10}$ instead
# of $\ln$.


# %% nbgrader={"grade": false, "grade_id": "t02_bpd", "locked": false, "schema_version": 3, "solution": true, "task": false}
def bits_per_dim(nats_per_image, dims):
    """Bits per dimension of an NLL given in nats per image, with D = `dims` sub-pixels per image."""
    ### BEGIN SOLUTION
    return nats_per_image / (dims * math.log(2))
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "t02_bpd_check", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
checks.lesson01.check_bits_per_dim(bits_per_dim)

# %% [markdown] nbgrader={"grade": false, "grade_id": "t03_fit_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 3 · `fit_independent(images, levels, alpha)` (2 points)
#
# The independent-pixel baseline treats every sub-pixel as its own categorical distribution (a coin, for
# binary images), fitted by counting with `alpha` pseudo-counts per level (Laplace smoothing for
# `alpha=1`):
#
# $$p_{cij}(k) = \frac{\#\{n : x^{(n)}_{cij} = k\} + \alpha}{N + K\alpha}.$$
#
# - `images`: `(N, C, H, W)` integer levels 0..K-1; `levels`: K; `alpha`: the pseudo-count;
# - return: probabilities of shape `(K, C, H, W)` (levels first), summing to 1 over the levels.
#
# **Library:** `course_lib`'s `IndependentPixelModel` does this task for you: calling it earns no points;
# PyTorch is yours to use.
#
# **Checked:** on random binary and 4-level data sets, 1 and 3 channels, where some level never occurs at
# some pixel, and one where the highest level occurs in no image at all (it still gets its pseudo-counts).
# Mistakes recognised: no pseudo-counts (zero probabilities), a wrong numerator or denominator, one
# probability for all pixels, levels in the wrong place or order, levels dropped because they are absent.


# %% nbgrader={"grade": false, "grade_id": "t03_fit", "locked": false, "schema_version": 3, "solution": true, "task": false}
def fit_independent(images, levels=2, alpha=1.0):
    """Per-sub-pixel level probabilities (K, C, H, W) of `images` (N, C, H, W), with `alpha` pseudo-counts."""
    ### BEGIN SOLUTION
    counts = F.one_hot(images.long(), levels).sum(0).permute(3, 0, 1, 2).float()  # (K, C, H, W)
    return (counts + alpha) / (images.shape[0] + alpha * levels)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "t03_fit_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
checks.lesson01.check_fit_independent(fit_independent)

# %% [markdown] nbgrader={"grade": false, "grade_id": "t03_demo_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Your baseline on the digits: the probability that each pixel is on is the average digit. It should
# agree with `course_lib.IndependentPixelModel`, which fits the same thing.

# %% nbgrader={"grade": false, "grade_id": "t03_demo", "locked": true, "schema_version": 3, "solution": false, "task": false}
probs = fit_independent(train.images, levels=2, alpha=1.0)
reference = IndependentPixelModel.fit(train, alpha=1.0).probs
print(
    f"P(pixel on) ranges from {probs[1].min():.4f} to {probs[1].max():.4f}; "
    f"largest difference from course_lib: {(probs - reference).abs().max():.1e}"
)

# %% [markdown] nbgrader={"grade": false, "grade_id": "t04_eval_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 4 · `evaluate_nll(model, dataset, batch_size)` (2 points)
#
# Report a model's NLL on a data set: the **mean over every image** of each image's NLL in nats.
#
# - `model(x)` returns logits for a batch `x` (use your `nll` from task 1 to score them);
# - `dataset` yields `(x, y)` pairs (`y` is unused); its length need not be a multiple of `batch_size`;
# - return: a float, nats per image.
#
# Evaluate in eval mode and without building a graph for gradients, then give the model back the mode it
# arrived in (train or eval); score every image exactly once, in batches of `batch_size`: the last batch
# is usually smaller, and it counts like the others. Return a Python float, not a tensor.
#
# **Library:** `course_lib`'s `evaluate` and `nll` do this task for you: calling them earns no points; PyTorch
# is yours to use.
#
# **Checked:** with a model that records how it is called, on a data set whose size is not a multiple of
# the batch size. Mistakes recognised: a dropped last batch, a mean of batch means, train mode, gradients
# enabled, bits instead of nats, a mean over pixels, a total instead of a mean.


# %% nbgrader={"grade": false, "grade_id": "t04_eval", "locked": false, "schema_version": 3, "solution": true, "task": false}
def evaluate_nll(model, dataset, batch_size=64):
    """Average NLL in nats per image over every image of `dataset`."""
    ### BEGIN SOLUTION
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for x, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False, drop_last=False):
            total += nll(model(x), x).double().sum().item()
            count += x.shape[0]
    model.train(was_training)
    return total / count
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "t04_eval_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
checks.lesson01.check_evaluate(evaluate_nll)

# %% [markdown] nbgrader={"grade": false, "grade_id": "together_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Putting it together
#
# Your baseline, scored by your evaluation loop, in your units. `IndependentPixelModel` is only used as a
# container for your probabilities (its logits are $\ln p(1) - \ln p(0)$); the numbers should match
# `course_lib.evaluate`.
#
# The baseline is fitted on all 4,000 training digits and scored on all 1,000 test digits (400 and 100 of
# every digit). A correct solution gets 207.10 nats/image = 0.3811 bits/dim on this data (measured with
# the reference solution). The fit is a count, with no randomness in it, so any other number is a bug.

# %% nbgrader={"grade": false, "grade_id": "together", "locked": true, "schema_version": 3, "solution": false, "task": false}
baseline = IndependentPixelModel(train.image_shape)
baseline.log_probs.copy_(fit_independent(train.images, levels=2, alpha=1.0).log())
mine = evaluate_nll(baseline, test, batch_size=96)
theirs = evaluate(baseline, test)
print(
    f"independent pixels on {len(test)} test digits: {mine:.2f} nats/image = "
    f"{bits_per_dim(mine, D):.4f} bits/dim (course_lib: {theirs['nats']:.2f}, {theirs['bpd']:.4f})"
)
print(f"a fair coin per pixel: {D * math.log(2):.2f} nats/image = {bits_per_dim(D * math.log(2), D):.1f} bits/dim")

# %% [markdown] nbgrader={"grade": false, "grade_id": "closing", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## What you have built
# The measuring tape of the whole course: NLL in nats per image (summed over sub-pixels, averaged over
# every image), bits per dimension, and the baseline every image model has to beat. Lesson 02 builds the
# model that beats it: masked convolutions.
