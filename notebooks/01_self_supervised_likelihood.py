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
# # 01 · The data is its own label: likelihood, bits and the chain rule
#
# A PixelCNN is trained on images and nothing else: no class labels, no captions, no human
# annotation. This lesson explains where the training signal comes from, how to measure it honestly,
# and why writing the probability of an image as a product of one-pixel conditionals (the chain rule)
# loses nothing.
#
# ## What you will learn
# - why maximum likelihood needs no labels, and why it is the same thing as minimising a cross-entropy;
# - nats, bits and bits per dimension; why we **sum over pixels and average over images**, and two
#   common reporting mistakes, with their numbers;
# - how a histogram (a categorical distribution) is fitted by counting, and how it overfits when data are
#   scarce: train versus test NLL, infinite test NLL, Laplace smoothing;
# - the independent-pixel baseline on binarized MNIST: its NLL and its samples;
# - the chain rule on a world small enough to enumerate: the autoregressive factorisation is **exact**
#   in every pixel order, and only a truncated context makes it an approximation;
# - a first autoregressive model (a Gated PixelCNN) that beats the baseline by a wide margin.

# %% tags=["nbval-check-output"]
import math
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from course_lib import (
    GatedPixelCNN,
    IndependentPixelModel,
    bits_per_dim,
    count_parameters,
    evaluate,
    fit,
    load_dataset,
    nll,
    pick,
    sample,
)
from course_lib.plotting import plot_history, show_grid
from course_lib.toy import (
    all_binary_images,
    autoregressive_joint,
    column_order,
    conditionals,
    cross_entropy,
    empirical_joint,
    entropy,
    index_of,
    kl,
    raster_order,
)

torch.manual_seed(0)
train = load_dataset("mnist-subset", "train")  # 4,000 real MNIST digits, binarized at 0.5
test = load_dataset("mnist-subset", "test")  # 1,000 more, never used for fitting
D = math.prod(train.image_shape)  # dimensions (sub-pixels) per image
print(train, test, sep="\n")

# %% [markdown]
# ## 1 · Where does the training signal come from?
#
# A generative model $p_\theta$ assigns a probability to every possible image. Training asks one thing:
# **make the real images probable**. With training images $x^{(1)},\dots,x^{(N)}$ we maximise the
# average log-likelihood, i.e. minimise the negative log-likelihood (NLL)
#
# $$\mathcal{L}(\theta) = -\frac1N\sum_{n=1}^N \log p_\theta\big(x^{(n)}\big).$$
#
# No label appears: each image is both the input and the target. For a binary pixel with predicted
# probability $q = p_\theta(x_d = 1)$ the loss is $-[x_d\log q + (1-x_d)\log(1-q)]$, the binary
# cross-entropy with **the pixel itself as the label**. The data set does carry digit labels `y`; nothing
# below uses them.
#
# Why is this the right objective? If the images come from an unknown distribution $p_\text{data}$,
# the expected NLL is a cross-entropy, which splits into two terms:
#
# $$\mathbb{E}_{x\sim p_\text{data}}\big[-\log p_\theta(x)\big] = H(p_\text{data}, p_\theta)
#   = \underbrace{H(p_\text{data})}_{\text{fixed by the data}} + \underbrace{\mathrm{KL}(p_\text{data}\,\|\,p_\theta)}_{\ge 0,\ =0 \iff p_\theta = p_\text{data}}.$$
#
# Minimising the expected NLL therefore minimises the KL divergence from the data distribution to the model, and
# the entropy $H(p_\text{data})$ is a floor that no model can go below.
#
# Let us see this on the simplest model there is: a single pixel (row 14, column 20, right of the
# centre), modelled as a coin with $P(x=1)=q$.

# %% tags=["nbval-check-output"]
pixel = train.images[:, 0, 14, 20].double()  # the target is the pixel itself
f = pixel.mean().item()  # how often it is on
q = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
avg_nll = -(pixel[:, None] * q.log() + (1 - pixel[:, None]) * (1 - q).log()).mean(0)
entropy_f = -(f * math.log(f) + (1 - f) * math.log(1 - f))
best_q = q[avg_nll.argmin()].item()
print(f"pixel (14, 20) is on in {f:.3f} of the training images")
print(f"the NLL is smallest at q = {best_q:.2f}; its minimum {avg_nll.min():.4f} nats ≈ entropy H(f) = {entropy_f:.4f}")

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(q, avg_nll, label="average NLL = cross-entropy H(f, q)")
ax.axhline(entropy_f, color="gray", ls="--", label="entropy H(f): the floor")
ax.axvline(f, color="C1", ls=":", label=f"q = f = {f:.2f} (maximum likelihood)")
ax.set_title("One pixel, one parameter: the NLL is a cross-entropy, minimal at the data frequency")
ax.set_xlabel("model probability q = P(pixel (14, 20) = 1)")
ax.set_ylabel("average NLL (nats per image)")
ax.legend()
plt.show()

# %%
assert abs(best_q - f) <= 0.01, "maximum likelihood must put q at the observed frequency"
assert abs(avg_nll.min().item() - entropy_f) < 1e-3, "the minimum of the cross-entropy is the entropy"

# %% [markdown]
# The same holds for a real model: `-model.log_prob(x)` is the binary cross-entropy between the model's
# logits and the image it was given. Here is an untrained Gated PixelCNN on eight digits: the two
# computations agree, and the labels `y` are printed only to show that they are there, unused.

# %%
torch.manual_seed(0)
untrained = GatedPixelCNN(channels=16, dilations=(1, 2))
x, y = train.images[::400][:8], train.labels[::400][:8]  # one image of each of the digits 0..7
per_pixel = F.binary_cross_entropy_with_logits(untrained(x), x.float(), reduction="none")  # target = input
print("labels (unused):", y.tolist())
print("sum of per-pixel BCE:", per_pixel.sum((1, 2, 3)).detach().numpy().round(1))
print("-log_prob(x)        :", (-untrained.log_prob(x)).detach().numpy().round(1))
assert torch.allclose(per_pixel.sum((1, 2, 3)), -untrained.log_prob(x), rtol=1e-5)

# %% [markdown]
# (How the model avoids cheating, i.e. looking at the pixel it must predict, is lesson 02's subject:
# masked convolutions. Here we take it as given.)
#
# ## 2 · Units: nats, bits, bits per dimension
#
# How should we report an NLL so that numbers can be compared?
#
# - **Nats or bits.** $-\ln p$ is in nats, $-\log_2 p$ in bits, and $1\text{ nat} = 1/\ln 2 \approx 1.443$ bits.
#   A bit has a concrete meaning: by Shannon's source coding theorem, the NLL in bits is the length an
#   ideal compressor built from the model would need to encode the image.
# - **Sum over pixels.** The probability of an image is the *joint* probability of its $D=C\cdot H\cdot W$
#   sub-pixels, so its log is a sum of $D$ per-pixel terms (section 5 shows why). The image is the unit.
# - **Average over images.** The expected NLL is estimated by a mean over the test images (all of them),
#   so the number does not depend on how many there are.
# - **Bits per dimension** divides by $D$ and by $\ln 2$: $\text{bpd} = \text{NLL}_\text{nats/image} / (D \ln 2)$.
#   It lets us compare images of different sizes; for binary images, 1 bit/dim is what a fair coin per
#   pixel achieves, so any useful model is well below 1.
#
# The fair coin is our zero point. Each pixel has probability 1/2 whatever its value:

# %% tags=["nbval-check-output"]
coin_nats = D * math.log(2)  # -log (1/2)^D
print(
    f"D = {D} dimensions; a fair coin per pixel: {coin_nats:.2f} nats/image "
    f"= {coin_nats / math.log(2):.0f} bits/image = {bits_per_dim(coin_nats, D):.3f} bits/dim"
)
assert bits_per_dim(coin_nats, D) == 1.0

# %% [markdown]
# ## 3 · The simplest density model: a histogram, fitted by counting
#
# For discrete data with few possible values, the most flexible model is a **categorical distribution**,
# one probability per value. Its maximum-likelihood fit is the histogram: $\hat p(v) = \text{count}(v)/N$.
#
# Let us model 2×2 binary patches cut from the digits: 16 possible patterns, so 15 free parameters.
# We fit the histogram from $N$ training patches, for growing $N$, and measure the NLL on the patches it
# was fitted on (train) and on patches from the 1,000 test digits (test). Two fits: maximum likelihood,
# and **Laplace smoothing**, which adds one pseudo-count to every pattern:
# $\hat p(v) = (\text{count}(v) + 1) / (N + 16)$.


# %% tags=["nbval-check-output"]
def patches_2x2(dataset):
    """Every non-overlapping 2x2 patch of every image, as a pattern number 0..15: shape (N * 196,)."""
    x = dataset.images[:, 0]  # (N, 28, 28)
    return index_of(x.unfold(1, 2, 2).unfold(2, 2, 2).reshape(-1, 2, 2))


def fit_histogram(values, n_values, alpha):
    """Categorical distribution by counting, with `alpha` pseudo-counts per value: shape (n_values,)."""
    counts = torch.bincount(values, minlength=n_values).double()
    return (counts + alpha) / (counts.sum() + alpha * n_values)


def mean_nll(probs, values):
    """Average NLL in nats of `values` under a categorical `probs` (inf if one value has probability 0)."""
    counts = torch.bincount(values, minlength=len(probs)).double()  # same as -probs[values].log().mean()
    return -(counts * probs.log()).where(counts > 0, torch.zeros_like(probs)).sum().item() / len(values)


train_patches, test_patches = patches_2x2(train), patches_2x2(test)
freq = fit_histogram(train_patches, 16, 0.0)
print(f"{len(train_patches):,} training patches, {len(test_patches):,} test patches")
print("most frequent patterns:", [f"{v}: {p:.3f}" for p, v in zip(*freq.topk(3))])
print("rarest patterns:       ", [f"{v}: {p:.5f}" for p, v in zip(*freq.topk(2, largest=False))])

# %%
show_grid(
    all_binary_images(2, 2)[freq.argsort(descending=True), None],
    "The 16 possible 2x2 patterns, most frequent first",
    nrow=16,
    xlabel="pattern (left: blank background, right: rare checkerboards)",
    ylabel="2x2",
)
plt.show()

# %% [markdown]
# The two checkerboards are rare: a pen stroke almost never produces them. Now the experiment, repeated
# over 20 random draws of the $N$ training patches:

# %% tags=["nbval-check-output"]
torch.manual_seed(0)
sizes = [10, 30, 100, 300, 1000, 3000, 10000, 30000, 100000]
curves = {k: [] for k in ("ml train", "ml test", "laplace train", "laplace test")}
for n in sizes:
    runs = {k: [] for k in curves}
    for _ in range(20):
        drawn = train_patches[torch.randint(len(train_patches), (n,))]
        for name, alpha in (("ml", 0.0), ("laplace", 1.0)):
            probs = fit_histogram(drawn, 16, alpha)
            runs[f"{name} train"].append(mean_nll(probs, drawn))
            runs[f"{name} test"].append(mean_nll(probs, test_patches))
    for k in curves:
        curves[k].append(sum(runs[k]) / len(runs[k]))  # inf as soon as one draw gives inf
floor = entropy(freq).item()  # entropy of the patch distribution, estimated from all training patches
for n, *row in zip(sizes, *curves.values()):
    print(f"N = {n:>6}: " + "  ".join(f"{k} {v:6.3f}" for k, v in zip(curves, row)))

# %%
fig, ax = plt.subplots(figsize=(7, 4.5))
top = 1.6
for k, style in zip(curves, ("o-", "s-", "o--", "s--")):
    finite = [(n, v) for n, v in zip(sizes, curves[k]) if math.isfinite(v)]
    if k == "ml test":  # large open squares drawn last: where they are finite they lie on the laplace test values
        ax.plot(*zip(*finite), style, label=k, ms=11, mfc="none", mew=2, zorder=5)
    else:
        ax.plot(*zip(*finite), style, label=k)
infinite = [n for n, v in zip(sizes, curves["ml test"]) if not math.isfinite(v)]
ax.plot(infinite, [top] * len(infinite), "x", color="C1", ms=10, mew=2, label="ml test = ∞")
ax.axhline(floor, color="gray", ls=":", label=f"entropy of the data ≈ {floor:.3f}")
ax.set_xscale("log")
ax.set_ylim(0, top + 0.1)
ax.set_title("A 16-bin histogram of 2x2 patches: train vs test NLL")
ax.set_xlabel("N, number of training patches (log scale)")
ax.set_ylabel("average NLL (nats per patch)")
ax.legend(ncol=2, fontsize=8)
plt.show()

# %% [markdown]
# What the figure shows:
#
# - **Overfitting.** With few patches, the train NLL is far *below* the entropy of the data and the test NLL
#   far above it. A maximum-likelihood histogram reproduces its sample exactly, so it is overconfident.
# - **Infinite test NLL.** With maximum likelihood, any pattern missing from the sample gets probability 0,
#   and one such test patch makes the test NLL infinite (crosses at the top). The rare checkerboards keep
#   that happening until $N$ is in the tens of thousands; from there on the ml test NLL is finite (open
#   squares) and lies on the laplace test curve.
# - **Smoothing** gives up the perfect fit to the sample (its train NLL is higher) for a finite test NLL,
#   and the pseudo-counts matter less and less as $N$ grows: both fits converge to the entropy floor.
#
# Now scale the idea up: a histogram over whole 28×28 binary images needs $2^{784}$ bins. Every test
# image would be unseen, with infinite NLL under maximum likelihood, and smoothing would give it about
# the fair coin's 543 nats. We need models that **share** statistical strength across images. The
# crudest one is next.

# %%
ml_test, lap_test = curves["ml test"], curves["laplace test"]
assert not math.isfinite(ml_test[0]), "with 10 patches, maximum likelihood misses patterns that occur in the test set"
assert lap_test[0] < 2 * floor and all(map(math.isfinite, lap_test)), "Laplace smoothing keeps the test NLL finite"
assert curves["ml train"][0] < floor < lap_test[0], "small samples: train NLL below the entropy, test NLL above it"
assert abs(ml_test[-1] - floor) < 0.01 and abs(lap_test[-1] - floor) < 0.01, "with much data both reach the floor"

# %% [markdown]
# ## 4 · The independent-pixel baseline on binarized MNIST
#
# What if every pixel is its own coin, independent of all the others?
#
# $$p(x) = \prod_{d=1}^{D} p_d(x_d), \qquad p_d(x_d = 1) = \frac{\#\{\text{train images with pixel } d \text{ on}\} + 1}{N + 2}.$$
#
# That is 784 independent histograms with 2 bins each (with Laplace smoothing), fitted by counting:
# `IndependentPixelModel.fit`. It is the baseline every image model has to beat.

# %%
baseline = IndependentPixelModel.fit(train)
base_train, base_test = evaluate(baseline, train), evaluate(baseline, test)
print(
    f"independent pixels: train {base_train['nats']:.2f} nats/image, "
    f"test {base_test['nats']:.2f} nats/image = {base_test['bpd']:.4f} bits/dim "
    f"(a fair coin: {coin_nats:.2f} nats, 1 bit/dim)"
)

# %%
fig, ax = plt.subplots(figsize=(4.5, 4))
im = ax.imshow(baseline.probs[1, 0], cmap="viridis", vmin=0, vmax=1)
fig.colorbar(im, ax=ax, label="P(pixel = 1)")
ax.set_title("Independent-pixel model: P(pixel on)")
ax.set_xlabel("column j")
ax.set_ylabel("row i")
plt.show()

# %% [markdown]
# The fitted probabilities are the average digit: a blurry ring where strokes often pass. What do samples
# from this model look like? Every pixel is drawn from its own coin, ignoring its neighbours.

# %%
torch.manual_seed(0)
n_samples = pick(fast=8, full=16)
real = test.images[torch.arange(n_samples) * (len(test) // n_samples)]  # the test set is sorted by class: spread out
base_samples = sample(baseline, n_samples, seed=0)
many = torch.bernoulli(baseline.probs[1].expand(10000, *train.image_shape))  # the same draw, 10,000 times at once
grid_label = dict(xlabel=f"{n_samples} images, 8 per row", ylabel="grid row")
fig, axes = plt.subplots(1, 3, figsize=(13, 3.2), gridspec_kw={"width_ratios": [2, 2, 1.25]})
show_grid(real, "Real test digits", ax=axes[0], **grid_label)
show_grid(base_samples, "Samples from the independent model", ax=axes[1], **grid_label)
im = axes[2].imshow(many.mean(0)[0], cmap="gray", vmin=0, vmax=1)
fig.colorbar(im, ax=axes[2], label="fraction of samples on")
axes[2].set_title("Mean of 10,000\nsamples")
axes[2].set_xlabel("column j")
axes[2].set_ylabel("row i")
plt.show()

# %%
assert 150 < base_test["nats"] < coin_nats / 2, "far better than a coin, far from good"
assert base_train["nats"] < base_test["nats"], "fitted by counting on the training set: slightly better there"
assert (many.mean(0) - baseline.probs[1]).abs().max() < 0.03, "samples have the right average..."
assert abs(base_samples.float().mean() - test.images.float().mean()) < 0.05, "...and about the right amount of ink"

# %% [markdown]
# **Noise with the right average.** The samples have roughly the right amount of ink in the right
# region, yet no strokes: the model knows how often each pixel is on, but not that a pixel next to an
# "on" pixel is likely to be on too. Its NLL is far better than the coin's and far worse than what
# dependencies between pixels can give.
#
# ### Two reporting mistakes, with their numbers
#
# Both mistakes are common in code you will find online, and both make a model look better than it is.

# %% tags=["nbval-check-output"]
per_image = nll(baseline, test.images)  # (1000,) nats, summed over the 784 pixels
right = per_image.mean().item()
print(f"right:  {right:.2f} nats/image = {right / math.log(2):.2f} bits/image = {bits_per_dim(right, D):.4f} bits/dim")
print(
    f"mistake 1, nats reported as bits: '{right:.2f} bits/image' (too good by a factor 1/ln 2 = {1 / math.log(2):.3f})"
)
wrong = F.binary_cross_entropy_with_logits(baseline(test.images), test.images.float()).item()  # default: mean
print(
    f"mistake 2, mean over pixels (PyTorch's default reduction): '{wrong:.4f} nats/image', "
    f"{right / wrong:.0f}x too small; it is really {wrong:.4f} nats per *pixel*"
)
print(f"  ... and both at once: '{wrong:.4f} bits/dim' instead of {bits_per_dim(right, D):.4f}")
assert abs(right / wrong / D - 1) < 1e-4 and abs(right - base_test["nats"]) < 1e-3

# %% [markdown]
# As a *training* loss, a mean over pixels divides the loss, and so the gradient, by $D$. Adam's steps do
# not depend on the gradient's scale (up to its tiny $\epsilon$), so with plain Adam that changes
# nothing. It does change training when gradients are clipped at a fixed norm (`fit` clips at 1.0: a
# gradient $D$ times smaller is clipped far less often) or with plain SGD (every step is $D$ times
# smaller). And a number computed that way is nats per dimension, not per image: divide by $\ln 2$ and it
# is the bits/dim. Always say which one you report.
#
# ## 5 · The chain rule: exact, in any order
#
# How can a model capture dependencies between pixels without a $2^D$-bin histogram? By the chain rule
# of probability, which holds for **every** distribution and every ordering $o_1,\dots,o_D$ of the pixels:
#
# $$p(x) = \prod_{t=1}^{D} p\big(x_{o_t} \mid x_{o_1},\dots,x_{o_{t-1}}\big).$$
#
# An autoregressive model learns these one-pixel conditionals: each is a single coin, whose bias depends
# on the pixels already placed. Nothing is approximated by the factorisation itself; approximation only
# enters if the conditionals are restricted. Let us check that on a world small enough to compute
# everything exactly.
#
# **A tiny world.** Take every 3×3 window of every training digit (2.7 million of them) and let $p$ be
# their histogram over all $2^9 = 512$ binary 3×3 images, with one pseudo-count each so that every image
# has $p > 0$. `course_lib.toy` enumerates this world: marginals by summing, conditionals as ratios of
# marginals,
# $p(x_{o_t}\mid x_{o_{<t}}) = p(x_{o_1},\dots,x_{o_t}) \,/\, p(x_{o_1},\dots,x_{o_{t-1}})$.

# %% tags=["nbval-check-output"]
digits = train.images[:, 0].to(torch.uint8)
windows = digits.unfold(1, 3, 1).unfold(2, 3, 1).reshape(-1, 3, 3)  # every 3x3 window: (2,704,000, 3, 3)
p = empirical_joint(windows, alpha=1.0)  # the true distribution of our world: (512,)
world = all_binary_images(3, 3)  # (512, 3, 3)
print(f"{len(windows):,} windows; p sums to {p.sum().item():.6f}; entropy H(p) = {entropy(p).item():.4f} nats")

# %% [markdown]
# Pick one image of the world, a diagonal stroke, and write its probability as a product of nine
# conditionals, in raster order and in column order:

# %% tags=["nbval-check-output"]
stroke = torch.tensor([[0, 0, 1], [0, 1, 0], [1, 0, 0]])
n = index_of(stroke[None]).item()
for name, order in (("raster", raster_order(3, 3)), ("column", column_order(3, 3))):
    c = conditionals(p, order)[n]  # (9,): p(observed value | earlier pixels)
    print(f"{name} order {order}: conditionals", " ".join(f"{v:.3f}" for v in c.tolist()))
    print(f"    product = {c.prod().item():.6e}")
print(f"p(stroke)        = {p[n].item():.6e}")

# %% [markdown]
# Different conditionals, same product. Now every image at once, with three kinds of model built from
# the exact conditionals of $p$:
#
# - **full context** (the chain rule), in raster, column and a random order;
# - **context 1 and 2**: each pixel conditioned only on the previous one or two pixels of the order
#   (a Markov chain), with exact conditionals: the best model of that kind;
# - **context 0**: each pixel on its own, the independent model of section 4.
#
# Each is a valid distribution over the 512 images (it sums to one), so we can measure its cross-entropy
# $H(p, q) = H(p) + \mathrm{KL}(p\,\|\,q)$: its NLL on endless data from the world.

# %% tags=["nbval-check-output"]
orders = {
    "raster": raster_order(3, 3),
    "column": column_order(3, 3),
    "random": torch.randperm(9, generator=torch.Generator().manual_seed(0)).tolist(),
}
models = {"independent (context 0)": autoregressive_joint(p, orders["raster"], context=0)}
for ctx in (1, 2, None):
    for name, order in orders.items():
        label = f"{name}, context {ctx if ctx is not None else 'all (chain rule)'}"
        models[label] = autoregressive_joint(p, order, context=ctx)
kls = {label: round(kl(p, q).item(), 12) + 0.0 for label, q in models.items()}  # +0.0: no "-0.0000" from 1e-17 noise
print(f"random order: {orders['random']}")
for label, q in models.items():
    err = (q - p).abs().max().item()
    print(
        f"{label:<34} sums to {q.sum().item():.6f}   H(p,q) = {cross_entropy(p, q).item():.4f}   "
        f"KL = {kls[label]:.4f} nats   max |q - p| = {f'{err:.1e}' if err > 1e-15 else '< 1e-15'}"
    )
ink = index_of(torch.ones(1, 3, 3, dtype=torch.long)).item()
print(
    f"the all-ink window: p = {p[ink].item():.4f}, independent q = {models['independent (context 0)'][ink].item():.1e}"
)

# %%
fig, axes = plt.subplots(1, 2, figsize=(14, 4.5), gridspec_kw={"width_ratios": [1.2, 1]})
top16 = p.argsort(descending=True)[:16]
width = 0.27
for k, (label, q) in enumerate(
    [
        ("true p", p),
        ("independent", models["independent (context 0)"]),
        ("chain rule, raster", models["raster, context all (chain rule)"]),
    ]
):
    axes[0].bar(torch.arange(16) + (k - 1) * width, q[top16], width, label=label)
axes[0].set_yscale("log")
axes[0].set_title("The 16 most probable 3x3 images: true vs model probabilities")
axes[0].set_xlabel("image rank under p (rank 0 is the blank window)")
axes[0].set_ylabel("probability (log scale)")
axes[0].legend()
labels = list(kls)
bars = axes[1].barh(labels, [kls[k] for k in labels], color=["C1"] + ["C2"] * 6 + ["C0"] * 3)
axes[1].bar_label(bars, fmt="%.3f", padding=3)
axes[1].set_xlim(0, 1.15 * max(kls.values()))
axes[1].invert_yaxis()
axes[1].set_title("KL(p || q): what each model loses")
axes[1].set_xlabel("KL divergence (nats per 3x3 image)")
axes[1].set_ylabel("model")
plt.tight_layout()
plt.show()
show_grid(
    world[top16, None], "The 16 most probable 3x3 images, rank 0 to 15", nrow=16, xlabel="rank under p", ylabel="3x3"
)
plt.show()

# %%
exact = [k for k in kls if "chain rule" in k]
for label in exact:
    assert torch.allclose(models[label], p, rtol=0, atol=1e-15), f"{label}: the chain rule reproduces the joint"
for label, q in models.items():
    assert abs(q.sum().item() - 1) < 1e-12, f"{label} is a normalised distribution"
for name in orders:
    k0, k1, k2 = kls["independent (context 0)"], kls[f"{name}, context 1"], kls[f"{name}, context 2"]
    assert k0 > k1 > k2 > 1e-3, f"{name}: more context, smaller KL, but never zero before full context"
assert kls["random, context 1"] > max(kls["raster, context 1"], kls["column, context 1"]), "neighbours matter"

# %% [markdown]
# What the numbers say:
#
# - **The chain rule is exact.** With full context, the product of conditionals equals $p$ to machine
#   precision, in raster order, in column order, in a random order. The ordering is a free choice.
# - **Independence is the worst approximation.** Its KL is the *total correlation* of the pixels: the
#   information they share, which an independent model throws away. Look at rank 1, the all-ink window
#   (the inside of a thick stroke): independence multiplies nine "on" probabilities as if they were
#   unrelated and makes it hundreds of thousands of times less probable than it is.
# - **Truncated context is an approximation, and there the order matters.** Conditioning on the previous
#   one or two pixels recovers much of the lost information when those pixels are image neighbours
#   (raster or column order); in a random order the previous pixel is often far away and helps less.
#
# The catch: exact conditionals need a table of $2^{t-1}$ entries for step $t$, so $2^D - 1$ numbers in
# all, exactly as many as the histogram. The factorisation alone saves nothing. A PixelCNN computes every
# conditional with **one** shared convolutional network, whose context is a window of earlier pixels in
# raster order: few parameters, and dependencies learned from data.

# %% tags=["nbval-check-output"]
print(f"3x3 world: {2**9 - 1} numbers for the joint, {sum(2**t for t in range(9))} for the exact conditionals")
print(f"28x28 binary images: 2^784 - 1 ≈ 10^{784 * math.log10(2):.0f} numbers")

# %% [markdown]
# ## 6 · A first autoregressive model on MNIST
#
# Can a network that learns $p(x_d \mid x_{<d})$ for all 784 pixels at once beat the independent baseline?
# We train a small **Gated PixelCNN** (lesson 02 opens it up) by maximum likelihood with `fit`: Adam on the
# mean NLL per image of each batch, then the NLL of every test image after each epoch. Full mode trains for
# three epochs on the 4,000 training digits (the cell prints how long that took); fast mode trains a tiny
# model on 400 digits for one epoch.

# %%
cfg = pick(
    fast=dict(limit=400, channels=16, dilations=(1, 2, 1), epochs=1, batch_size=8, lr=5e-3, schedule="constant"),
    full=dict(limit=None, channels=32, dilations=(1, 2, 1, 4, 1), epochs=3, batch_size=32, lr=2e-3, schedule="cosine"),
)
train_ar = load_dataset("mnist-subset", "train", limit=cfg["limit"])
torch.manual_seed(0)
model = GatedPixelCNN(channels=cfg["channels"], dilations=cfg["dilations"])
print(f"Gated PixelCNN with {count_parameters(model):,} parameters, trained on {len(train_ar):,} images")
start = time.perf_counter()
history = fit(
    model,
    train_ar,
    test,
    epochs=cfg["epochs"],
    batch_size=cfg["batch_size"],
    lr=cfg["lr"],
    schedule=cfg["schedule"],
    seed=0,
    progress=False,
)
print(f"trained for {cfg['epochs']} epochs in {time.perf_counter() - start:.0f} s on {next(model.parameters()).device}")
model = model.cpu().eval()
ar_test = {"nats": history["test_nats"][-1], "bpd": history["test_bpd"][-1]}  # measured by fit on every test image
for e, tr, te, b in zip(history["epoch"], history["train_nats"], history["test_nats"], history["test_bpd"]):
    print(f"epoch {e}: train {tr:.2f}, test {te:.2f} nats/image ({b:.4f} bits/dim)")
print(f"\n{'model':<28}{'test nats/image':>16}{'test bits/dim':>15}")
for name, r in (
    ("fair coin", dict(nats=coin_nats, bpd=1.0)),
    ("independent pixels", base_test),
    ("Gated PixelCNN", ar_test),
):
    print(f"{name:<28}{r['nats']:>16.2f}{r['bpd']:>15.4f}")

# %%
ax = plot_history(history, dims=D, title="Gated PixelCNN on binarized MNIST: learning curves")
ax.axhline(base_test["bpd"], color="gray", ls="--", label="independent pixels (test)")
ax.set_xticks(history["epoch"])
ax.set_ylim(0, None)
ax.legend()
plt.show()

# %%
assert ar_test["nats"] < base_test["nats"], "the autoregressive model must beat the baseline"
assert history["test_nats"][-1] <= history["test_nats"][0] + 1e-6, "training must not make the test NLL worse"

# %% jupyter={"source_hidden": true} tags=["claims"]
from course_lib.config import claims_checked

if claims_checked():  # the prose's claims, on the course's own full-size build
    assert ar_test["nats"] < base_test["nats"] / 2, (
        "the Gated PixelCNN's test NLL should be a fraction of the baseline's"
    )
    assert history["train_nats"][0] > history["test_nats"][0], "epoch 1: the running train mean sits above the test NLL"

# %% [markdown]
# The autoregressive model's test NLL is a fraction of the baseline's. Read the learning curve carefully:
# the *train* value of an epoch is averaged over all its batches while the model is still improving, so in
# the first epoch it sits above the test value, which is measured at the end of the epoch.
#
# **Where does each model pay?** The per-pixel NLL $-\log p(x_d\mid x_{<d})$ shows where the bits go.
# The sum of each map is the image's NLL.

# %%
with torch.no_grad():
    x = test.images
    pix_ar = F.binary_cross_entropy_with_logits(model(x), x.float(), reduction="none")[:, 0]
    pix_base = F.binary_cross_entropy_with_logits(baseline(x), x.float(), reduction="none")[:, 0]
k = 300  # a test image of the digit 3
rows = [
    (f"test digit {k}", x[k, 0].float(), pix_base[k], pix_ar[k]),
    ("mean test digit", x[:, 0].float().mean(0), pix_base.mean(0), pix_ar.mean(0)),
]
vmax = max(pix_base[k].max(), pix_ar[k].max()).item()
fig, axes = plt.subplots(2, 3, figsize=(11, 7))
for r, (name, img, nb, na) in enumerate(rows):
    top = vmax if r == 0 else pix_base.mean(0).max().item()
    im = axes[r, 0].imshow(img, cmap="gray", vmin=0, vmax=1)
    axes[r, 0].set_title(name)
    fig.colorbar(im, ax=axes[r, 0], label="pixel value" if r == 0 else "fraction of test digits on")
    for c, (mname, m) in enumerate((("independent", nb), ("Gated PixelCNN", na)), start=1):
        im = axes[r, c].imshow(m, cmap="magma", vmin=0, vmax=top)
        axes[r, c].set_title(f"{mname}: {m.sum():.1f} nats")
        fig.colorbar(im, ax=axes[r, c], label="nats")
    for a in axes[r]:
        a.set_xlabel("column j")
        a.set_ylabel("row i")
fig.suptitle("Per-pixel NLL  -log p(x_ij | earlier pixels): where each model spends its bits")
plt.tight_layout()
plt.show()

# %%
assert abs(pix_ar.sum((1, 2)).mean().item() - ar_test["nats"]) < 1e-2, "the per-pixel terms sum to the image NLL"
stroke_pixels = x[:, 0].bool()
assert pix_ar[stroke_pixels].mean() < pix_base[stroke_pixels].mean(), "context makes stroke pixels cheaper"

# %% [markdown]
# The independent model pays on every pixel of the stroke, and a little on every pixel of the background
# region where strokes sometimes go. The autoregressive model pays mostly where something new begins (the
# first pixels of a stroke, as it is reached in raster order, and its edges): once a stroke has started,
# its continuation is predictable from the pixels above and to the left.
#
# **Samples.** Drawing from an autoregressive model means running the chain rule forwards: draw pixel 1,
# feed it back, draw pixel 2 from its conditional, and so on, 784 forward passes (lesson 04 covers
# sampling).

# %%
ar_samples = sample(model, n_samples, seed=0)
fig, axes = plt.subplots(1, 3, figsize=(15, 3.2))
show_grid(real, "Real test digits", ax=axes[0], **grid_label)
show_grid(base_samples, "Independent pixels: samples", ax=axes[1], **grid_label)
show_grid(ar_samples, "Gated PixelCNN: samples", ax=axes[2], **grid_label)
plt.show()


# %%
def neighbour_agreement(images):
    """Fraction of horizontally adjacent pixel pairs with equal values, averaged over images (N, 1, H, W)."""
    return (images[..., 1:] == images[..., :-1]).float().mean().item()


agree = {
    name: neighbour_agreement(imgs)
    for name, imgs in (("real", test.images), ("independent", base_samples), ("Gated PixelCNN", ar_samples))
}
print("neighbouring pixels agree:", ", ".join(f"{k} {v:.3f}" for k, v in agree.items()))
assert agree["Gated PixelCNN"] > agree["independent"], "autoregressive samples are smoother: neighbours depend"

# %% [markdown]
# The independent model's samples are speckle. The autoregressive samples are made of connected strokes,
# like the real digits (the neighbour-agreement numbers above measure it). After three epochs on 4,000
# images, many of them are not yet recognisable digits; lesson 04 samples from models trained for longer.
#
# ## Recap
# - The training signal of a likelihood model is the probability it gives to each real image: the data are
#   their own labels. Minimising the NLL minimises the cross-entropy $H(p_\text{data}, p_\theta)$, i.e. the
#   KL divergence to the data distribution, above the floor $H(p_\text{data})$.
# - Report NLL summed over the $D$ pixels of an image and averaged over all test images; bits/dim $=$
#   nats/image $/ (D\ln 2)$. Nats read as bits, or a mean over pixels read as per-image, make a model look
#   $1.44\times$ or $D\times$ better than it is.
# - A histogram fitted by maximum likelihood overfits small samples: train NLL below the entropy, test NLL
#   above it or infinite. Pseudo-counts (Laplace smoothing) fix the infinities. Histograms of whole images
#   are hopeless: $2^{784}$ bins.
# - The independent-pixel model is the baseline: the right average, no structure, noise as samples.
# - The chain rule $p(x)=\prod_t p(x_{o_t}\mid x_{o_{<t}})$ is exact in every order; approximations come
#   only from restricting the conditionals, and then the order matters. An autoregressive network learns
#   all the conditionals with shared weights, and a small Gated PixelCNN beats the independent baseline by
#   a wide margin after three epochs on 4,000 digits, on a CPU.

# %% [markdown]
# ## References
#
# - van den Oord, Kalchbrenner, Kavukcuoglu (2016), *Pixel Recurrent Neural Networks*, ICML, arXiv:1601.06759: PixelRNN and PixelCNN, masks A and B, binarized MNIST results.
# - Theis, van den Oord, Bethge (2016), *A note on the evaluation of generative models*, ICLR, arXiv:1511.01844: what log-likelihoods (and bits/dim) do and do not say.
# - van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves, Kavukcuoglu (2016), *Conditional Image Generation with PixelCNN Decoders*, NeurIPS, arXiv:1606.05328: the Gated PixelCNN, its vertical and horizontal stacks, and class conditioning.
# - Salimans, Karpathy, Chen, Kingma (2017), *PixelCNN++: Improving the PixelCNN with Discretized Logistic Mixture Likelihood and Other Modifications*, ICLR, arXiv:1701.05517.

# %% [markdown]
# ## Exercises
# The graded notebook `exercises/01_self_supervised_likelihood.ipynb` (its solved twin is in `solutions/`)
# has 4 tasks worth 7 points; the check cell under each task tells you as you go whether your code is right,
# and `pixelcnn-grade` grades the whole notebook.
# - **Task 1 · `nll(logits, x)`** (2 points). A model outputs **logits**, one set per sub-pixel; the image
#   `x` itself is the target.
# - **Task 2 · `bits_per_dim(nats_per_image, dims)`** (1 point). Convert an NLL in nats per image
#   into **bits per dimension**: divide by the number of dimensions $D = C \cdot H \cdot W$ and convert nats
#   to bits ($1\text{ nat} = 1/\ln 2$ bits).
# - **Task 3 · `fit_independent(images, levels, alpha)`** (2 points). The independent-pixel baseline treats
#   every sub-pixel as its own categorical distribution (a coin, for binary images), fitted by counting with
#   `alpha` pseudo-counts per level (Laplace smoothing for `alpha=1`).
# - **Task 4 · `evaluate_nll(model, dataset, batch_size)`** (2 points). Report a model's NLL on a data set:
#   the **mean over every image** of each image's NLL in nats.
