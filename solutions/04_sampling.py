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
# # Exercises 04 · Sampling: drawing and completing images
#
# In lesson 04, `course_lib.sample` drew digits, applied a temperature and completed half-hidden digits for
# you. Here you write its three moving parts yourself, each checked right away against the reference.
#
# ## What you will practise
# 1. **Temperature**: turn one sub-pixel's logits into probabilities at temperature $T$, for binary
#    (Bernoulli) and $K$-level (categorical) images (2 points).
# 2. **The ancestral sampling loop**: draw an image one sub-pixel at a time in raster order, in eval mode
#    and without gradients (3 points).
# 3. **Completion**: keep the given pixels of partly hidden images and draw only the missing ones
#    (3 points).
#
# Each check runs your function on fresh tiny random models (binary and colour, 4-level) with a seeded
# generator, next to `course_lib.sample` with the same seed. A correct loop makes the same random draws in
# the same order, so it must give *exactly* the same images. The check prints `✓ ...` when it does, or
# `✗ ...` with what is wrong and a hint. Run the cells from the top.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import time

import matplotlib.pyplot as plt
import torch

from course_lib import GatedPixelCNN, fit, load_dataset, occlude, pick, sample
from course_lib.data import per_class, select_classes
from course_lib.plotting import show_grid
from course_lib.sampling import draw
from coursework import checks

torch.manual_seed(0)
torch.set_num_threads(1)  # small models: one CPU thread is faster than several competing for a busy CPU

# %% [markdown] nbgrader={"grade": false, "grade_id": "task1_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 1 · Temperature (2 points)
#
# The model gives logits for every sub-pixel. For one sub-pixel of a batch of images they are either
# - **Bernoulli** (binary images): a tensor of shape `(B,)`, one logit $\ell = \log P(x{=}1) - \log P(x{=}0)$
#   per image; or
# - **categorical** ($K$ levels): a tensor of shape `(B, K)`, one row of $K$ logits per image.
#
# Write `temperature_probs(logits, temperature) -> probabilities`:
# - Bernoulli `(B,)` → $P_T(x{=}1) = \sigma(\ell / T)$, shape `(B,)`;
# - categorical `(B, K)` → $\mathrm{softmax}(\ell / T)$ over the $K$ levels, shape `(B, K)` (each row sums to one).
#
# Temperature divides the **logits, before** the sigmoid or softmax: $T < 1$ sharpens the distribution,
# $T > 1$ flattens it.
#
# **Library:** `course_lib`'s `probabilities` and `distribution_at` do this task for you: calling them earns
# no points; PyTorch is yours to use.
#
# **Check:** random logits at $T = 0.05, 0.5, 1, 2$ and $20$ (logits up to ±8, a batch of one). Temperature
# applied after the sigmoid/softmax, ignored or multiplied, a softmax over the wrong dimension and an
# exponential that overflows each get their own message.


# %% nbgrader={"grade": false, "grade_id": "t04_temperature", "locked": false, "schema_version": 3, "solution": true, "task": false}
def temperature_probs(logits, temperature):
    """Probabilities at temperature T: P(x=1) (B,) for Bernoulli logits (B,), softmax (B, K) for logits (B, K)."""
    ### BEGIN SOLUTION
    scaled = logits.float() / temperature
    if scaled.dim() == 1:
        return torch.sigmoid(scaled)
    return torch.softmax(scaled, dim=1)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "t04_temperature_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
checks.lesson04.check_temperature_probs(temperature_probs)

# %% [markdown] nbgrader={"grade": false, "grade_id": "task2_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 2 · The ancestral sampling loop (3 points)
#
# Write `ancestral_sample(model, n, *, temperature=1.0, labels=None, generator=None)` returning `n` images
# of integer levels, shape `(n, C, H, W)` with `C, H, W = model.image_shape`:
#
# - Sample in **eval mode** and under **`torch.no_grad()`**; afterwards put the model back into the mode it
#   was in (`was_training = model.training` ... `model.train(was_training)`).
# - Start from `x = torch.zeros(n, C, H, W, dtype=torch.long)` on the model's device
#   (`next(model.parameters()).device`).
# - Visit the sub-pixels in the masks' order: rows `i` top to bottom, columns `j` left to right, and inside
#   a pixel the channels `c` (R, G, B) — the channel loop innermost. For each one:
#   - `logits = model(x, labels)`: one forward pass per sub-pixel;
#   - its probabilities with your `temperature_probs`: from `logits[:, c, i, j]` for a binary model
#     (`model.levels == 2`, logits `(B, C, H, W)`) or `logits[:, :, c, i, j]` otherwise (logits
#     `(B, K, C, H, W)`);
#   - draw the values with `draw(probs, generator)` (imported from `course_lib.sampling`) and write them
#     into `x[:, c, i, j]`, so that the next pass sees them.
#
# With the same generator, your loop then makes exactly the draws `course_lib.sample` makes.
#
# **Library:** you may use `draw` from `course_lib`; its `sample`, `sample_naive`, `sample_cached`,
# `AncestralStepper` and `distribution_at` do this task for you: calling them earns no points.
#
# **Check:** a class-conditional binary model at $T = 1.5$ and a 3-channel 4-level model at $T = 0.6$ and
# $T = 1$, on images that are not square and a batch of one, compared with `course_lib.sample(..., seed=...)`.
# It watches every forward pass: sampling in train mode or with gradients on, a single forward pass for all
# pixels, column or channel order, and a wrong temperature each get their own message.


# %% nbgrader={"grade": false, "grade_id": "t04_sample", "locked": false, "schema_version": 3, "solution": true, "task": false}
def ancestral_sample(model, n, *, temperature=1.0, labels=None, generator=None):
    """Draw n images (n, C, H, W) of integer levels from `model`, one sub-pixel at a time in raster order."""
    ### BEGIN SOLUTION
    c, h, w = model.image_shape
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    x = torch.zeros(n, c, h, w, dtype=torch.long, device=device)
    with torch.no_grad():
        for i in range(h):
            for j in range(w):
                for ch in range(c):
                    logits = model(x, labels)
                    site = logits[:, ch, i, j] if model.levels == 2 else logits[:, :, ch, i, j]
                    x[:, ch, i, j] = draw(temperature_probs(site, temperature), generator)
    model.train(was_training)
    return x
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "t04_sample_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
checks.lesson04.check_sample(ancestral_sample)

# %% [markdown] nbgrader={"grade": false, "grade_id": "task3_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 3 · Completion: keep what is given (3 points)
#
# Write `complete(model, images, known, *, temperature=1.0, labels=None, generator=None)` returning the
# completed images, shape `(n, C, H, W)`:
#
# - `images`: `(n, C, H, W)` integer levels; `known`: a boolean mask broadcastable to them (e.g. `(1, 1, H, W)`
#   for one mask for all images, or `(n, 1, H, W)` for one per image), `True` where the pixel is given.
# - Eval mode and `torch.no_grad()` as before, and restore the model's mode at the end.
# - Start from the given pixels: `x = images.clone()` on the model's device, and
#   `known = known.expand_as(x)`.
# - Visit the sub-pixels in raster order (channels innermost). If **every** image knows sub-pixel
#   `(c, i, j)`, skip it: no forward pass, no draw. Otherwise run the model, draw the values for all images
#   with `draw(temperature_probs(...), generator)`, and **keep the given values**: only images that do not
#   know the sub-pixel take the drawn value (`torch.where`).
#
# Since the given pixels are in `x` from the start, every hidden pixel is drawn conditioned on the given
# pixels before it in raster order.
#
# **Library:** you may use `draw` from `course_lib`; its `sample`, `sample_naive`, `sample_cached`,
# `AncestralStepper` and `complete_best_of` do this task for you: calling them earns no points.
#
# **Check:** bottom halves, boxes, right halves and random pixels hidden, for binary and colour images (not
# square, and a batch of one), compared with `course_lib.sample(..., given=(images, known), seed=...)`. Given pixels overwritten (or
# missing), given pixels pasted back only at the end, drawing sub-pixels every image knows, train mode and
# missing `no_grad` each get their own message.


# %% nbgrader={"grade": false, "grade_id": "t04_complete", "locked": false, "schema_version": 3, "solution": true, "task": false}
def complete(model, images, known, *, temperature=1.0, labels=None, generator=None):
    """Fill in the sub-pixels of `images` (n, C, H, W) where `known` is False; the known ones stay as given."""
    ### BEGIN SOLUTION
    n, c, h, w = images.shape
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    x = images.clone().long().to(device)
    known = torch.as_tensor(known).bool().to(device).expand_as(x)
    with torch.no_grad():
        for i in range(h):
            for j in range(w):
                for ch in range(c):
                    given = known[:, ch, i, j]
                    if given.all():
                        continue
                    logits = model(x, labels)
                    site = logits[:, ch, i, j] if model.levels == 2 else logits[:, :, ch, i, j]
                    drawn = draw(temperature_probs(site, temperature), generator)
                    x[:, ch, i, j] = torch.where(given, x[:, ch, i, j], drawn)
    model.train(was_training)
    return x
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "t04_complete_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
checks.lesson04.check_complete(complete)

# %% [markdown] nbgrader={"grade": false, "grade_id": "together_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Putting it together
#
# Your three functions are a complete sampler. We train a small Gated PixelCNN on 14×14 binarized digits
# (100 of every digit; a minute or less on a CPU), then draw digits with your loop at three temperatures,
# and complete the bottom halves of six test digits, one each of 0 to 5. With the same seed,
# `course_lib.sample` must give the same images.
#
# A correct solution prints `True` on every line, and a mean log p(x) that falls as the temperature rises:
# hotter samples are less likely under the model. Measured with the reference solution: a test NLL of 40.5
# nats/image (it comes from `fit`, not from your code) and a mean log p(x) of −30.8, −47.1 and −60.6 nats
# at T = 0.7, 1.0 and 1.3; from two other random starts of the model, 38.7 and 40.6 nats/image, and −29.9,
# −46.4 to −46.6 and −58.1 to −58.6 nats.

# %% nbgrader={"grade": false, "grade_id": "train_model", "locked": true, "schema_version": 3, "solution": false, "task": false}
train = per_class(load_dataset("mnist-subset", "train", size=14), pick(fast=25, full=100))  # images of every digit
test = per_class(load_dataset("mnist-subset", "test", size=14), pick(fast=10, full=100))
torch.manual_seed(0)
model = GatedPixelCNN(image_shape=train.image_shape, channels=pick(fast=16, full=24), dilations=(1, 2, 1, 2))
start = time.perf_counter()
history = fit(model, train, test, epochs=pick(fast=1, full=2), batch_size=32, lr=5e-3, device="cpu", progress=False)
print(f"trained in {time.perf_counter() - start:.0f} s: test NLL {history['test_nats'][-1]:.1f} nats/image")

# %% nbgrader={"grade": false, "grade_id": "temperatures", "locked": true, "schema_version": 3, "solution": false, "task": false}
per_t = 8
temperatures = (0.7, 1.0, 1.3)
drawn = {}
for t in temperatures:
    drawn[t] = ancestral_sample(model, per_t, temperature=t, generator=torch.Generator().manual_seed(1))
    same = torch.equal(drawn[t].cpu(), sample(model, per_t, temperature=t, seed=1, method="naive"))
    mean_log_p = model.log_prob(drawn[t]).mean().item()
    print(f"T = {t}: mean log p(x) = {mean_log_p:6.1f} nats; identical to course_lib.sample: {same}")
show_grid(
    torch.cat([drawn[t].cpu() for t in temperatures]),
    "Your samples at T = 0.7, 1.0, 1.3 (top to bottom)",
    nrow=per_t,
    xlabel="sample",
    ylabel="temperature",
)
plt.show()

# %% nbgrader={"grade": false, "grade_id": "completions", "locked": true, "schema_version": 3, "solution": false, "task": false}
six_digits = per_class(select_classes(test, range(6)), 1)  # one test image of each of the digits 0-5
originals = six_digits.images
images, known = occlude(originals, "bottom")
filled = complete(model, images, known, generator=torch.Generator().manual_seed(2)).cpu()
kept = torch.equal(filled[known.expand_as(filled)], originals[known.expand_as(originals)])
same = torch.equal(filled, sample(model, len(originals), given=(images, known), seed=2, method="naive"))
print(f"given pixels kept: {kept}; identical to course_lib.sample(given=...): {same}")
shown = torch.where(known, 2 * originals, torch.ones_like(originals))  # grey where hidden
show_grid(
    torch.cat([2 * originals, shown, 2 * filled]),
    "Originals, what the model is given, your completions",
    nrow=len(originals),
    levels=3,
    xlabel="test digit",
    ylabel="original / given / completed",
)
plt.show()

# %% [markdown] nbgrader={"grade": false, "grade_id": "closing", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## What you wrote
# - **Temperature** divides the logits before the sigmoid or softmax. Dividing the probabilities afterwards
#   either breaks them (they no longer sum to one) or does nothing at all (the draw renormalises them).
# - **Ancestral sampling**: one forward pass per sub-pixel, in the order the masks define (rows, columns,
#   then R, G, B), each draw written into the image before the next pass; in eval mode, without gradients.
# - **Completion** is the same loop started from the given image: given sub-pixels are never drawn over,
#   and sub-pixels every image knows cost nothing.
#
# These are the pieces of `course_lib/heads.py` (`distribution_at`, `draw`) and `course_lib/sampling.py`
# (`sample_naive`): read them now and compare. Next: lesson 05, fine-tuning.
