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
# # 05 · Fine-tuning: reusing a PixelCNN on new data and new tasks
#
# A PixelCNN trained on images alone has learned a great deal about them: strokes, their thickness, how
# they continue. This lesson asks what that knowledge is worth when the data or the task changes, and
# answers every question with a measurement.
#
# ## What you will learn
# - **transfer to new data**: pretrain on the digits 0–4, adapt to the digits 5–9, and compare with
#   training from scratch on 10, 100 and 1,000 target images;
# - **what to fine-tune**: all layers or only the top ones, and at which learning rate, measured on the new
#   digits *and* on the old ones (forgetting);
# - **new inputs**: add class conditioning to a pretrained unconditional model without changing what it
#   computes, then fine-tune it to draw chosen digits;
# - **new tasks with few labels**: a classification head on the pretrained network's features, against the
#   same network trained from scratch on the same labels;
# - **the likelihood as a tool**: a generative classifier by Bayes' rule, compared with a small
#   discriminative CNN, and the repair of noisy digits by maximising the posterior.
#
# The helpers live in `course_lib/finetune.py` (about 300 lines, one idea per function); read it alongside.
# Everything runs on the CPU in a few minutes; `COURSE_FAST=1` shrinks every size so the tests finish in
# about a minute.

# %%
import copy

import matplotlib.pyplot as plt
import numpy as np
import torch

from course_lib import (
    GatedPixelCNN,
    IndependentPixelModel,
    count_parameters,
    evaluate,
    fit,
    is_fast,
    load_dataset,
    pick,
    sample,
)
from course_lib.data import per_class, select_classes
from course_lib.finetune import (
    FeatureClassifier,
    SmallCNN,
    accuracy,
    add_conditioning,
    changed_parameters,
    complete_best_of,
    denoise,
    fit_classifier,
    freeze,
    generative_classify,
    hidden_error,
    snapshot,
)
from course_lib.plotting import show_grid

print(f"fast mode: {is_fast()}")

# %% [markdown]
# ## The setting: a source task and a target task
#
# **Question: how do we simulate "a new data set with few examples" offline?** We split `mnist-subset`
# (4,000 training and 1,000 test digits, binarized at 0.5) by class:
#
# - the **source** task is the digits 0–4: plenty of images, used once to pretrain;
# - the **target** task is the digits 5–9: we pretend only a handful of them are available.
#
# Both tasks are binary 28×28 digits, so one model fits both; the question is how much of what it learns
# on one carries over to the other. All target test sets below are fixed, class-balanced subsets, so every
# method is scored on the same images.

# %%
train = load_dataset("mnist-subset", "train")
test = load_dataset("mnist-subset", "test")
source_train = per_class(select_classes(train, range(5)), pick(fast=80, full=400))
source_test = per_class(select_classes(test, range(5)), pick(fast=20, full=60))
target_pool = select_classes(train, range(5, 10))  # the target images we may draw small training sets from
target_test = per_class(select_classes(test, range(5, 10)), pick(fast=20, full=60))
print(f"source: {len(source_train)} training / {len(source_test)} test images of digits 0-4")
print(f"target: up to {len(target_pool)} training / {len(target_test)} test images of digits 5-9")
fig, axes = plt.subplots(1, 2, figsize=(11, 2.6))
show_grid(
    source_train.images[:: len(source_train) // 10][:10],
    "Source task: digits 0-4",
    nrow=10,
    ax=axes[0],
    xlabel="training image",
    ylabel="image",
)
show_grid(
    target_pool.images[:: len(target_pool) // 10][:10],
    "Target task: digits 5-9",
    nrow=10,
    ax=axes[1],
    xlabel="training image",
    ylabel="image",
)
plt.tight_layout()
plt.show()

# %% tags=["nbval-check-output"]
print(
    sorted(select_classes(train, range(5)).labels.unique().tolist()),
    sorted(target_pool.labels.unique().tolist()),
    len(target_pool),
    target_pool.image_shape,
)

# %% [markdown]
# **Which model does each section start from?** (sizes in full mode; fast mode uses fewer images)
#
# | section | starts from | trained here on |
# |---|---|---|
# | 1 · Pretraining | random weights | 2,000 source digits 0–4 |
# | 2 · Fine-tuning vs scratch | section 1's `pretrained` model, or random weights | N = 10, 100, 1,000 target digits 5–9 |
# | 3 · What to fine-tune | `pretrained`, some layers frozen | the N = 100 target set |
# | 4 · Adding conditioning | `base`: section 2's model fine-tuned on N = 1,000, plus class biases set to zero | 1,000 labelled digits 0–9 |
# | 5 · Few labels | `base`'s layers (or random ones) under a new linear head | 10 or 100 labels per class |
# | 6 · Bayes' rule | section 4's conditional model | nothing: it only scores |
# | 7 · Repair | `base` | nothing: it only scores and samples |

# %% [markdown]
# ## 1 · Pretraining on the source digits
#
# **Question: how much does a model of the digits 0–4 already know about 5–9?** We train a small Gated
# PixelCNN on the source digits, then score it on both test sets without showing it a single 5–9.
# The reference is the independent-pixel model (lesson 01) fitted on *all* the target training digits:
# it knows where 5–9 put their ink, but nothing about strokes.

# %%
MODEL = dict(channels=pick(fast=8, full=16), dilations=pick(fast=(1, 2, 1), full=(1, 2, 1, 4)))


def new_model():
    """A fresh, randomly initialised Gated PixelCNN of the size used throughout this lesson."""
    return GatedPixelCNN(**MODEL)


torch.manual_seed(0)
pretrained = new_model()
fit(
    pretrained,
    source_train,
    None,
    epochs=pick(fast=4, full=3),
    batch_size=pick(fast=16, full=32),
    lr=pick(fast=1e-2, full=5e-3),
    device="cpu",
    progress=False,
)
zero_shot = evaluate(pretrained, target_test)
on_source = evaluate(pretrained, source_test)
independent = evaluate(IndependentPixelModel.fit(target_pool), target_test)
print(f"Gated PixelCNN, {count_parameters(pretrained):,} parameters, trained on {len(source_train)} digits 0-4")
print(f"  source test (0-4): {on_source['nats']:6.1f} nats/image = {on_source['bpd']:.4f} bits/dim")
print(f"  target test (5-9): {zero_shot['nats']:6.1f} nats/image = {zero_shot['bpd']:.4f} bits/dim  (never saw a 5-9)")
print(
    f"independent pixels fitted on all {len(target_pool)} target digits: "
    f"{independent['nats']:6.1f} nats/image = {independent['bpd']:.4f} bits/dim"
)

# %% [markdown]
# The pretrained model scores the unseen digits only a little worse than the digits it was trained on, and
# far better than the independent model that was fitted on the target digits themselves. What it learned
# is mostly *how pen strokes behave*, which every digit shares. That is why fine-tuning works.

# %%
assert zero_shot["nats"] < independent["nats"] - pick(fast=20, full=60), (
    "the pretrained model should beat independent pixels on digits it never saw"
)

# %% [markdown]
# ## 2 · Fine-tuning against training from scratch
#
# **Question: with $N$ target images, is it better to start from the pretrained weights or from random
# ones?** For each $N$ we draw a class-balanced target set, then train two copies for the *same* number of
# steps on it:
#
# - **fine-tune**: start from the pretrained weights, learning rate $10^{-3}$ (small: we want to adjust, not
#   to overwrite);
# - **scratch**: start from random weights, learning rate $5\cdot10^{-3}$ (the one that worked for
#   pretraining).
#
# Both use Adam with a cosine schedule and are scored on the same target test digits, in bits per dimension
# (lower is better). Small sets get more passes over their images, so every run takes a comparable number
# of steps.

# %%
SIZES = pick(fast=(10, 50, 200), full=(10, 100, 1000))
PLAN = pick(
    fast={10: (10, 10), 50: (10, 4), 200: (16, 2)},  # N -> (batch size, epochs)
    full={10: (10, 30), 100: (20, 10), 1000: (32, 2)},
)
FINETUNE_LR, SCRATCH_LR = 1e-3, 5e-3


def adapt(model, data, lr):
    """Train `model` on `data` with the step plan for its size; returns the model (trained in place)."""
    batch_size, epochs = PLAN[len(data)]
    fit(model, data, None, epochs=epochs, batch_size=batch_size, lr=lr, device="cpu", progress=False)
    return model


results, target_sets, finetuned = {}, {}, {}
for n in SIZES:
    target_sets[n] = per_class(target_pool, n // 5, seed=0)
    torch.manual_seed(1)
    finetuned[n] = adapt(copy.deepcopy(pretrained), target_sets[n], FINETUNE_LR)
    torch.manual_seed(1)
    scratch = adapt(new_model(), target_sets[n], SCRATCH_LR)
    results[n] = {
        "fine-tune": evaluate(finetuned[n], target_test)["bpd"],
        "scratch": evaluate(scratch, target_test)["bpd"],
    }
    print(
        f"N = {n:4d} target images:  fine-tuned {results[n]['fine-tune']:.4f}   "
        f"scratch {results[n]['scratch']:.4f} bits/dim"
    )

# %%
fig, ax = plt.subplots(figsize=(6.5, 4))
ax.plot(SIZES, [results[n]["fine-tune"] for n in SIZES], "o-", label="fine-tuned from digits 0-4")
ax.plot(SIZES, [results[n]["scratch"] for n in SIZES], "s-", label="trained from scratch")
ax.axhline(zero_shot["bpd"], color="gray", linestyle="--", label="pretrained, not fine-tuned")
ax.axhline(independent["bpd"], color="black", linestyle=":", label="independent pixels (all target data)")
ax.set_xscale("log")
ax.set_xticks(SIZES, [str(n) for n in SIZES])
ax.set_title("Adapting to digits 5-9: fine-tuning vs scratch")
ax.set_xlabel("number of target training images N (log scale)")
ax.set_ylabel("target test NLL (bits/dim)")
ax.legend()
plt.show()

# %% [markdown]
# Read the plot from left to right:
#
# - with **10 images**, training from scratch learns little more than "mostly black, ink near the
#   middle", while the pretrained model is already good: fine-tuning on 10 images can hardly move it, and
#   it should not (10 images are easily memorised);
# - with **100 images**, fine-tuning improves on the pretrained model and scratch is still far behind;
# - with **1,000 images**, scratch closes much of the gap, but with the same training budget the fine-tuned
#   model stays ahead. Given many more images and steps, scratch would catch up: pretraining buys
#   *data efficiency*, not a better final model.

# %%
for n in SIZES[:2]:
    assert results[n]["fine-tune"] < results[n]["scratch"] - 0.01, f"fine-tuning should beat scratch at N={n}"
assert (
    results[SIZES[0]]["scratch"] - results[SIZES[0]]["fine-tune"]
    > results[SIZES[-1]]["scratch"] - results[SIZES[-1]]["fine-tune"]
), "the advantage of pretraining shrinks as N grows"

# %% [markdown]
# ## 3 · What to fine-tune, and how fast
#
# **Question: should every weight move?** Freezing layers has two reasons: fewer free parameters overfit
# less on tiny data sets, and the frozen part keeps what it knew. The price is less freedom to adapt.
# `freeze(model, train=prefixes)` keeps only the parameters under the named modules trainable; the others
# get `requires_grad=False`, receive no gradient, and the optimiser leaves them alone.
#
# The modules of our Gated PixelCNN, from input to output: `v_in`, `h_in` (the first, masked 7×7 and 1×7
# convolutions), `layers.0` … `layers.3` (the gated layers) and `out1`, `out2` (the 1×1 output layers).
# We fine-tune on the $N=100$ target set and score every variant on the target digits **and** on the source
# digits, to see how much of the old task is forgotten.

# %%
print([name for name, _ in pretrained.named_children()], f"{len(pretrained.layers)} gated layers")
n_mid = SIZES[1]
last = f"layers.{len(pretrained.layers) - 1}"
variants = {  # name -> (modules to train, None = all; learning rate)
    "output layers only": (("out1", "out2"), FINETUNE_LR),
    "last gated layer + output": ((last, "out1", "out2"), FINETUNE_LR),
    "all layers, lr 1e-2": (None, 1e-2),
}
table = {"not fine-tuned": (pretrained, 0)}
for name, (modules, lr) in variants.items():
    model = copy.deepcopy(pretrained)
    trainable = freeze(model, train=modules) if modules else [n for n, _ in model.named_parameters()]
    before = snapshot(model)
    torch.manual_seed(1)
    adapt(model, target_sets[n_mid], lr)
    moved = changed_parameters(model, before)
    assert set(moved) <= set(trainable), "a frozen parameter changed"
    table[name] = (model, sum(model.get_parameter(p).numel() for p in trainable))
table["all layers, lr 1e-3"] = (finetuned[n_mid], count_parameters(pretrained))  # the run of section 2

scores = {}
for name, (model, n_params) in table.items():
    scores[name] = (evaluate(model, target_test)["bpd"], evaluate(model, source_test)["bpd"])
    print(
        f"{name:27s} {n_params:6,d} trained parameters   target {scores[name][0]:.4f}   "
        f"source {scores[name][1]:.4f} bits/dim"
    )

# %%
names = list(scores)
pos = np.arange(len(names))
fig, ax = plt.subplots(figsize=(9, 4))
ax.bar(pos - 0.2, [scores[k][0] for k in names], 0.4, label="target test (digits 5-9)")
ax.bar(pos + 0.2, [scores[k][1] for k in names], 0.4, label="source test (digits 0-4)")
low = min(min(v) for v in scores.values())
ax.set_ylim(low * 0.95, max(max(v) for v in scores.values()) * 1.02)
ax.set_xticks(pos, names, rotation=15)
ax.set_title(f"What to fine-tune (N = {n_mid} target images)")
ax.set_xlabel("variant")
ax.set_ylabel("test NLL (bits/dim, axis does not start at 0)")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# What the table shows:
#
# - training **only the top** of the network helps on the target digits and barely touches the source
#   score: the frozen layers still compute what they did;
# - training **all layers at a small learning rate** adapts best to the new digits, at the cost of a
#   slightly worse source score — that is *forgetting*, measured;
# - a **large learning rate** throws away part of what pretraining gave: the model forgets the old digits
#   and is not better on the new ones.
#
# Freezing is the cautious choice when the old task must be kept or the target set is tiny; here, with
# 100 images, gentle fine-tuning of everything adapts best. The learning rate mattered more than the choice
# of layers.

# %%
assert scores["all layers, lr 1e-3"][0] < scores["not fine-tuned"][0], "gentle fine-tuning helps on the target"
assert (
    scores["output layers only"][1] - scores["not fine-tuned"][1]
    < scores["all layers, lr 1e-2"][1] - scores["not fine-tuned"][1]
), "a large learning rate forgets more"

# %% [markdown]
# ## 4 · Adding class conditioning to a pretrained model
#
# **Question: can an unconditional model learn to draw the digit we ask for, without starting over?**
# A class-conditional Gated PixelCNN adds a learned bias $b_y$ for class $y$ to the pre-activations of
# every gated layer:
# $$ \mathbf{h} = \tanh(W_f * \mathbf{x} + b_{f,y}) \odot \sigma(W_g * \mathbf{x} + b_{g,y}). $$
# `add_conditioning(model, 10)` builds that model, copies every pretrained weight into it and sets all
# $b_y = 0$. With zero biases the label changes nothing, so the new model computes *exactly* the same
# likelihoods as the old one, for every label: fine-tuning starts from the pretrained model, not from a
# damaged copy of it.
#
# From here on we start from the model fine-tuned on $N$ = 1,000 target images: it has seen, without any
# labels, digits of all ten classes. Labels now come in: a set of 100 labelled digits per class
# (1,000 images, `labelled` below), the only labels the rest of this lesson uses.

# %%
base = finetuned[SIZES[-1]].eval()
conditional = add_conditioning(base, num_classes=10)
probe = test.images[:16]
same = all(torch.equal(conditional.log_prob(probe, torch.full((16,), y)), base.log_prob(probe)) for y in range(10))
new = [n for n, _ in conditional.named_parameters() if "class_bias" in n]
print(f"{len(new)} new class-bias tables, all zero: {all(conditional.get_parameter(n).abs().sum() == 0 for n in new)}")
print(f"conditional model == pretrained model for every label: {same}")

# %% tags=["nbval-check-output"]
assert same, "add_conditioning must start exactly at the pretrained model"
print("identical log-likelihoods for all 10 labels")

# %% [markdown]
# Fine-tuning on the labelled digits teaches the biases what each class looks like. The biases start at
# zero and must grow large, so this run uses a larger learning rate than section 2.
#
# **The check that matters:** does the model use the labels? Score every test digit once with its true
# label and once with a random *wrong* label. If the labels carry information, the true ones must give a
# clearly higher likelihood.

# %%
labelled = per_class(train, pick(fast=20, full=100), seed=0)
classify_test = load_dataset("mnist-subset", "test", limit=pick(fast=100, full=300))
torch.manual_seed(2)
fit(conditional, labelled, None, epochs=4, batch_size=pick(fast=16, full=32), lr=1e-2, device="cpu", progress=False)
g = torch.Generator().manual_seed(0)
wrong = (classify_test.labels + torch.randint(1, 10, classify_test.labels.shape, generator=g)) % 10
with torch.no_grad():
    true_nats = -conditional.log_prob(classify_test.images, classify_test.labels).mean().item()
    wrong_nats = -conditional.log_prob(classify_test.images, wrong).mean().item()
base_nats = evaluate(base, classify_test)["nats"]
print(
    f"test digits 0-9, nats/image:  conditional, true label {true_nats:6.1f}   "
    f"conditional, wrong label {wrong_nats:6.1f}   unconditional start {base_nats:6.1f}"
)

# %%
assert true_nats < wrong_nats - pick(fast=0.5, full=3), "the true label must make a digit more likely than a wrong one"

# %% [markdown]
# Now ask for chosen digits, one sample for each class 0 to 9 (sampling takes 784 forward passes, so we
# keep it to ten).

# %%
wanted = torch.arange(10)
drawn = sample(conditional, len(wanted), labels=wanted, seed=0)
show_grid(
    drawn,
    "Class-conditional samples, one per requested digit",
    nrow=10,
    xlabel="requested digit: 0, 1, ..., 9",
    ylabel="sample",
)
plt.show()

# %% [markdown]
# A small model fine-tuned for a minute draws rough digits: a few look like the requested class, most are
# only digit-like strokes. Section 6 measures this with a classifier. More labelled data, a larger model
# and longer training all help; lesson 04 trains a class-conditional model with labels from the start.
#
# ## 5 · Few labels: a classification head on pretrained features
#
# **Question: does unlabelled pretraining help a classifier that has only a few labels?** This is the
# promise of self-supervised learning: the PixelCNN's training signal was the images themselves, and
# its hidden layers had to learn strokes and shapes to predict pixels.
#
# `features(model, x)` returns the last hidden feature map, the tensor the output layer `out1` reads,
# shape (B, channels, 28, 28). `FeatureClassifier` averages it over a 4×4 grid of image regions (a global
# average would throw away *where* the strokes are) and adds one linear layer. We fine-tune the whole
# classifier with 10 and with 100 labels per class, and train the *same* architecture from random weights
# on the same labels, for the same number of steps (about 100 at both label counts). `SmallCNN`, an
# ordinary two-layer convolutional classifier, is the discriminative reference.

# %%
LABELS_PER_CLASS = pick(fast=(5, 20), full=(10, 100))
CLF_PLAN = pick(fast={5: (10, 10), 20: (16, 4)}, full={10: (10, 10), 100: (32, 3)})  # labels -> (batch, epochs)
accuracies = {}
for k in LABELS_PER_CLASS:
    few = per_class(labelled, k, seed=1)
    batch_size, epochs = CLF_PLAN[k]
    for name, body in [("PixelCNN body, pretrained", copy.deepcopy(base)), ("PixelCNN body, scratch", new_model())]:
        torch.manual_seed(3)
        clf = FeatureClassifier(body, num_classes=10)
        fit_classifier(clf, few, epochs=epochs, batch_size=batch_size, lr=3e-3)
        accuracies[name, k] = accuracy(clf, classify_test)
    torch.manual_seed(3)
    cnn = SmallCNN()
    fit_classifier(
        cnn,
        few,
        epochs=pick(fast=10, full=30) if k == LABELS_PER_CLASS[0] else pick(fast=4, full=8),
        batch_size=32,
        lr=3e-3,
    )
    accuracies["small CNN", k] = accuracy(cnn, classify_test)
    print(
        f"{k:3d} labels per class: "
        + "   ".join(
            f"{name} {accuracies[name, k]:.1%}"
            for name in ("PixelCNN body, pretrained", "PixelCNN body, scratch", "small CNN")
        )
    )

# %% [markdown]
# With the same labels and the same number of steps, the pretrained body gives a clearly more accurate
# classifier than the same network from scratch, at both label counts. Part of that advantage is speed:
# the pretrained features are useful from the first step, while the network from scratch must still learn
# its own; trained for longer, it narrows the gap (try it). The small CNN is a strong reference: its
# architecture (pooling, a classifier on a coarse map) is built for recognising digits, while the PixelCNN
# body was built to predict pixels. With the fewest labels the pretrained body keeps up with it; with
# more labels the purpose-built CNN pulls ahead.

# %%
assert accuracies["PixelCNN body, pretrained", LABELS_PER_CLASS[0]] > accuracies[
    "PixelCNN body, scratch", LABELS_PER_CLASS[0]
] + pick(fast=0.0, full=0.04), "pretraining should help the classifier when labels are few"
assert min(accuracies.values()) > 0.2, "every classifier should beat chance (10%) by far"

# %% [markdown]
# ## 6 · The likelihood as a classifier: Bayes' rule
#
# **Question: can the generative model classify without a classification head at all?** The conditional
# model gives $\log p(\mathbf{x} \mid y)$ for every class $y$. With a uniform prior $p(y) = 1/10$, Bayes'
# rule turns these into class probabilities:
# $$ p(y \mid \mathbf{x}) = \frac{p(\mathbf{x} \mid y)\, p(y)}{\sum_{y'} p(\mathbf{x} \mid y')\, p(y')}
#    = \operatorname{softmax}_y \big(\log p(\mathbf{x} \mid y)\big). $$
# `generative_classify(conditional, x)` computes these log-posteriors with ten forward passes, one per
# label. The model was trained on the 100 labels per class of section 4, so the fair discriminative
# reference is the small CNN trained on those same labels.

# %%
log_post = generative_classify(conditional, classify_test.images)
generative_acc = (log_post.argmax(1) == classify_test.labels).float().mean().item()
print(f"posteriors sum to one: {torch.allclose(log_post.exp().sum(1), torch.ones(len(log_post)))}")
print(f"generative classifier (Bayes' rule):   {generative_acc:.1%} test accuracy")
print(f"small CNN on the same labels:          {accuracies['small CNN', LABELS_PER_CLASS[-1]]:.1%}")
print(f"chance:                                {1 / 10:.1%}")

# %%
one_each = torch.stack([(classify_test.labels == c).nonzero()[0, 0] for c in range(10)])  # a test digit of each class
fig, axes = plt.subplots(1, 2, figsize=(8, 6.2), gridspec_kw={"width_ratios": [1, 6]})
show_grid(
    classify_test.images[one_each], "Test digits", nrow=1, ax=axes[0], xlabel="image", ylabel="one digit of each class"
)
im = axes[1].imshow(log_post[one_each].exp().numpy(), cmap="viridis", vmin=0, vmax=1)
axes[1].set_xticks(range(10))
axes[1].set_yticks(range(10), [f"a {y}" for y in range(10)])
axes[1].set_title("Bayes' rule: p(class | image), conditional PixelCNN")
axes[1].set_xlabel("class y")
axes[1].set_ylabel("test digit (its true class)")
fig.colorbar(im, ax=axes[1], label="posterior probability")
plt.tight_layout()
plt.show()
confidence = log_post.exp().max(1).values.mean().item()
print(f"average probability given to the predicted class: {confidence:.1%}; accuracy: {generative_acc:.1%}")

# %% [markdown]
# The generative classifier beats chance by far, and the likelihood is doing all the work: nothing in its
# training asked it to tell digits apart. It is less accurate than the small discriminative CNN, the usual
# outcome with limited capacity: the generative model spends its parameters on every pixel, most of which
# say nothing about the class, while the CNN spends all of its on the decision. The figure shows where it
# hesitates: between digits that share strokes. A difference of a few nats between two
# $\log p(\mathbf{x} \mid y)$ is a probability ratio of $e^{\text{a few}}$: the posterior is sharp on a
# digit where one class leads by several nats, and spread where two classes are within a nat or two.
# Averaged over the test set, the probability the model gives its chosen class is 61.9%, so it is far from
# sharp on many digits; that is of the same order as its accuracy (73.3%), as a calibrated classifier's
# confidence should be. What the generative classifier offers in return: it can say *how likely* an image is at
# all, and the same kind of model draws, completes and repairs digits.
#
# The conditional samples of section 4 can now be checked too: how many of them does the small CNN
# recognise as the digit that was asked for?

# %%
recognised = (cnn(drawn).argmax(1) == wanted).float().mean().item()
print(
    f"generative classifier accuracy {generative_acc:.1%}; "
    f"the CNN recognises {recognised:.0%} of the {len(wanted)} conditional samples as the requested digit (chance 10%)"
)
assert generative_acc > pick(fast=0.2, full=0.5), "Bayes' rule over class likelihoods should beat chance by far"

# %% [markdown]
# ## 7 · Repairing corrupted digits
#
# **Question: how can a likelihood repair an image?** Suppose each pixel of a clean digit $\mathbf{x}$ was
# flipped independently with probability $\varepsilon$, giving the noisy $\tilde{\mathbf{x}}$. By Bayes' rule
# the most probable clean image maximises
# $$ \log p(\mathbf{x} \mid \tilde{\mathbf{x}}) = \log p_\text{model}(\mathbf{x})
#    - d(\mathbf{x}, \tilde{\mathbf{x}}) \log\frac{1-\varepsilon}{\varepsilon} + \text{const}, $$
# where $d$ counts the pixels where $\mathbf{x}$ and $\tilde{\mathbf{x}}$ differ: the model says what digits
# look like, the noise model says each disagreement costs $\log\frac{1-\varepsilon}{\varepsilon}$ nats
# (about 2.9 for $\varepsilon = 5\%$).
#
# `denoise` climbs this objective: it tries to flip the pixels the model finds most surprising, one at a
# time, and keeps a flip when the whole image's score goes up. Scoring the *whole* image matters: filling
# pixels one by one in raster order (as sampling does) would judge the first pixel of a stroke only by what
# lies above and to its left, find it surprising and erase it, and then the whole stroke with it. The
# reference is a 3×3 majority filter, a classic denoiser that knows nothing about digits.

# %%
import torch.nn.functional as F

eps = 0.05
clean = classify_test.images[:: pick(fast=12, full=10)][: pick(fast=8, full=30)]  # digits of every class
flipped = torch.rand(clean.shape, generator=torch.Generator().manual_seed(0)) < eps
noisy = torch.where(flipped, 1 - clean, clean)
majority = (F.avg_pool2d(noisy.float(), 3, stride=1, padding=1, count_include_pad=False) > 0.5).long()
repaired = denoise(base, noisy, eps, candidates=64, sweeps=2)
errors = {
    name: (z != clean).float().mean().item()
    for name, z in [("noisy", noisy), ("3x3 majority filter", majority), ("PixelCNN, max posterior", repaired)]
}
for name, err in errors.items():
    print(f"{name:24s} {err:.2%} of pixels wrong")
show_grid(
    torch.cat([clean[::3], noisy[::3], majority[::3], repaired[::3]]),
    "Rows: clean, 5% of pixels flipped, 3x3 majority filter, PixelCNN repair",
    nrow=10,
    xlabel="test digit",
    ylabel="clean / noisy / majority / PixelCNN",
)
plt.show()

# %% [markdown]
# The model removes most of the stray pixels and keeps thin strokes intact, which the majority filter
# cannot do: it erodes every line one pixel wide. What is left is mostly isolated stray pixels: the search
# only tries the 64 most surprising pixels in each of its two sweeps.
#
# **A missing block** is the other kind of damage. Lesson 04 filled a hidden region by *completion*:
# sampling the hidden pixels in raster order, keeping the known ones. Sampling sees only what lies above
# and to the left of the hole, so `complete_best_of` draws several completions and keeps the one with the
# highest $\log p(\mathbf{x})$ — the full likelihood also scores how well the fill continues into the known
# pixels below and to the right of the hole.

# %%
hole = torch.ones(1, 1, 28, 28, dtype=torch.bool)
hole[..., 9:19, 9:19] = False  # a 10x10 block is missing
damaged = classify_test.images[:: len(classify_test) // 10][:10]
filled = complete_best_of(base, damaged, hole, k=pick(fast=2, full=4), seed=0)
blank = torch.where(hole, damaged, torch.zeros_like(damaged))
print(
    f"hidden pixels wrong: filled with black {hidden_error(blank, damaged, hole).mean():.1%}, "
    f"PixelCNN best of {pick(fast=2, full=4)} completions {hidden_error(filled, damaged, hole).mean():.1%}"
)
assert torch.equal(filled[hole.expand_as(filled)], damaged[hole.expand_as(damaged)]), "known pixels are kept"
show_grid(
    torch.cat([damaged, blank, filled]),
    "Rows: original, 10x10 block missing, PixelCNN completion",
    nrow=10,
    xlabel="test digit",
    ylabel="original / damaged / repaired",
)
plt.show()

# %% [markdown]
# A completion is *a* plausible digit, not necessarily the original one: the hidden block may have held a
# loop or a gap, and the visible pixels do not always say which. Counting wrong pixels therefore
# understates how plausible the fills look; judge the figure too.

# %%
assert errors["PixelCNN, max posterior"] < errors["noisy"] / 2, "repair should remove most of the noise"
assert errors["PixelCNN, max posterior"] < errors["3x3 majority filter"] + pick(fast=0.02, full=0.0), (
    "the digit model should repair at least as well as a filter that knows nothing about digits"
)

# %% [markdown]
# ## Recap
# - A PixelCNN pretrained on some digits already models unseen digits well: it learned how strokes
#   behave. Fine-tuning from it beats training from scratch by a wide margin at 10 and 100 target
#   images; the gap narrows as the target set grows.
# - `freeze(model, train=...)` chooses what learns; frozen parameters stay bit-identical under Adam
#   (checked). Training only the top layers forgets least; training everything gently adapts most; a
#   large learning rate forgets and gains nothing.
# - `add_conditioning` adds zero-initialised class biases, so the conditional model starts *exactly* at
#   the pretrained one (checked), then learns from labels to make the true class more likely.
# - The pretrained network's features, fine-tuned with a small head, classify more accurately from few
#   labels than the same network trained from scratch with the same budget.
# - The likelihood is a tool: Bayes' rule over class likelihoods gives a classifier (weaker than a
#   discriminative CNN, far above chance), and maximising the posterior repairs noisy digits better than
#   a majority filter.

# %% [markdown]
# ## Where next
#
# You have built, trained, sampled from and fine-tuned the model family that started deep autoregressive
# image modelling. Four directions lead on from here:
#
# - **Better likelihoods per pixel**: PixelCNN++ replaces the 256-way softmax with a discretized logistic
#   mixture, so that intensity 242 is close to 243 (Salimans et al. 2017).
# - **Longer reach**: PixelSNAIL adds self-attention, so every pixel can look at any earlier pixel, not only
#   at those within the convolutions' reach (Chen et al. 2018).
# - **Transformers on pixels**: Image GPT trains a GPT-style transformer on sequences of pixels and shows
#   that autoregressive pretraining learns features good enough for classification (Chen et al. 2020).
# - **Priors on learnt codes**: VQ-VAE-2 uses PixelCNN-style priors over a discrete latent code instead of
#   raw pixels, which scales to large images (Razavi, van den Oord, Vinyals 2019, arXiv:1906.00446).
#
# (Google's *Imagen* is a text-to-image diffusion model, a different family; nothing in this course is
# Imagen.)

# %% [markdown]
# ## References
#
# - van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves, Kavukcuoglu (2016), *Conditional Image Generation with PixelCNN Decoders*, NeurIPS, arXiv:1606.05328: the Gated PixelCNN, its vertical and horizontal stacks, and class conditioning.
# - Chen, Radford, Child, Wu, Jun, Luan, Sutskever (2020), *Generative Pretraining from Pixels* (Image GPT), ICML: autoregressive pretraining on pixels, then fine-tuning and linear probes.
# - Nalisnick, Matsukawa, Teh, Gorur, Lakshminarayanan (2019), *Do Deep Generative Models Know What They Don't Know?*, ICLR, arXiv:1810.09136: likelihoods and out-of-distribution data.
# - Salimans, Karpathy, Chen, Kingma (2017), *PixelCNN++: Improving the PixelCNN with Discretized Logistic Mixture Likelihood and Other Modifications*, ICLR, arXiv:1701.05517.
# - Chen, Mishra, Rohaninejad, Abbeel (2018), *PixelSNAIL: An Improved Autoregressive Generative Model*, ICML, arXiv:1712.09763.

# %% [markdown]
# ## Exercises
# The graded notebook `exercises/05_fine_tuning.ipynb` (its solved twin is in `solutions/`) has 3 tasks
# worth 8 points; the check cell under each task tells you as you go whether your code is right, and
# `pixelcnn-grade` grades the whole notebook.
# - **Task 1 · Fine-tuning with frozen layers** (4 points). Write
#   `fine_tune(model, dataset, train, *, epochs=1, lr=1e-3, batch_size=32, seed=0) -> list of floats`.
# - **Task 2 · Class-conditional log-likelihoods** (2 points). Write
#   `class_log_likelihoods(model, x) -> (B, K)` with `K = model.num_classes`: entry `[b, y]` is
#   $\log p(x_b \mid y)$, i.e. column `y` scores every image with `labels = torch.full((B,), y)` (on the
#   model's device).
# - **Task 3 · The generative classifier: Bayes' rule in log space** (2 points). Write
#   `bayes_log_posterior(log_lik, log_prior=None) -> (B, K)`.
