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
# # 07 · Beyond convolutions: MADE, self-attention over pixels, and natural images
#
# A PixelCNN is one way to build $p(x) = \prod_d p(x_d \mid x_{<d})$: masked convolutions, each output
# seeing a cone of the pixels before it. The chain rule does not care how the conditionals are computed.
# This lesson tries two other networks on the same job, and then leaves the digits for real photographs.
#
# ## What you will learn
# - **MADE**: a fully connected network made autoregressive by *degrees*: every unit gets a number, and a
#   weight exists only from a lower to a higher (or equal) degree. Masks A and B are this rule on a grid.
# - **Self-attention over pixels**: a small causal transformer whose every output sees the *whole* past,
#   where a stack of convolutions sees a cone of it; its key/value cache for exact, fast sampling; and what
#   attention costs: memory that grows with the square of the number of pixels, measured.
# - **A comparison at equal budget** of MADE, the Gated PixelCNN and the transformer on binarized digits,
#   over three seeds, with parameter counts and training times.
# - **Natural images**: colour patches of two photographs, their bits/dim beside the digits', and why
#   they differ; samples and completions.
#
# The longer runs behind this lesson ship as pretrained models (`course_lib.pretrained`, retrained by
# `make pretrained`); everything else is trained and measured here.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from course_lib import (
    MADE,
    GatedPixelCNN,
    IndependentPixelModel,
    PixelTransformer,
    count_parameters,
    evaluate,
    fit,
    load_dataset,
    occlude,
    pick,
    pretrained,
    sample,
    sample_with_cache,
)
from course_lib.causality import causality_violations, receptive_field
from course_lib.data import TRAIN_COLUMNS, halved_photos
from course_lib.made import hidden_degrees, input_degrees, mask_from_degrees
from course_lib.masks import raster_mask
from course_lib.plotting import show_grid
from course_lib.zoo import record

torch.manual_seed(0)


def mean_sd(values):
    """Mean and sample standard deviation of a list of numbers."""
    t = torch.tensor(values, dtype=torch.float64)
    return t.mean().item(), t.std().item() if len(values) > 1 else 0.0


def where_trained(rec):
    """One line on how a pretrained model was made, from its record."""
    m = rec["machine"]
    return (
        f"{rec['parameters']:,} parameters, {rec['train']['epochs']} epochs, {rec['train_seconds'] / 60:.1f} min on "
        f"{m['cpu']} ({m['threads']} threads, {rec['train']['precision']})"
    )


# %% [markdown]
# ## 1 · MADE: masks from degrees
#
# MADE (Germain et al. 2015) starts from a plain fully connected network and removes weights. Number the
# $D$ sub-pixels $1..D$ in the order we sample them (raster order, R → G → B inside a pixel). Give every
# hidden unit a **degree** $m \in \{1, \dots, D-1\}$: the number of the first sub-pixels it may look at. Then
#
# - a weight into a hidden unit of degree $m$ from a unit of degree $k$ exists only if $m \ge k$;
# - a weight into the output for sub-pixel $d$ from a hidden unit of degree $m$ exists only if $d > m$.
#
# Along any path the degrees never decrease, and the last step is strict, so the output for sub-pixel $d$
# can only depend on sub-pixels $1..d-1$. Here is the rule drawn for a 2×2 binary image, $D = 4$, with two
# hidden layers of 6 units (degrees 1, 2, 3 in turn: `hidden_degrees`).

# %% tags=["nbval-check-output"]
tiny_shape = (1, 2, 2)
d_in = input_degrees(tiny_shape).permute(1, 2, 0).reshape(-1)  # 1..4 in raster-then-channel order
d_h1, d_h2 = hidden_degrees(6, 4), hidden_degrees(6, 4)
masks = [mask_from_degrees(d_h1, d_in), mask_from_degrees(d_h2, d_h1), mask_from_degrees(d_in, d_h2, strict=True)]
layers = [d_in, d_h1, d_h2, d_in]
print("degrees per layer:", [d.tolist() for d in layers])
for name, m in zip(["input -> hidden 1", "hidden 1 -> hidden 2", "hidden 2 -> output"], masks):
    print(f"{name} mask (rows: units it feeds, columns: units it reads):\n{m.int().numpy()}")
reach = (masks[2] @ masks[1] @ masks[0]) > 0  # (output, input): is there a path?
print("paths from input (columns) to output (rows):\n", reach.int().numpy())

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4.2), gridspec_kw={"width_ratios": [2, 1]})
ax = axes[0]
names = ["input", "hidden 1", "hidden 2", "output"]
xs = [np.linspace(0, 1, len(d)) for d in layers]
for level, m in enumerate(masks):
    for o, i in m.nonzero().tolist():
        ax.plot([xs[level][i], xs[level + 1][o]], [level, level + 1], color="tab:blue", alpha=0.4, lw=1)
for level, d in enumerate(layers):
    ax.scatter(xs[level], [level] * len(d), s=380, color="white", edgecolors="black", zorder=3)
    for x, deg in zip(xs[level], d.tolist()):
        ax.text(x, level, str(deg), ha="center", va="center", zorder=4)
ax.set_yticks(range(4), names)
ax.set_xticks([])
ax.set_xlabel("units of each layer, labelled with their degree")
ax.set_ylabel("layer")
ax.set_title("MADE for a 2x2 image: every weight that the degrees allow")
axes[1].imshow(reach.int().numpy(), cmap="Blues", vmin=0, vmax=1)
axes[1].set_xticks(range(4), [f"x{d}" for d in range(1, 5)])
axes[1].set_yticks(range(4), [f"p(x{d} | ...)" for d in range(1, 5)])
axes[1].set_xlabel("input sub-pixel")
axes[1].set_ylabel("output")
axes[1].set_title("which inputs each output can reach")
fig.tight_layout()
plt.show()

# %%
torch.manual_seed(0)
tiny = MADE(tiny_shape, hidden=(6, 6))
assert causality_violations(tiny) == [], "no output depends on its own sub-pixel or a later one"
assert torch.equal(reach, torch.ones(4, 4, dtype=torch.bool).tril(-1)), "and each one can reach its whole past"

# %% [markdown]
# The first output has no inputs at all: $p(x_1)$ is a learned constant (its bias). The output for $x_4$ reads
# every earlier sub-pixel through hidden units of degree 1, 2 and 3.
#
# **Masks A and B are this rule on a grid.** In a masked convolution a feature at pixel $p$ has the degree of
# $p$. A 3×3 kernel centred on $p$ reads nine pixels whose degrees, in raster order, are those of the window
# positions 0..8, with the centre at 4. Mask B is "$\ge$" (a feature may read its own pixel's features),
# mask A is "$>$" (the first layer must not read the pixel it predicts):

# %%
window = torch.arange(9)  # the window's positions in raster order; its centre has degree 4
centre = torch.tensor([4])
rule_b = mask_from_degrees(centre, window).view(3, 3)
rule_a = mask_from_degrees(centre, window, strict=True).view(3, 3)
print("'>=' rule on a 3x3 window:\n", rule_b.int().numpy(), "\n'>' rule:\n", rule_a.int().numpy())
assert torch.equal(rule_b, raster_mask(3, "B", 1, 1)[0, 0]) and torch.equal(rule_a, raster_mask(3, "A", 1, 1)[0, 0])

# %% [markdown]
# The difference: a convolution assigns degrees by position and shares its weights across positions, so
# it is small and knows that neighbouring pixels matter most. MADE has one weight per (input, hidden unit)
# pair, no sharing, no notion of "neighbour": it must learn from data that pixel 57 is next to pixel 58.
#
# `MADE` works with the rest of the library unchanged: `fit` trains it, `evaluate` scores it, `sample`
# draws from it (naive sampling: one pass of the small network per sub-pixel). We train it in section 2,
# side by side with the Gated PixelCNN and a transformer, over three seeds.

# %% [markdown]
# ## 2 · Self-attention over pixels
#
# A transformer reads the image as a sequence of $D$ tokens in sampling order. Token $t$ carries the value of
# sub-pixel $t-1$ (a learned start vector for $t = 0$) plus a learned vector for its position, and predicts
# sub-pixel $t$. Each layer lets every token take a weighted average of the tokens before it
# (**causal self-attention**: the weights of future tokens are set to zero before they are used), then
# transforms each token on its own. This is the idea of PixelSNAIL's attention blocks and of Image GPT,
# in miniature: `PixelTransformer` with 2 layers, 2 heads and 32 channels per token.
#
# First, what can an output see? The Jacobian of lesson 02, for the centre pixel of a 28×28 digit, for a
# random-initialised Gated PixelCNN (the default of lessons 02-04) and transformer:

# %%
torch.manual_seed(0)
fresh = {
    "Gated PixelCNN": GatedPixelCNN((1, 28, 28)),
    "transformer": PixelTransformer((1, 28, 28), dim=32, heads=2, layers=2),
}
i, j = 14, 14
fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
seen = {}
for ax, (name, model) in zip(axes, fresh.items()):
    field = receptive_field(model, i, j)[0] > 0  # (H, W): inputs the output at (i, j) depends on
    seen[name] = int(field.sum())
    ax.imshow(field.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.scatter([j], [i], marker="s", s=60, facecolors="none", edgecolors="red")
    ax.set_title(f"{name}: {seen[name]} pixels seen")
    ax.set_xlabel("column")
    ax.set_ylabel("row")
fig.suptitle(f"receptive field of the output at ({i}, {j}) (red), by Jacobian, random-initialised models")
fig.tight_layout()
plt.show()
past = i * 28 + j
print(f"pixels before ({i}, {j}): {past}; seen: {seen}")

# %%
assert seen["transformer"] == past, "attention reaches the whole past"
assert seen["Gated PixelCNN"] < past, "the convolutions reach a part of it"
assert causality_violations(PixelTransformer((3, 3, 3), levels=4, dim=8, heads=2, layers=2)) == []

# %% [markdown]
# The Gated PixelCNN sees a window that grows by a few pixels per layer: the rows far above and the pixels
# far to the left and right are out of reach of its five layers. The transformer sees the whole past from
# its first layer on (so does MADE, through hidden units of every degree). Whether that helps depends on the
# data and on how long we train.
#
# ### Three models, three seeds, one budget
#
# We train MADE (one hidden layer of 500 units), the default Gated PixelCNN and the transformer on the same
# binarized digits, halved to 14×14 so that all nine runs take well under a minute: the same training images,
# one epoch at batch 32, Adam at 2e-3 with the cosine schedule of lesson 03. Seeds are interleaved, so a
# busy moment on the machine slows all three models alike.

# %%
side = 14  # half the side of the digits
halved = dict(size=side, limit=pick(fast=64, full=800))
train_small = load_dataset("mnist-subset", "train", **halved)
test_small = load_dataset("mnist-subset", "test", size=side, limit=pick(fast=32, full=400))
builders = {
    "MADE": lambda: MADE((1, side, side), hidden=(500,)),
    "Gated PixelCNN": lambda: GatedPixelCNN((1, side, side)),
    "transformer": lambda: PixelTransformer((1, side, side), dim=32, heads=2, layers=2),
}
runs = {name: [] for name in builders}
trained = {}
for seed in (0, 1, 2):
    for name, build in builders.items():
        torch.manual_seed(seed)
        model = build()
        start = time.perf_counter()
        fit(model, train_small, epochs=1, batch_size=32, lr=2e-3, seed=seed, progress=False)
        seconds = time.perf_counter() - start
        nats = evaluate(model, test_small)["nats"]
        runs[name].append(dict(nats=nats, seconds=seconds, parameters=count_parameters(model)))
        trained.setdefault(name, model)  # keep the seed-0 models
print(f"{len(train_small)} training digits at {side}x{side}, {len(test_small)} test digits, one epoch")
for name, rs in runs.items():
    m, s = mean_sd([r["nats"] for r in rs])
    seconds = sorted(r["seconds"] for r in rs)
    per_seed = ", ".join(f"{r['nats']:.1f}" for r in rs)
    print(
        f"{name:>15}: {rs[0]['parameters']:7,} parameters, test {m:6.2f} ± {s:4.2f} nats/image ({per_seed}), ", end=""
    )
    print(f"training median {seconds[1]:5.2f} s ({seconds[0]:.2f}-{seconds[2]:.2f})")

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
for k, (name, rs) in enumerate(runs.items()):
    axes[0].scatter([k] * len(rs), [r["nats"] for r in rs], label=name)
    axes[1].scatter([k] * len(rs), [r["seconds"] for r in rs], label=name)
for ax, what in zip(axes, ["test NLL (nats/image)", "training time (s)"]):
    ax.set_xticks(range(3), list(runs))
    ax.set_xlabel("model")
    ax.set_ylabel(what)
axes[0].set_title(f"test NLL after one epoch on {side}x{side} digits, three seeds")
axes[1].set_title("training time of that epoch, three seeds (2-core CPU, shared)")
fig.tight_layout()
plt.show()

# %% jupyter={"source_hidden": true} tags=["claims"]
from course_lib.config import claims_checked

if claims_checked():  # the prose's claims, on the three seeds
    nats = {name: [r["nats"] for r in rs] for name, rs in runs.items()}
    secs = {name: sorted(r["seconds"] for r in rs)[1] for name, rs in runs.items()}  # medians
    assert min(nats["MADE"]) > max(nats["Gated PixelCNN"]), "MADE is behind the Gated PixelCNN in every seed"
    assert min(nats["MADE"]) > max(nats["transformer"]), "and behind the transformer in every seed"
    assert secs["MADE"] < secs["Gated PixelCNN"] / 3, "MADE trains several times faster"
    ratio = secs["transformer"] / secs["Gated PixelCNN"]
    assert 0.5 < ratio < 2, "the transformer's and the Gated PixelCNN's epochs take about the same time"
    params = {name: rs[0]["parameters"] for name, rs in runs.items()}
    assert params["MADE"] > max(params["Gated PixelCNN"], params["transformer"]), "MADE has the most parameters"

# %% [markdown]
# Read the spread before the means: a difference smaller than the seeds' spread is no difference. MADE's is
# not of that kind: it is behind both the Gated PixelCNN and the transformer in every seed, although it has more parameters than either and its epoch takes a small fraction of their time. Its
# samples show why:

# %%
made_samples = sample(trained["MADE"], 16, seed=0)
show_grid(made_samples, f"MADE (seed 0), 16 samples ({side}x{side} binary)", xlabel="sample", ylabel="sample")
plt.show()

# %% [markdown]
# Nothing in MADE says that a pixel resembles its neighbours. Each of its 196 outputs has its own weights
# from every earlier pixel and must learn from the data which of them matter, while a convolution learns one
# local pattern and applies it at every position. Weight sharing and locality are prior knowledge about
# images; with little data and little training, prior knowledge wins. Between the Gated PixelCNN and the
# transformer the numbers are closer: the transformer is ahead on average, by about the Gated PixelCNN's
# spread between seeds, and one seed of the Gated PixelCNN beats two of the transformer's. With three seeds
# and one epoch, that is not a difference to build on. Their epochs took about the same time on 14×14 images
# (196 tokens); the next two measurements show what grows when the image does.
#
# ### Sampling with a key/value cache
#
# Naive sampling runs the whole network once per sub-pixel. A transformer has a natural cache: the keys and
# values of every token already drawn never change (causality again), so drawing token $t$ needs one token's
# pass through the layers and attention over $t$ cached keys (`AttentionCache`, used by `sample_with_cache`).
# It draws the same random numbers in the same order as naive sampling, so with one seed the images agree
# exactly:

# %%
transformer = trained["transformer"]
n_draw = pick(fast=4, full=16)
exact = sample_with_cache(transformer, n_draw, seed=0)
assert torch.equal(exact, sample(transformer, n_draw, seed=0, method="naive")), "cached = naive, image for image"

samplers = {
    "transformer, naive": lambda: sample(transformer, n_draw, seed=1, method="naive"),
    "transformer, key/value cache": lambda: sample_with_cache(transformer, n_draw, seed=1),
    "Gated PixelCNN, cache (lesson 04)": lambda: sample(trained["Gated PixelCNN"], n_draw, seed=1),
    "MADE, naive": lambda: sample(trained["MADE"], n_draw, seed=1),
}
timings = {name: [] for name in samplers}
for _ in range(2):  # interleaved rounds; the faster of the two is less disturbed by other work on the machine
    for name, run in samplers.items():
        start = time.perf_counter()
        run()
        timings[name].append(time.perf_counter() - start)
print(f"drawing {n_draw} images of {side}x{side}, seconds per image (best of 2 interleaved rounds):")
for name, ts in timings.items():
    print(f"  {name:>34}: {min(ts) / n_draw:.4f}")

# %% jupyter={"source_hidden": true} tags=["claims"]
if claims_checked():  # the prose's claims, on this run's timings
    best = {name: min(ts) for name, ts in timings.items()}
    assert best["transformer, key/value cache"] < best["transformer, naive"] / 2, "the cache pays"

# %% [markdown]
# The cache is several times faster than naive sampling of the same transformer. Naive sampling repeats the
# quadratic attention over all $D$ tokens for each of the $D$ sub-pixels; the cached sampler does one row of
# the attention matrix per sub-pixel, $O(D^2)$ work for the whole image instead of $O(D^3)$. (Timings on a
# 2-core AMD EPYC CPU shared with other work: noisy, compare only within one run.)
#
# ### Memory: the quadratic term
#
# Training keeps the activations for the backward pass. A convolution's activations grow with the number
# of pixels $D$; attention also keeps a $D \times D$ matrix of weights per head and layer. We measure the
# bytes that autograd saves for the backward pass of one image, for square images of growing side, with
# hooks on every saved tensor (`torch.autograd.graph.saved_tensors_hooks`), and fit
# $a + bD + cD^2$ by least squares.


# %%
def saved_bytes(model, x):
    """Bytes of the tensors autograd keeps for the backward pass of log_prob(x) (each storage counted once)."""
    kept = {}

    def pack(t):
        kept[(t.untyped_storage().data_ptr(), t.dtype)] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.log_prob(x).sum()
    return sum(kept.values())


sides = pick(fast=[4, 6, 8], full=[4, 8, 12, 16, 20, 24, 28])
memory = {"Gated PixelCNN": [], "transformer": []}
for s in sides:
    torch.manual_seed(0)
    x = torch.randint(0, 2, (1, 1, s, s))
    memory["Gated PixelCNN"].append(saved_bytes(GatedPixelCNN((1, s, s)), x))
    memory["transformer"].append(saved_bytes(PixelTransformer((1, s, s), dim=32, heads=2, layers=2), x))
D = np.array(sides) ** 2
fits = {
    name: np.linalg.lstsq(np.stack([np.ones_like(D), D, D**2], 1).astype(float), np.array(b, float), rcond=None)[0]
    for name, b in memory.items()
}
fig, ax = plt.subplots(figsize=(7, 4))
for name, b in memory.items():
    ax.plot(D, np.array(b) / 2**20, "o-", label=name)
ax.set_xlabel("pixels per image D (side squared)")
ax.set_ylabel("saved for backward (MiB per image)")
ax.set_title("training memory per image as the image grows")
ax.legend()
plt.show()
for name, (a, b, c) in fits.items():
    share = c * D[-1] ** 2 / memory[name][-1]
    print(
        f"{name:>15}: fit {a / 1024:8.1f} KiB + {b:7.1f} B x D + {c:6.3f} B x D^2; the D^2 term at D = {D[-1]}: {share:.0%}"
    )

# %% jupyter={"source_hidden": true} tags=["claims"]
if claims_checked():  # the prose's claims, on the measured bytes
    share = {name: fits[name][2] * D[-1] ** 2 / memory[name][-1] for name in fits}
    assert share["transformer"] > 0.5 > abs(share["Gated PixelCNN"]), "quadratic for attention, not convolutions"

# %% [markdown]
# The convolutional model's memory is a straight line in $D$ (its fitted $D^2$ coefficient is negligible).
# The transformer's bends upwards: at 28×28 most of what it keeps is attention weights, the $cD^2$ term.
# Double the side of the image and that term grows sixteenfold. This is why Image GPT works on 32×32 or
# 64×64 images, why the Sparse Transformer lets each token attend to a row and a column instead of
# everything, and why PixelSNAIL mixes attention with convolutions.

# %% [markdown]
# ## 3 · Natural images
#
# Digits are nearly black and white, centred, and alike. Real photographs are none of these. scikit-learn
# ships two (a Chinese temple and a flower), which `load_dataset("photos")` cuts into 8×8 colour patches
# after halving each photograph to 213×320 pixels. The **split is by region**: the left three quarters of
# each photograph give the training patches, the right quarter the test patches, so no part of a photograph
# is in both (adjacent patches at the border are alike, as neighbouring regions of any photograph are).

# %%
photos_train = load_dataset("photos", "train", levels=256)
photos_test = load_dataset("photos", "test", levels=256)
print(photos_train, photos_test, sep="\n")
halves = halved_photos()
fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
for ax, photo, name in zip(axes, halves, photos_train.classes):
    ax.imshow(photo.permute(1, 2, 0).numpy())
    ax.axvline(TRAIN_COLUMNS - 0.5, color="red", lw=2)
    ax.set_title(f"{name}: training patches left of the red line, test patches right of it")
    ax.set_xlabel("column (halved photograph)")
    ax.set_ylabel("row")
fig.tight_layout()
plt.show()
show_grid(photos_test.images[::33][:16], "16 test patches (8x8, 256 levels per channel)", levels=256)
plt.show()

# %% [markdown]
# Two models ship pretrained on these patches: the colour Gated PixelCNN of lesson 06 (R → G → B masks,
# a 256-way softmax per sub-pixel; 32 channels and 3 gated layers, since the patches are small) and the
# transformer of section 2 over the $8 \cdot 8 \cdot 3 = 192$ sub-pixels. We score both on the test patches,
# with the independent-pixel baseline of lesson 01 beside them, and put the digits' figures next to them.

# %%
photo_models = {"Gated PixelCNN (colour)": pretrained("photos-colour"), "transformer": pretrained("photos-attention")}
photo_bpd = {name: evaluate(m, photos_test)["bpd"] for name, m in photo_models.items()}
photo_bpd["independent pixels"] = evaluate(IndependentPixelModel.fit(photos_train), photos_test)["bpd"]
for name, short in [("Gated PixelCNN (colour)", "photos-colour"), ("transformer", "photos-attention")]:
    print(f"{name}: {where_trained(record(short))}")
print("\ntest bits/dim:")
for name, bpd in photo_bpd.items():
    print(f"  photos, 8x8 colour, {name:>23}: {bpd:.3f}")
digit_bpd = {name: record(name)["test_bits_per_dim"] for name in ("levels256", "colour")}
print(f"  digits, 28x28 grey, Gated PixelCNN (levels256): {digit_bpd['levels256']:.3f}")
print(f"  digits, 28x28 coloured, Gated PixelCNN (colour): {digit_bpd['colour']:.3f}")

# %% jupyter={"source_hidden": true} tags=["claims"]
if claims_checked():  # the prose's claims, on the shipped models
    best_photo = min(photo_bpd["Gated PixelCNN (colour)"], photo_bpd["transformer"])
    assert best_photo > 3 * max(digit_bpd.values()), "photos cost several times the digits' bits/dim"
    assert max(photo_bpd["Gated PixelCNN (colour)"], photo_bpd["transformer"]) < photo_bpd["independent pixels"] - 0.3

# %% [markdown]
# The photographs cost several times the bits per dimension of the 8-bit digits, with the same kind of model.
# Not because the model got worse: the data hold more information. Most of a digit is background at exactly
# level 0, which a model predicts almost for free; a photograph has texture, shading and sensor noise at every
# pixel, and the last bits of each intensity are close to random. An 8×8 patch also gives little context: the
# first pixels of a patch are predicted knowing nothing about the scene. bits/dim compares models on one data
# set; across data sets it measures the data as much as the model. Both autoregressive models are below the
# independent-pixel baseline: part of a pixel's value is predictable from its neighbours and from its other
# channels, and with 1,560 training patches and a few epochs they have learned only part of that.
# The two autoregressive models differ too, but this is one run of each, at one short budget: not a
# comparison we can draw a conclusion from (section 2 shows how much the seeds alone move such numbers).
#
# Samples, and completions of the bottom half of test patches (the top half given):

# %%
n_show = pick(fast=8, full=16)
photo_samples = {
    "Gated PixelCNN (colour)": sample(photo_models["Gated PixelCNN (colour)"], n_show, seed=0),
    "transformer": sample_with_cache(photo_models["transformer"], n_show, seed=0),
}
fig, axes = plt.subplots(2, 1, figsize=(10, 3.6))
for ax, (name, x) in zip(axes, photo_samples.items()):
    show_grid(x, f"{name}: samples", nrow=n_show, levels=256, ax=ax, xlabel="sample", ylabel="")
fig.tight_layout()
plt.show()

originals = photos_test.images[::65][:8]
given = occlude(originals, "bottom")
completions = {
    "Gated PixelCNN (colour)": sample(photo_models["Gated PixelCNN (colour)"], len(originals), given=given, seed=0),
    "transformer": sample_with_cache(photo_models["transformer"], len(originals), given=given, seed=0),
}
shown = originals * given[1]  # the given top half, black below
rows = [("test patch", originals), ("given (top half)", shown)] + list(completions.items())
fig, axes = plt.subplots(len(rows), 1, figsize=(8, 1.3 * len(rows) + 0.5))
for ax, (name, x) in zip(axes, rows):
    show_grid(x, name, nrow=len(originals), levels=256, ax=ax, xlabel="", ylabel="")
axes[-1].set_xlabel("test patch")
fig.suptitle("completing the bottom half of test patches")
fig.tight_layout()
plt.show()

# %%
for name, x in completions.items():
    assert torch.equal(x[:, :, :4], originals[:, :, :4]), f"{name}: the given half is kept exactly"

# %% [markdown]
# Each sample keeps roughly one overall hue (pale sky, dark green water, warm stone), but every pixel is
# speckled with colours that do not belong there: these models, trained for minutes on 1,560 patches, have
# learned the palette of the photographs better than their smoothness. The completions show the same: the
# hidden half takes the hue of the given half, with the same speckle, where the real patches are smooth.
# That 5.5 to 6.4 bits per sub-pixel are left unexplained is visible here: a sharp model of photographs
# needs far more data, larger models and longer training (Image GPT and PixelSNAIL are trained on GPUs).

# %% [markdown]
# ## Recap
# - **MADE** makes a fully connected network autoregressive with degrees: a weight goes from degree $k$ to a
#   hidden unit of degree $m$ only if $m \ge k$, into an output only if it is strictly greater. Masks A and B
#   are the same rule on a grid. Without shared weights or locality it has more parameters than the Gated
#   PixelCNN and still loses to it on digits, in every seed.
# - **Causal self-attention** lets every output see the whole past (the Jacobian shows it), trains and
#   samples with the same functions as the convolutional models, and samples fast and exactly with a
#   key/value cache. Its memory grows with the square of the number of pixels, which we measured.
# - At a small budget on 14×14 digits the transformer and the Gated PixelCNN are within about one seed-to-seed
#   spread of each other; the transformer's reach to the whole past costs memory quadratic in the image size.
# - **Natural images** cost several times the bits/dim of digits with the same models: bits/dim measures the
#   data as much as the model. Compare models on one data set, and with a baseline beside them.

# %% [markdown]
# ## References
#
# - Germain, Gregor, Murray, Larochelle (2015), *MADE: Masked Autoencoder for Distribution Estimation*, ICML, arXiv:1502.03509.
# - Chen, Mishra, Rohaninejad, Abbeel (2018), *PixelSNAIL: An Improved Autoregressive Generative Model*, ICML, arXiv:1712.09763.
# - Chen, Radford, Child, Wu, Jun, Luan, Sutskever (2020), *Generative Pretraining from Pixels* (Image GPT), ICML.
# - Child, Gray, Radford, Sutskever (2019), *Generating Long Sequences with Sparse Transformers*, arXiv:1904.10509.
# - Vaswani et al. (2017), *Attention Is All You Need*, NeurIPS, arXiv:1706.03762: the transformer and its attention.
# - van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves, Kavukcuoglu (2016), *Conditional Image Generation with PixelCNN Decoders*, NeurIPS, arXiv:1606.05328: the Gated PixelCNN.

# %% [markdown]
# ## Exercises
# The graded notebook `exercises/07_beyond_convolutions.ipynb` (its solved twin is in `solutions/`) has 4
# tasks worth 7 points; the check cell under each task tells you as you go whether your code is right, and
# `pixelcnn-grade` grades the whole notebook.
# - **Task 1 · Input degrees** (2 points). Write `input_degrees(image_shape) -> (C, H, W)`: `image_shape` is
#   a tuple `(C, H, W)`; return the degree of every sub-pixel as an int64 tensor laid out like the image, so
#   `degrees[c, i, j]` is the degree of sub-pixel $(c, i, j)$.
# - **Task 2 · Masks from degrees** (2 points). Write
#   `mask_from_degrees(out_degrees, in_degrees, strict=False) -> (out, in)`: the degrees are int64 tensors
#   of shape `(out,)` and `(in,)`; return a float tensor of ones (link allowed) and zeros, with rows for the
#   output units and columns for the input units, like the weight of `nn.Linear`.
# - **Task 3 · The causal mask** (1 point). Write `causal_mask(tokens) -> (T, T)`: a bool tensor that
#   is **True where attention is forbidden**, row $t$ for the query token $t$ and column $s$ for the key
#   token $s$.
# - **Task 4 · Scaled dot-product attention** (2 points). Write
#   `attend(q, k, v, mask=None) -> (..., Tq, dh)`: `q` is `(..., Tq, dh)`, `k` and `v` are `(..., Tk, dh)`
#   with the same leading dimensions (batch, heads), `mask` is `None` (every key allowed) or a `(Tq, Tk)`
#   bool tensor, True where forbidden.
