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
# # Exercises 05 · Fine-tuning and the generative classifier
#
# A trained PixelCNN is a good starting point for new data and new tasks. Here you write the pieces that
# reuse one: a fine-tuning routine that trains only chosen layers, and a classifier that needs no new
# network at all, only Bayes' rule over class-conditional likelihoods.
#
# ## What you will practise
# 1. **Fine-tuning with frozen layers**: train only the modules you name; everything else must stay
#    exactly as it was (4 points).
# 2. **Class-conditional log-likelihoods**: $\log p(x \mid y)$ of every image under every class, from one
#    class-conditional model (2 points).
# 3. **The generative classifier**: $\log p(y \mid x)$ by Bayes' rule, computed in log space (2 points).
#
# Each check runs your function on fresh tiny random models and inputs, prints `✓ ...` when it behaves like
# the reference, or `✗ ...` with what is wrong and a hint. Run the cells from the top.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math
import time

import torch
from torch.utils.data import DataLoader

from course_lib import GatedPixelCNN, evaluate, fit, load_dataset, log_prob_from_logits, pick
from course_lib.data import per_class, select_classes
from coursework import checks

torch.manual_seed(0)
torch.set_num_threads(1)  # small models: one CPU thread is faster than several competing for a busy CPU


def digits_of(dataset, classes, per_digit=None):
    """The images of `dataset` showing one of the digits `classes`: all of them, or `per_digit` of every digit
    (a fixed random draw), never the first N images, which would be the first digits only."""
    digits = select_classes(dataset, classes)
    return digits if per_digit is None else per_class(digits, per_digit)


# %% [markdown] nbgrader={"grade": false, "grade_id": "pretrain_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## A pretrained model
#
# We pretrain a small Gated PixelCNN on 14×14 binarized digits 0-4 only (all 2,000 training images of these
# five digits). Later we adapt it to digits 5-9 it has never seen, and turn it into a classifier. (This
# takes well under a minute on a CPU.)
#
# The data sets are sorted by digit, so the first N images of one would hold the first digits only:
# `digits_of` picks the same number of images of every digit it is asked for.

# %% nbgrader={"grade": false, "grade_id": "pretrain", "locked": true, "schema_version": 3, "solution": false, "task": false}
train_all = load_dataset("mnist-subset", "train", size=14)
test_all = load_dataset("mnist-subset", "test", size=14)
source = digits_of(train_all, range(5), per_digit=pick(fast=50, full=None))
target_train = digits_of(train_all, range(5, 10), per_digit=pick(fast=25, full=200))
target_test = digits_of(test_all, range(5, 10), per_digit=pick(fast=20, full=None))

torch.manual_seed(0)
pretrained = GatedPixelCNN(image_shape=source.image_shape, channels=16, dilations=(1, 2, 1, 2))
start = time.perf_counter()
fit(pretrained, source, epochs=pick(fast=1, full=3), batch_size=32, lr=5e-3, device="cpu", progress=False)
print(f"pretrained on {len(source)} digits 0-4 in {time.perf_counter() - start:.0f} s")
print(f"test NLL on digits 5-9 it has never seen: {evaluate(pretrained, target_test)['nats']:.1f} nats/image")
print("its modules:", ", ".join(name for name, _ in pretrained.named_children()))

# %% [markdown] nbgrader={"grade": false, "grade_id": "task1_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 1 · Fine-tuning with frozen layers (4 points)
#
# Write `fine_tune(model, dataset, train, *, epochs=1, lr=1e-3, batch_size=32, seed=0) -> list of floats`:
#
# - `train` is a list of module names, e.g. `["out1", "out2"]` (the output layers) or `["layers.3"]` (the
#   fourth gated layer). A parameter **trains** when its name (from `model.named_parameters()`) *is* one of
#   them or starts with one of them **followed by a dot** (`"layers.1"` covers `"layers.1.v_conv.weight"`
#   but not `"layers.10.v_conv.weight"`). Give trainable parameters `requires_grad_(True)` and **freeze**
#   every other parameter with `requires_grad_(False)`.
# - Build `torch.optim.Adam` over the **trainable parameters only**. The model may arrive holding gradients
#   from earlier training in `.grad`: they must not move anything.
# - Put the model in training mode. For every epoch, shuffle with
#   `DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed + epoch))`
#   and for every batch `(x, y)`: zero the gradients, loss = the NLL in **nats per image**
#   (`-log_prob_from_logits(model(x, labels), x).mean()`, with `labels = y` for a class-conditional model,
#   i.e. when `model.num_classes` is set, and `None` otherwise), backward, step.
# - Return the mean loss of each epoch (averaged over its images), one float per epoch.
#
# **Library:** you may use `log_prob_from_logits` from `course_lib`; its `freeze`, `Trainer` and `fit` do this
# task for you: calling them earns no points.
#
# **Check:** a tiny model with 12 gated layers, trained on 24 images with `train=["layers.1", "out2"]`
# (and a class-conditional one, briefly)
# after random gradients were left in every `.grad`. Every parameter outside those modules must be
# bit-for-bit unchanged, those inside must have changed, and the NLL of the data must have fallen. Frozen
# layers that still change (with `requires_grad` still on, or updated by the optimizer from old gradients),
# a prefix that also matches `layers.10`, and losses in bits or per pixel get their own messages.


# %% nbgrader={"grade": false, "grade_id": "t05_fine_tune", "locked": false, "schema_version": 3, "solution": true, "task": false}
def fine_tune(model, dataset, train, *, epochs=1, lr=1e-3, batch_size=32, seed=0):
    """Train only the parameters inside the modules named in `train`; return the mean loss of every epoch."""
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "t05_fine_tune_check", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
checks.lesson05.check_fine_tune(fine_tune)

# %% [markdown] nbgrader={"grade": false, "grade_id": "transfer_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Transfer to new digits
#
# We adapt two copies of the pretrained model to digits 5-9 (200 training images of each), with the same
# small budget: one trains only its output layers (`out1`, `out2`, under 1% of the parameters), the other
# every layer. A snapshot of the weights shows what moved.
#
# A correct `fine_tune` takes the test NLL on digits 5-9 from about 37.9 nats/image to about 37.5 with the
# output layers only and about 35 with every layer. (Measured with the reference solution, pretrained from
# five random starts: 37.8 to 38.0 before, 37.3 to 37.6 and 34.2 to 35.2 after.)

# %% nbgrader={"grade": false, "grade_id": "transfer", "locked": true, "schema_version": 3, "solution": false, "task": false}
import copy

every_module = [name for name, _ in pretrained.named_children()]
for label, modules in (("output layers only", ["out1", "out2"]), ("every layer", every_module)):
    model = copy.deepcopy(pretrained)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    losses = fine_tune(model, target_train, modules, epochs=pick(fast=1, full=2), lr=pick(fast=3e-3, full=1e-3))
    moved = [name for name, p in model.named_parameters() if not torch.equal(p.detach(), before[name])]
    frozen_ok = all(any(name == m or name.startswith(m + ".") for m in modules) for name in moved)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(
        f"{label:19s}: {n_train:6,d} of {sum(p.numel() for p in model.parameters()):,} parameters trained, "
        f"test NLL on 5-9 {evaluate(model, target_test)['nats']:.1f} nats/image, frozen ones unchanged: {frozen_ok}"
    )

# %% [markdown] nbgrader={"grade": false, "grade_id": "task2_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 2 · Class-conditional log-likelihoods (2 points)
#
# A class-conditional model computes $\log p(x \mid y)$ for any label $y$ you pass: `model(x, labels)` gives
# the logits, and `log_prob_from_logits(logits, x)` the log-likelihood of each image in nats (summed over
# its sub-pixels), shape `(B,)`.
#
# Write `class_log_likelihoods(model, x) -> (B, K)` with `K = model.num_classes`: entry `[b, y]` is
# $\log p(x_b \mid y)$, i.e. column `y` scores every image with `labels = torch.full((B,), y)` (on the
# model's device). Compute in eval mode under `torch.no_grad()`, and restore the model's mode at the end.
#
# **Library:** you may use `log_prob_from_logits` from `course_lib`; its `class_log_likelihoods` and
# `generative_classify` do this task for you: calling them earns no points.
#
# **Check:** a tiny class-conditional model with 3-5 classes on a few random images (more images than
# classes, so rows and columns cannot be confused). The NLL instead of the log-likelihood, a mean over
# pixels, bits, train mode and gradients each get their own message.


# %% nbgrader={"grade": false, "grade_id": "t05_class_log_likelihoods", "locked": false, "schema_version": 3, "solution": true, "task": false}
def class_log_likelihoods(model, x):
    """log p(x | y) in nats for every image of x (B, C, H, W) and every class y: shape (B, K)."""
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "t05_class_log_likelihoods_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
checks.lesson05.check_class_log_likelihoods(class_log_likelihoods)

# %% [markdown] nbgrader={"grade": false, "grade_id": "task3_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 3 · The generative classifier: Bayes' rule in log space (2 points)
#
# Bayes' rule turns class-conditional likelihoods into class probabilities:
#
# $$\log p(y \mid x) = \log p(x \mid y) + \log p(y) - \log \sum_{y'} p(x \mid y')\, p(y').$$
#
# Write `bayes_log_posterior(log_lik, log_prior=None) -> (B, K)`:
# - `log_lik`: `(B, K)`, $\log p(x_b \mid y)$ as from Task 2; `log_prior`: `(K,)` log-probabilities of the
#   classes, or `None` for the uniform prior $\log p(y) = -\log K$.
# - Return the log-posteriors: each row, exponentiated, sums to one.
#
# Whole-image log-likelihoods are large: hundreds of nats for a binary digit, thousands for a colour image.
# $e^{-1000}$ is 0 even in float64, so **stay in log space** (`torch.logsumexp`, or `torch.log_softmax`).
#
# **Library:** `course_lib`'s `generative_classify` does this task for you: calling it earns no points;
# PyTorch is yours to use.
#
# **Check:** log-likelihoods around −1000 nats, with a uniform and a non-uniform prior. Underflow (NaN),
# a missing normalisation, a normalisation over the images, an ignored prior and probabilities instead of
# log-probabilities each get their own message.


# %% nbgrader={"grade": false, "grade_id": "t05_bayes", "locked": false, "schema_version": 3, "solution": true, "task": false}
def bayes_log_posterior(log_lik, log_prior=None):
    """log p(y | x) (B, K) from log p(x | y) (B, K) and log p(y) (K,) (uniform if None)."""
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "t05_bayes_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
checks.lesson05.check_bayes(bayes_log_posterior)

# %% [markdown] nbgrader={"grade": false, "grade_id": "classifier_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Putting it together: a classifier from a generative model
#
# The pretrained model is unconditional. We give it a class input the way the lesson did: a
# class-conditional copy with the same weights and a learned bias per class in every gated layer, started
# at zero (so at first it computes exactly what the pretrained model computed). Then your `fine_tune`
# trains only those class biases and the output layers on 200 training images of each of the ten digits,
# and your two functions classify the 1,000 test digits (100 of each). Chance is 10%.
#
# A correct solution gets about 70% of the test digits right on this data, and every digit well above
# chance (measured with the reference solution: 67% with the seeds in this notebook, 67% to 76% over five
# seeds of the pretraining and the fine-tuning, every digit between 51% and 95%). An accuracy near 10%, or
# a digit that is almost never right, points to a bug rather than to an unlucky run.

# %% nbgrader={"grade": false, "grade_id": "classifier", "locked": true, "schema_version": 3, "solution": false, "task": false}
conditional = GatedPixelCNN(**{**pretrained.config, "num_classes": 10})
missing, unexpected = conditional.load_state_dict(pretrained.state_dict(), strict=False)
assert not unexpected and all(name.endswith("class_bias.weight") for name in missing)
with torch.no_grad():
    for name in missing:
        conditional.get_parameter(name).zero_()

labelled = digits_of(train_all, range(10), per_digit=pick(fast=30, full=200))
class_modules = [f"layers.{k}.class_bias" for k in range(len(conditional.layers))] + ["out1", "out2"]
start = time.perf_counter()
fine_tune(conditional, labelled, class_modules, epochs=pick(fast=1, full=3), lr=5e-3)
print(f"fine-tuned the class biases and output layers in {time.perf_counter() - start:.0f} s")

judge = digits_of(test_all, range(10), per_digit=pick(fast=10, full=None))
log_post = bayes_log_posterior(class_log_likelihoods(conditional, judge.images))
right = log_post.argmax(1).cpu() == judge.labels
print(f"generative classifier on {len(judge)} test digits: {right.float().mean():.0%} correct (chance: 10%)")
print("correct per digit:", ", ".join(f"{d}: {right[judge.labels == d].float().mean():.0%}" for d in range(10)))
print("posterior rows sum to one:", torch.allclose(log_post.exp().sum(1), torch.ones(len(judge)), atol=1e-4))

# %% [markdown] nbgrader={"grade": false, "grade_id": "closing", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## What you wrote
# - **Fine-tuning with frozen layers**: `requires_grad_(False)` on every parameter you do not train, an
#   optimizer over the trainable ones only, and a check that nothing frozen moved, not even from gradients
#   left over from earlier training. Name prefixes match at dot boundaries (`layers.1` is not `layers.10`).
# - **Class-conditional log-likelihoods**: one forward pass per class, summed over pixels, in eval mode.
# - **The generative classifier**: Bayes' rule in log space; `logsumexp` keeps it finite where `exp` would
#   underflow.
#
# Lesson 05 and `course_lib/finetune.py` hold the library versions of these pieces: read them now and
# compare.
