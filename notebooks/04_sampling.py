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
# # 04 · Sampling: drawing, completing and steering images
#
# A trained PixelCNN gives the probability of any image. This lesson turns that around: we *draw* new
# images from the model, fill in missing parts of real ones, choose which digit to draw, and ask what all
# of this costs.
#
# ## What you will learn
# - **ancestral sampling**: why drawing one sub-pixel at a time, each from the model's prediction given
#   everything drawn so far, gives exact samples, and how to watch it step by step in a widget;
# - **temperature**: how dividing the logits trades diversity for likelihood;
# - **completion**: how to fill in the bottom half or a box of a real digit, keeping the given pixels, and
#   why raster order makes the box harder than the bottom half;
# - **class-conditional sampling**: one network that draws digits of a chosen class *and* digits of any
#   class;
# - whether the samples **copy the training set** (nearest training neighbours);
# - what naive sampling **costs**: one full forward pass per sub-pixel, and what makes it cheaper;
# - **fast cached sampling**: why a masked network's activations never change once computed, and how keeping
#   them turns each step into a few small matrix products (over a hundred times faster at batch 64, same images).
# - what a model **trained for longer** draws: a pretrained model loaded in one line, judged like ours;
# - **classifier-free guidance**: mixing the conditional and unconditional predictions to make the label count
#   for more, and what that costs in likelihood.

# %% [markdown]
# ## Setup: data and one network for two models
#
# We need two distributions: $p(x)$, for drawing any digit, and $p(x \mid y)$, for drawing a digit of class
# $y$. Instead of training two networks we train one **class-conditional Gated PixelCNN with an extra
# class**, number 10, that means "no label". During training every image's label is hidden (replaced by
# 10) with probability 0.3, so the network learns both at once:
#
# - label $y \in \{0, \dots, 9\}$ → a model of $p(x \mid y)$;
# - label 10 → a model of $p(x)$, the digits of all classes mixed.
#
# The label enters every gated layer as a learned bias: one vector per class and layer, 7,040 of the
# network's 159,585 parameters (4.4%), of which the extra class adds 640 (the cell below counts them).
# (Diffusion models use the same trick, under the name *conditioning dropout*, for classifier-free guidance,
# which section 9 tries.)
#
# The hiding is one small `Dataset` wrapper. It draws from torch's global generator, which `fit` reseeds at
# every epoch, so training stays reproducible.

# %%
import math
import time

import matplotlib.pyplot as plt
import torch
from torch.utils.data import Dataset

from course_lib import (
    GatedPixelCNN,
    IndependentPixelModel,
    count_parameters,
    evaluate,
    fit,
    load_dataset,
    occlude,
    pick,
    sample,
)
from course_lib.data import ImageDataset
from course_lib.plotting import plot_history, show_grid

NULL = 10  # the extra class: "no label given"


class HideLabels(Dataset):
    """Yield (x, y) from `data`, but replace y by `null` with probability `p` at every access.
    `fit` needs nothing else of a data set: (x, y) pairs and a length."""

    def __init__(self, data, p, null=NULL):
        self.data, self.p, self.null = data, p, null

    def __len__(self):
        return len(self.data)

    def __getitem__(self, k):
        x, y = self.data[k]
        return x, (torch.tensor(self.null) if torch.rand(()) < self.p else y)


SIZE = pick(fast=14, full=28)
train = load_dataset("mnist-subset", "train", size=SIZE)
test = load_dataset("mnist-subset", "test", size=SIZE)
test_no_label = ImageDataset(test.name, test.intensities, torch.full_like(test.labels, NULL))
C, H, W = train.image_shape
print(train)
print(test)

# %% [markdown]
# Training takes a few minutes on a CPU; `fit` uses a GPU when there is one (lesson 03). Everything after
# training runs on the CPU: the stepping widget and the cost measurements of sections 6 and 7 are about sampling
# on the machine most learners have. We also fit the independent-pixel baseline of lesson 01, as a
# yardstick.

# %%
torch.manual_seed(0)
model = GatedPixelCNN(
    image_shape=(C, H, W),
    channels=pick(fast=16, full=32),
    dilations=pick(fast=(1, 2, 1, 2), full=(1, 2, 1, 4, 1)),
    num_classes=11,
)
label_parameters = sum(layer.class_bias.weight.numel() for layer in model.layers)
print(f"Gated PixelCNN with {count_parameters(model):,} parameters, 11 classes (0-9 and 'no label')")
print(
    f"of which the label biases: {label_parameters:,} ({label_parameters / count_parameters(model):.1%}), "
    f"{label_parameters // 11:,} of them for the 'no label' class"
)
start = time.perf_counter()
history = fit(
    model,
    HideLabels(train, p=0.3),
    test_no_label,
    epochs=pick(fast=3, full=4),
    batch_size=32,
    lr=5e-3,
    progress=False,
)  # trains on pick_device(): a GPU if there is one
print(f"trained {len(history['epoch'])} epochs in {time.perf_counter() - start:.0f} s")
model = model.cpu().eval()  # from here on we only sample and score, on the CPU (see below)

baseline = evaluate(IndependentPixelModel.fit(train), test)["nats"]
unconditional = evaluate(model, test_no_label)["nats"]
conditional = evaluate(model, test)["nats"]
print(f"test NLL, independent pixels      : {baseline:6.1f} nats/image")
print(f"test NLL, model with label 10     : {unconditional:6.1f} nats/image   (p(x))")
print(f"test NLL, model with the true label: {conditional:6.1f} nats/image   (p(x | y))")
print(
    f"the true label saves {unconditional - conditional:.1f} nats/image "
    f"(a perfect model: at most ln 10 = {math.log(10):.2f})"
)

plot_history(history, dims=C * H * W, title="Training the sampling model (test curve: label 'none')")
plt.show()

# %% jupyter={"source_hidden": true} tags=["claims"]
from course_lib.config import claims_checked

if claims_checked():  # the prose's claims, on the course's own full-size build
    assert (label_parameters, count_parameters(model), label_parameters // 11) == (7_040, 159_585, 640)
    assert unconditional - conditional > math.log(10), "the label should save more than ln 10 nats here"

# %% [markdown]
# Read the curves with care: the training curve averages batches in which 70% of the images carry their
# label and 30% do not, while the test curve scores every test digit *without* its label. Part of the gap
# between them is therefore the label's information, not overfitting.
#
# Knowing the label makes test digits more likely. A perfect model would gain at most
# $\ln 10 \approx 2.3$ nats per image from it: that is all the information a choice among ten classes
# carries (the bulk of a digit's nats is in *how* it is written). Ours gains more, so the two are not
# equally good: the "no label" model is further from the truth than the labelled one, which is plausible,
# since its label is hidden in only 30% of the training examples. It is still far better than independent
# pixels, and its samples below are digits.
#
# **Check.** The model must explain test digits far better than independent pixels, with or without the
# label, and better with it.

# %%
assert unconditional < baseline - pick(fast=8, full=80), "the model should beat independent pixels by far"
assert conditional < unconditional, "knowing the class should make test digits more likely"

# %% [markdown]
# ## 1 · Ancestral sampling, one sub-pixel at a time
#
# **How do you draw an image from a model that only predicts one sub-pixel at a time?** The chain rule
# that defines the model,
#
# $$p(x) = \prod_{k=1}^{D} p(x_k \mid x_1, \dots, x_{k-1}),$$
#
# is also a recipe: draw $x_1$ from $p(x_1)$, then $x_2$ from $p(x_2 \mid x_1)$, and so on to $x_D$. Each
# factor is one output of the network, computed from the sub-pixels drawn so far. This is **ancestral
# sampling** ("parents before children"), and it is exact: the probability of drawing a particular image
# is the product of the factors, which *is* $p(x)$. No Markov chain, no burn-in, no approximation.
#
# The order is the one the masks enforce: rows top to bottom, pixels left to right, and inside a pixel the
# channels R, G, B. `course_lib.stepping.AncestralStepper` holds a partly drawn batch of images and advances
# one sub-pixel per `step()`. Its `site(k)` says where step $k$ lands; for a tiny 2×3 colour image:

# %% tags=["nbval-check-output"]
from course_lib.stepping import AncestralStepper

tiny_colour = GatedPixelCNN(image_shape=(3, 2, 3), levels=4, channels=6, dilations=(1,))
order = AncestralStepper(tiny_colour, 1, seed=0)
print("step k -> (channel, row, column)")
for k in range(order.total):
    print(k, order.site(k), end="   " if k % 3 < 2 else "\n")

# %% [markdown]
# Now one digit, with no label (class 10), stepped all the way through. Every `Step` records the
# probability the model gave the sub-pixel to be on, $P(x_k = 1 \mid x_{<k})$, and the value drawn.

# %%
stepper = AncestralStepper(model, 1, labels=NULL, seed=0)
steps = [stepper.step() for _ in range(stepper.total)]
digit = stepper.images
p_on = torch.tensor([s.probs[0].item() for s in steps]).view(H, W)
drawn = torch.tensor([s.value[0].item() for s in steps]).view(H, W)
log_p_steps = torch.where(drawn == 1, p_on, 1 - p_on).log()
print(f"{len(steps)} steps, {stepper.forward_passes} forward passes, done: {stepper.done}")
print(f"sum of log-probabilities of the drawn values: {log_p_steps.sum().item():.2f} nats")
print(f"model.log_prob of the finished image        : {model.log_prob(digit, torch.tensor([NULL])).item():.2f} nats")

# %%
fig, axes = plt.subplots(1, 5, figsize=(16, 3.4))
for ax, k in zip(axes[:2], (H * W // 3, 2 * H * W // 3)):
    done = (torch.arange(H * W) < k).view(H, W)
    ax.imshow(torch.where(done, drawn.float(), torch.tensor(0.5)), cmap="gray", vmin=0, vmax=1)
    ax.set_title(f"after {k} of {H * W} steps\n(grey: not drawn yet)")
axes[2].imshow(drawn, cmap="gray", vmin=0, vmax=1)
axes[2].set_title("the finished sample")
im = axes[3].imshow(p_on, cmap="magma", vmin=0, vmax=1)
axes[3].set_title("P(pixel on | pixels before it)\nwhen it was drawn")
fig.colorbar(im, ax=axes[3], fraction=0.046)
im = axes[4].imshow(-log_p_steps, cmap="viridis")
axes[4].set_title("surprise -log P(drawn value)\n(nats; the map sums to -log p(x))")
fig.colorbar(im, ax=axes[4], fraction=0.046)
for ax in axes:
    ax.set_xlabel("column j")
    ax.set_ylabel("row i")
fig.suptitle("Ancestral sampling of one digit (label 'none')")
plt.tight_layout()
plt.show()

# %% [markdown]
# The two maps show where the sample's randomness went. Far from the stroke the model is sure a pixel is
# off (black in the P(on) map), and once a stroke is under way its continuation is fairly predictable.
# The surprise map shows which draws carried the information: most pixels cost almost nothing, and a few
# stand out, where an unlikely value came up (typically the first pixel of a stroke, or a stroke ending
# or turning). The map adds up to the sample's negative log-likelihood: sampling and scoring are the same
# chain rule, read in two directions.
#
# **Check.** Stepping uses exactly the pieces of `sample()` (the same distributions, the same random draws
# in the same order), so with the same seed it must give the same image. And the per-step log-probabilities
# must add up to `model.log_prob`.

# %%
assert torch.equal(digit, sample(model, 1, labels=NULL, seed=0, method="naive")), "stepping must reproduce sample()"
assert torch.allclose(log_p_steps.sum(), model.log_prob(digit, torch.tensor([NULL]))[0], atol=1e-3)
assert stepper.forward_passes == C * H * W

# %% [markdown]
# ### Try it: a stepping widget
#
# Press **next pixel** and watch the model's prediction for the framed pixel, then the draw. **next row**
# takes $W$ steps, **finish** draws the rest, **new image** starts again with a new seed; the menu chooses
# the class (10 = no label). The callbacks only call the stepper; the picture is drawn by `draw_state`.

# %%
import io

import ipywidgets as widgets


def draw_state(stepper, axes):
    """Left: the image so far (grey: not drawn yet), the next pixel framed. Right: its predicted distribution."""
    k, (_, i, j) = stepper.position, stepper.site(min(stepper.position, stepper.total - 1))
    done = (torch.arange(H * W) < k).view(H, W)
    axes[0].imshow(torch.where(done, stepper.images[0, 0].float(), torch.tensor(0.5)), cmap="gray", vmin=0, vmax=1)
    axes[0].set(title=f"after {k} of {stepper.total} steps", xlabel="column j", ylabel="row i")
    if stepper.done:
        axes[1].set(title="finished", xlabel="value of the next pixel", ylabel="probability")
        return
    axes[0].add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    p = stepper.predict()[0].item()
    axes[1].bar(["0 (off)", "1 (on)"], [1 - p, p], color=["dimgray", "orange"])
    axes[1].set(
        ylim=(0, 1),
        title=f"next pixel (row {i}, column {j})\nP(on) = {p:.3f}",
        xlabel="value of the next pixel",
        ylabel="probability",
    )


ui = {"stepper": AncestralStepper(model, 1, labels=NULL, seed=1)}
picture = widgets.Image(format="png")
buttons = {name: widgets.Button(description=name) for name in ("next pixel", "next row", "finish", "new image")}
class_menu = widgets.Dropdown(
    options=[("none (10)", NULL)] + [(str(c), c) for c in range(10)], value=NULL, description="class"
)


def redraw():
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    draw_state(ui["stepper"], axes)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=80)
    plt.close(fig)
    picture.value = png.getvalue()


def advance(n):
    ui["stepper"].run(n)
    redraw()


def restart(seed):
    ui["stepper"] = AncestralStepper(model, 1, labels=class_menu.value, seed=seed)
    redraw()


buttons["next pixel"].on_click(lambda _: advance(1))
buttons["next row"].on_click(lambda _: advance(W))
buttons["finish"].on_click(lambda _: advance(None))
buttons["new image"].on_click(lambda _: restart(ui["stepper"].seed + 1))
class_menu.observe(lambda change: restart(ui["stepper"].seed), names="value")
redraw()
widgets.VBox([widgets.HBox([*buttons.values(), class_menu]), picture])

# %% [markdown]
# A static page (GitHub, the HTML export) shows no widget, so here is what it draws at three moments of
# one image (seed 1, no label): the same `draw_state`. Most pixels are near-certain background, so we
# pick moments where the model hesitates. Sampling and scoring are the same chain rule, so one forward pass
# over the finished image gives $P(\text{on})$ at every step; we choose the three most uncertain pixels
# (closest to 0.5) in different parts of the image, which lie at the edges of strokes.

# %%
finished_digit = sample(model, 1, labels=NULL, seed=1)  # the image the stepper with seed 1 draws
with torch.no_grad():
    p_seen = torch.sigmoid(model(finished_digit, torch.tensor([NULL]))).flatten()  # P(on) at every step
moments = []
for k in (p_seen - 0.5).abs().argsort().tolist():  # most uncertain first
    if all(abs(k // W - m // W) >= H // 6 for m in moments):  # rows apart: three different places
        moments.append(k)
    if len(moments) == 3:
        break
moments.sort()
fig, axes = plt.subplots(2, len(moments), figsize=(12, 7), gridspec_kw={"height_ratios": [3, 2]}, layout="constrained")
shown_p = []
for column, k in enumerate(moments):
    still = AncestralStepper(model, 1, labels=NULL, seed=1)
    still.run(k)
    draw_state(still, axes[:, column])
    shown_p.append(still.predict()[0].item())
fig.suptitle(
    "The stepping widget at three uncertain moments\n(top: the image so far; bottom: the next pixel's distribution)"
)
plt.show()
print("P(on) at the three moments:", ", ".join(f"{p:.2f}" for p in shown_p))

# %% jupyter={"source_hidden": true} tags=["claims"]
assert all(0.2 < p < 0.8 for p in shown_p), "the figure should show moments where the model hesitates"
assert torch.allclose(torch.tensor(shown_p), p_seen[moments], atol=1e-4), "one pass should give the stepper's P(on)"

# %% [markdown]
# The buttons are ordinary Python objects, so code can press them too: click **next pixel** five times,
# **next row** once, then choose class 3 (which starts a new image).

# %%
for _ in range(5):
    buttons["next pixel"].click()
assert ui["stepper"].position == 5
buttons["next row"].click()
assert ui["stepper"].position == 5 + W
class_menu.value = 3
assert ui["stepper"].position == 0 and ui["stepper"].labels.tolist() == [3]
print("widget: clicks advance the stepper one sub-pixel (or one row) at a time")

# %% [markdown]
# ## 2 · Temperature: sharper or wilder samples
#
# **Can we ask for "more typical" samples?** Temperature $T$ divides every logit before the sigmoid:
#
# $$P_T(x_k = 1 \mid x_{<k}) = \sigma\!\left(\ell_k / T\right).$$
#
# Below 1 it pushes each probability towards 0 or 1 (at $T \to 0$ every pixel takes its most likely
# value); above 1 it pulls them towards $\tfrac12$. A logit of 2 (a probability of 0.88) becomes:

# %% tags=["nbval-check-output"]
for T in (0.5, 0.8, 1.0, 1.25, 2.0):
    print(f"T = {T:4}:  P(on) = {torch.sigmoid(torch.tensor(2.0) / T).item():.3f}")

# %% [markdown]
# Temperature acts on every one of the $D$ conditionals, so small changes compound over the $D$ draws.
# We draw the same number of digits at four temperatures and score each with the model itself at $T = 1$.
# For diversity we measure the average Hamming distance between two samples of the same temperature
# (the number of pixels in which they differ).

# %%
from course_lib.neighbours import nearest_neighbours, pairwise_distances

temperatures = (0.6, 0.8, 1.0, 1.3)
per_t = 6
by_t = {T: sample(model, per_t, labels=NULL, temperature=T, seed=1) for T in temperatures}
no_label = torch.full((per_t,), NULL)
log_lik = {T: model.log_prob(x, no_label).mean().item() for T, x in by_t.items()}
spread = {T: pairwise_distances(x, x).sum().item() / (per_t * (per_t - 1)) for T, x in by_t.items()}
for T in temperatures:
    print(f"T = {T}: mean log p(x) = {log_lik[T]:7.1f} nats, mean distance between samples = {spread[T]:5.1f} pixels")
print(f"for comparison, real test digits: mean log p(x) = {-unconditional:7.1f} nats")

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 3.6), gridspec_kw={"width_ratios": [2.2, 1, 1]})
show_grid(
    torch.cat([by_t[T] for T in temperatures]),
    "Samples at four temperatures (no label)",
    nrow=per_t,
    ax=axes[0],
    xlabel="sample",
    ylabel="T = " + ", ".join(map(str, temperatures)) + " (top to bottom)",
)
axes[1].plot(temperatures, [log_lik[T] for T in temperatures], "o-", label="samples")
axes[1].axhline(-unconditional, color="gray", linestyle="--", label="real test digits")
axes[1].set(title="Likelihood of the samples", xlabel="temperature T", ylabel="mean log p(x) (nats, model at T=1)")
axes[1].legend()
axes[2].plot(temperatures, [spread[T] for T in temperatures], "o-")
axes[2].set(title="Diversity of the samples", xlabel="temperature T", ylabel="mean Hamming distance (pixels)")
plt.tight_layout()
plt.show()

# %% [markdown]
# Cold samples are clean but drift towards the simplest, most probable digits (thin 1s and 7s), so they
# are more alike, and the model finds them *more* likely than real test digits: low temperature trades
# diversity for likelihood. Hot samples gain stray pixels and broken strokes, and lose likelihood fast.
# At $T = 1$ the samples score in the same range as real test digits.
#
# Per-step temperature is not the same as sampling from $p(x)^{1/T}$ renormalised over whole images: each
# conditional is sharpened separately, which is cheap but only approximately "the most typical images".
#
# **Check.** Colder samples must score higher under the model than samples at $T = 1$, hotter ones lower;
# and the coldest must be more alike than the hottest.

# %%
assert log_lik[0.6] > log_lik[0.8] > log_lik[1.0] > log_lik[1.3], "likelihood should fall as T rises"
assert spread[0.6] < spread[1.3], "cold samples should be more alike than hot ones"

# %% jupyter={"source_hidden": true} tags=["claims"]
from course_lib.config import claims_checked

if claims_checked():  # the prose's claims, on the course's own full-size build
    assert log_lik[0.8] > -unconditional, "cold samples should be more likely than real test digits"
    assert abs(log_lik[1.0] + unconditional) < 10, "at T = 1 samples should score near real test digits"

# %% [markdown]
# ## 3 · Completion: fill in what is missing
#
# **Can the model finish a half-drawn digit?** Sampling can start from a partly known image: the known
# sub-pixels are copied in and never drawn, the others are drawn in raster order as before
# (`sample(..., given=(images, known))`; `occlude` builds the mask). For the **bottom half** this is exact
# conditional sampling: every hidden pixel comes after all the given ones, so each draw sees everything
# that is known, and the result is a sample of $p(\text{bottom} \mid \text{top})$.
#
# A **box** in the middle is different. The given pixels *below and to the right* of the box come later in
# raster order, and the masks hide them from the predictions inside the box. The box is drawn from
# $p(\text{box} \mid \text{pixels before it})$ only, so it may not join up with the strokes below it.
# (Conditioning on the future needs another order or another model.)
#
# We hide part of four test digits and complete each three times, with no label, so the model has to
# guess which digit it is looking at.

# %%
chosen = torch.stack([torch.nonzero(test.labels == c)[0, 0] for c in (2, 3, 4, 7)])
originals = test.images[chosen]
repeats = 3
expanded = originals.repeat_interleave(repeats, 0)  # every digit three times
completions = {}
for region in ("bottom", "box"):
    given = occlude(expanded, region)
    completions[region] = sample(model, len(expanded), labels=NULL, given=given, seed=2)
    known = given[1].expand_as(expanded)
    assert torch.equal(completions[region][known], expanded[known]), "given pixels must stay unchanged"
print(f"{len(chosen)} digits x {repeats} completions x 2 regions: the given pixels are unchanged")


def completion_rows(originals, known, done):
    """Per digit: original | what the model is given (hidden area grey) | the completions, as levels 0..2."""
    rows = []
    for k, x in enumerate(originals):
        shown = torch.where(known[0], 2 * x, torch.ones_like(x))
        rows += [2 * x, shown, *(2 * done[k * repeats : (k + 1) * repeats])]
    return torch.stack(rows)


fig, axes = plt.subplots(1, 2, figsize=(12, 5))
for ax, region in zip(axes, ("bottom", "box")):
    known = occlude(originals, region)[1]
    show_grid(
        completion_rows(originals, known, completions[region]),
        f"Completing the {region} (no label)",
        nrow=2 + repeats,
        levels=3,
        ax=ax,
        xlabel="original | given (grey = hidden) | three completions",
        ylabel="test digit",
    )
plt.tight_layout()
plt.show()

# %% [markdown]
# The bottom completions vary, and not only in style: from the top half alone the model often finishes
# a digit as *another* digit with the same top (a 7 with a loop like a 9, for example), which is the
# model saying that the top half is ambiguous. Box completions can leave seams and stray strokes at the
# lower and right edges of the box, where the drawn pixels meet given ones that the model never saw.
#
# **Check** (done in the cell above): in every completion, every given sub-pixel is exactly the original.
# And the three completions of a digit are genuine draws, not one deterministic answer:

# %%
differ = [
    not torch.equal(completions["bottom"][k * repeats], completions["bottom"][k * repeats + 1])
    for k in range(len(chosen))
]
assert all(differ), "two completions of the same half digit should differ somewhere"

# %% [markdown]
# ## 4 · Class-conditional sampling: choose the digit
#
# **Can we ask for a 7?** With the labels 0-9 the same network gives $p(x \mid y)$: the label's learned
# bias in every gated layer steers each conditional. We draw a few samples of every class.

# %%
per_class = 3
class_labels = torch.arange(10).repeat(per_class)  # columns: classes 0..9; rows: samples
by_class = sample(model, len(class_labels), labels=class_labels, seed=3)
show_grid(by_class, "Class-conditional samples", nrow=10, xlabel="class 0 to 9 (left to right)", ylabel="sample")
plt.show()

# %% [markdown]
# Several columns are clearly the requested digit; others are rough, from a small model trained for a
# few minutes. How can we *measure* that a sample of class 3 looks like a 3, without a person looking? We
# use a simple judge: the majority label of its 5 nearest training images (in Hamming distance, the number
# of differing pixels). First we see how good that judge is on real test digits, then we let it judge the
# samples. Chance is 10%.

# %%
from course_lib.neighbours import majority_label

judge_test = test.images[::10]  # 100 real test digits, 10 per class
_, idx = nearest_neighbours(judge_test, train.images, k=5)
judge_accuracy = (majority_label(idx, train.labels, 10) == test.labels[::10]).float().mean().item()
_, idx = nearest_neighbours(by_class, train.images, k=5)
judged = majority_label(idx, train.labels, 10)
agreement = (judged == class_labels).float().mean().item()
print(f"the judge on real test digits:  {judge_accuracy:.0%} correct")
print(f"the judge on conditional samples: {agreement:.0%} judged as the class they were drawn for")
print("judged labels (rows = samples, columns = requested class 0..9):")
print(judged.view(per_class, 10))

# %% [markdown]
# The judge recognises the requested class several times more often than chance, though far less often
# than it recognises real digits: the label clearly steers the samples, but many of them are still too
# rough for the judge (or for a person) to be sure.
#
# **Check.** The judge must recognise the requested class far more often than chance (10%).

# %%
assert agreement >= 0.3, f"only {agreement:.0%} of class samples were recognised"

# %% [markdown]
# ## 5 · Do the samples copy the training set?
#
# A model with enough capacity could memorise its 4,000 training digits and replay them. The test: for
# every sample, find the nearest training image. Copies would sit at distance 0. But "small" needs a
# yardstick: real test digits are by definition new handwriting, so their distances to the nearest
# training digit show what "new but typical" looks like.

# %%
samples = torch.cat([by_t[1.0], by_class])
d_samples, i_samples = nearest_neighbours(samples, train.images, k=1)
d_test, _ = nearest_neighbours(test.images[::5], train.images, k=1)
print(f"nearest training image, Hamming distance (pixels out of {C * H * W}):")
print(f"  samples ({len(samples)}):     min {d_samples.min():.0f}, median {d_samples.median():.0f}")
print(f"  real test digits ({len(d_test)}): min {d_test.min():.0f}, median {d_test.median():.0f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 3.6), gridspec_kw={"width_ratios": [1.6, 1]})
pairs = torch.cat([samples[:10], train.images[i_samples[:10, 0]]])
show_grid(
    pairs,
    "Samples (top) and their nearest training images (bottom)",
    nrow=10,
    ax=axes[0],
    xlabel="sample",
    ylabel="sample / nearest neighbour",
)
bins = torch.linspace(0, max(d_samples.max(), d_test.max()).item() + 1, 25)
axes[1].hist(d_test[:, 0], bins=bins, density=True, alpha=0.6, label="real test digits")
axes[1].hist(d_samples[:, 0], bins=bins, density=True, alpha=0.6, label="samples")
axes[1].set(title="Distance to the nearest training image", xlabel="Hamming distance (pixels)", ylabel="density")
axes[1].legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# No sample is a copy: even the closest differs from every training digit in many pixels. In fact
# the samples sit *further* from the training set than real new digits do, because they are rougher than
# real handwriting: stray pixels and broken strokes cost pixels against every training digit. Their nearest
# neighbour is often a thin 1 or 7, simply because a thin digit has few pixels that can disagree (a
# weakness of pixel distances as a judge of likeness). Real test digits, for their part, can come very
# close to a training digit: people write some digits in nearly the same way.
#
# **Check.** No sample is an exact copy, and samples are not much closer to the training set than real new
# digits are (a memorising model would fail this).

# %%
assert d_samples.min() > 0, "a sample is an exact copy of a training image"
assert d_samples.median() > 0.5 * d_test.median(), "samples sit much closer to the training set than new digits do"

# %% jupyter={"source_hidden": true} tags=["claims"]
from course_lib.config import claims_checked

if claims_checked():  # the prose's claims, on the course's own full-size build
    assert d_samples.median() > d_test.median(), "samples should sit further from the training set than test digits"

# %% [markdown]
# ## 6 · What does sampling cost?
#
# **Why is sampling so much slower than scoring?** To score an image (and to train), one forward pass
# gives the conditionals of all $D$ sub-pixels at once: the whole image is known, and the masks make each
# output see only its past. In sampling, sub-pixel $k$ cannot be predicted before $k - 1$ has been drawn, so naive sampling
# runs the *whole* network once per sub-pixel: $D = C \cdot H \cdot W$ passes, 784 for a binary 28×28
# digit, each recomputing every position although only one input changed. We count the passes with a
# forward hook.


# %%
def timed(f):
    """Seconds taken by one call of f()."""
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


calls = []
hook = model.register_forward_hook(lambda module, inputs, output: calls.append(len(inputs[0])))
naive_seconds = timed(lambda: sample(model, 1, labels=NULL, seed=0, method="naive"))
naive_passes = len(calls)
calls.clear()
sample(model, 1, labels=NULL, given=occlude(test.images[:1], "bottom"), seed=0, method="naive")
completion_passes = len(calls)
calls.clear()
model.log_prob(test.images[:1], torch.tensor([NULL]))
scoring_passes = len(calls)
hook.remove()
scoring_seconds = min(timed(lambda: model.log_prob(test.images[:1], torch.tensor([NULL]))) for _ in range(5))
print(f"D = C*H*W = {C * H * W}")
print(f"sampling one image:           {naive_passes} forward passes ({naive_seconds:.1f} s)")
print(f"completing its bottom half:   {completion_passes} forward passes")
print(f"scoring one image (log_prob): {scoring_passes} forward pass ({scoring_seconds * 1000:.0f} ms)")
print(f"sampling took {naive_seconds / scoring_seconds:.0f} times as long as scoring")

# %% tags=["nbval-check-output"]
print("naive sampling makes C*H*W forward passes:", naive_passes == C * H * W)
print("completion only passes over the hidden half:", completion_passes == C * H * W // 2)
print("scoring an image takes one pass:", scoring_passes == 1)
assert naive_passes == C * H * W and completion_passes == C * H * W // 2 and scoring_passes == 1

# %% [markdown]
# Sampling costs on the order of $D$ times as much as scoring, as the pass count says (the timings are
# rough, and noisy on a busy machine).
#
# A pass over a batch of $B$ images draws one sub-pixel of each, so the cost per image is
# $D \cdot t(B) / B$, with $t(B)$ the time of one forward pass at batch $B$. We time passes at each batch
# size, in five interleaved rounds, and keep the fastest (the least disturbed by other programs).

# %%
batch_sizes = (1, 4, 16, 64)
fastest = {b: float("inf") for b in batch_sizes}
with torch.no_grad():
    for _ in range(5):
        for b in batch_sizes:
            x, y = torch.zeros(b, C, H, W, dtype=torch.long), torch.full((b,), NULL)
            fastest[b] = min(fastest[b], timed(lambda: model(x, y)))
seconds_per_image = {b: C * H * W * fastest[b] / b for b in batch_sizes}
for b in batch_sizes:
    print(f"batch {b:3d}: {seconds_per_image[b]:.2f} s of naive sampling per image")

fig, ax = plt.subplots(figsize=(6, 3.6))
ax.plot(batch_sizes, [seconds_per_image[b] for b in batch_sizes], "o-")
ax.set_xscale("log", base=2)
ax.set_xticks(batch_sizes, [str(b) for b in batch_sizes])
ax.minorticks_off()
ax.set_ylim(bottom=0)
ax.set(
    title=f"Naive sampling cost on this machine ({C * H * W} passes per image)",
    xlabel="batch size B",
    ylabel="seconds per sampled image",
)
plt.tight_layout()
plt.show()

# %% [markdown]
# What you can do about it, from cheapest to most work:
#
# - **Batch**: one pass draws a sub-pixel of every image in the batch. On a CPU the time of a pass grows
#   less than in proportion to the batch from 1 to 4 and then roughly in proportion (the cores are soon
#   busy), so the cost per image changes far less than the batch size does; on a GPU a pass over 64 images costs little more than a
#   pass over one, so batching is the first and free speed-up there.
# - **Draw only what is missing**: completion skips the given sub-pixels (half the passes above).
# - **Smaller models and images**: the cost is $D$ times one pass; a 14×14 digit has four times fewer
#   sub-pixels than a 28×28 one, so four times fewer passes, and each pass is cheaper too.
# - **Cache**: each naive pass recomputes all $D$ positions although only one input changed. The next
#   section keeps what was computed and computes only what changed: by far the biggest win.
#
# ## 7 · Fast sampling: cache what does not change
#
# **Question.** After pixel $(i, j)$ is drawn, the next prediction is for $(i, j+1)$. How much of the
# network's work for it is new?
#
# Every layer is masked, so the activation of any layer at position $(k, l)$ depends only on pixels
# *before* $(k, l)$. Activations at positions before $(i, j+1)$ depend only on pixels already drawn: they
# will never change again. Activations at later positions depend on pixels not drawn yet: nobody needs them
# yet. So the next prediction needs exactly **one new activation per layer**, at $(i, j+1)$. This is the idea
# of fast generation for convolutional autoregressive models (Ramachandran et al., 2017): keep every layer's
# activations in a cache and, for each new pixel, compute only what it changes. In the Gated PixelCNN:
#
# - the **vertical stack** sees only the rows above, so it is computed **once per row**, one row of every
#   layer (`cache.start_row(i)`);
# - the **horizontal stack** sees the current row up to the pixel, so it is computed **once per pixel**, one
#   position of every layer (`cache.logits_at(j)`): its $1 \times 3$ masked convolution sees two cached
#   positions, so it becomes one matrix product of shape (batch, 2·channels) × (2·channels, 2·channels).
#
# A step is a few dozen small operations instead of a forward pass over batch × channels × 28 × 28.
# `course_lib/cached_sampling.py` is the whole implementation; `sample()` has used it all along in this
# lesson (`method="auto"` picks it for course_lib models), except where we asked for `method="naive"`.
# How a step is written to run fast on a CPU (four small operations per gated layer, the gate as one
# sigmoid, buffers made once) is engineering on top of this idea, not part of it: the module docstring of
# `course_lib/cached_sampling.py` walks through it. What matters here is whether the cache is exact, and
# what it saves.

# %% [markdown]
# **Is it exact?** Feed a real test digit to the cache position by position, and compare every logit with
# one full forward pass over the whole digit.

# %%
from course_lib.cached_sampling import make_cache

digit, no_label = test.images[:1], torch.tensor([NULL])
with torch.no_grad():
    full = model(digit, no_label)  # (1, C, H, W): every conditional at once
    cache = make_cache(model, digit.clone(), no_label)
    from_cache = torch.zeros_like(full)
    for i in range(H):
        cache.start_row(i)  # vertical stack: one row of every layer
        for j in range(W):
            from_cache[:, 0, i, j] = cache.logits_at(j)  # horizontal stack: one position of every layer
difference = (from_cache - full).abs().max().item()
print(f"{H * W} logits, largest difference between cache and full pass: {difference:.1e}")

# %% [markdown]
# The differences are float32 rounding: the cache adds the same products in a different order and writes
# the gate in an equal form with one sigmoid. With the same seed, the two samplers then draw the same images: a draw compares a
# uniform random number with $p$, and rounding moves $p$ by at most a quarter of the logit difference
# printed above, about $10^{-6}$, so a draw flips only if the random number falls in that sliver: about once
# in a million draws. In float64 the sliver vanishes, so we check there that the images are
# identical, and count the forward passes the cached sampler makes.

# %%
import copy

model64 = copy.deepcopy(model).double()
n_check = pick(fast=2, full=4)
passes = []
hook = model64.register_forward_hook(lambda module, inputs, output: passes.append(1))
naive64 = sample(model64, n_check, labels=NULL, seed=4, method="naive")
naive_passes = len(passes)
passes.clear()
cached64 = sample(model64, n_check, labels=NULL, seed=4, method="cached")
hook.remove()
print(
    f"float64, {n_check} images, seed 4: identical = {torch.equal(naive64, cached64)}; "
    f"full forward passes: naive {naive_passes}, cached {len(passes)}"
)

# %%
assert difference < 1e-4, "cached logits must equal the full forward pass's"
assert torch.equal(naive64, cached64), "same seed, same model: cached and naive sampling must agree"
assert naive_passes == C * H * W and passes == []

# %% [markdown]
# **How much faster?** The naive cost at each batch size is the section-6 pass time times $D$; the cached
# sampler we time directly (median of three runs, `course_lib.benchmark.sampling_seconds`). The last column,
# *passes*, is the cached time in units of one full forward pass of the same batch (section 6's fastest):
# in total the cached sampler does no more arithmetic than one pass (less: it skips the weights the masks
# zero), so a value well above 1 is the cost of running it as many small operations, one pixel at a time.

# %%
from course_lib.benchmark import sampling_seconds

cached_seconds = {b: sampling_seconds(model, b, "cached", repeats=3) for b in batch_sizes}
naive_seconds_at = {b: C * H * W * fastest[b] for b in batch_sizes}
print(f"{'batch':>5s} {'naive s':>9s} {'cached s':>9s} {'speed-up':>9s} {'passes':>7s}")
for b in batch_sizes:
    speed_up, passes = naive_seconds_at[b] / cached_seconds[b], cached_seconds[b] / fastest[b]
    print(f"{b:5d} {naive_seconds_at[b]:9.2f} {cached_seconds[b]:9.3f} {speed_up:8.0f}x {passes:7.1f}")
first, last = batch_sizes[0], batch_sizes[-1]
print(f"cached time, batch {last} against batch {first}: {cached_seconds[last] / cached_seconds[first]:.1f}x")

fig, ax = plt.subplots(figsize=(6, 3.6))
ax.plot(batch_sizes, [naive_seconds_at[b] / b for b in batch_sizes], "o-", label="naive: D full passes")
ax.plot(batch_sizes, [cached_seconds[b] / b for b in batch_sizes], "s-", label="cached")
ax.set_xscale("log", base=2)
ax.set_yscale("log")
ax.set_xticks(batch_sizes, [str(b) for b in batch_sizes])
ax.minorticks_off()
ax.set(title="Sampling cost per image on this machine", xlabel="batch size B", ylabel="seconds per image (log)")
ax.legend()
plt.tight_layout()
plt.show()

# %% jupyter={"source_hidden": true} tags=["claims"]
from course_lib.config import claims_checked

if claims_checked():  # the prose's claims, on the course's own full-size build
    speed_up_at = {b: naive_seconds_at[b] / cached_seconds[b] for b in batch_sizes}
    assert speed_up_at[64] > 100, "cached sampling should be over a hundred times faster at batch 64"
    assert speed_up_at[64] > speed_up_at[1], "the speed-up should grow with the batch"
    assert cached_seconds[64] < 16 * cached_seconds[1], "the cached time should grow far more slowly than the batch"

# %% [markdown]
# **Where these numbers come from.** The naive column is not a timed naive run: it is $D$ times the
# *fastest* of several single forward passes timed in section 6, a lower bound that leaves out the
# sampler's own work between passes. The benchmark script `benchmarks/sampling.py` (`make bench`), whose
# tables the README quotes, times sampled rows with the real naive sampler instead, so its naive times
# include that work; and it ran on another 2-core CPU, which the README names. Its speed-ups are therefore
# not comparable figure for figure with this table's; the exact factor depends on the machine and on how the
# naive cost is measured.
#
# The speed-up grows with the batch. A naive pass costs in proportion to batch × positions, while a cached
# step touches one position per layer. At batch 1 the cached step is so small that Python and the launch of
# its many small operations dominate, and they cost the same at any batch size: the cached time grows far
# more slowly than the batch (the last line printed above), so the speed-up grows. Single timings on a
# shared machine are noisy: a row can come out slower than a larger batch's. On a GPU the launches
# dominate even more (each costs microseconds whatever its size), which is where capturing the step in a
# CUDA graph or compiling it pays. `make bench` measures both samplers at batch 1 to 256 on your machine
# (`benchmarks/sampling.py`); the README quotes the latest tables.
#
# The cache relies on causality: it assumes an activation, once computed, never changes. A model with a
# leaking mask (lesson 02's mask-B-first bug) breaks that assumption, so `method="auto"` checks the masks and
# falls back to naive sampling for such a model, and for models it does not know.

# %% [markdown]
# ## 8 · A model trained for longer
#
# The model of this lesson trained for a few minutes. What does a PixelCNN draw after more? The course
# ships models trained for about half an hour on a CPU (the README's "Pretrained models" lists their
# recipes, machines and scores). `pretrained("binary-conditional")` is a wider Gated PixelCNN (48 channels,
# 7 gated layers) trained on the same binarized 28×28 digits, always told the digit's class (so it has no
# "no label" class). One line loads it; set `TRAIN_YOUR_OWN = True` to retrain the same recipe instead.

# %%
from course_lib import pretrained
from course_lib.zoo import record, retrain

TRAIN_YOUR_OWN = False  # True: retrain the recipe here (about half an hour on a CPU); the shipped files stay
finished = retrain("binary-conditional") if TRAIN_YOUR_OWN else pretrained("binary-conditional")
info = record("binary-conditional")
print(
    f"binary-conditional: {info['parameters']:,} parameters, {info['train']['epochs']} epochs, "
    f"{info['train_seconds'] / 60:.0f} min of training; test NLL {info['test_nats_per_image']:.2f} nats/image "
    f"with the true label (recorded)"
)
if SIZE == 28:  # the same test digits as this lesson's model, so the two figures compare
    print(f"this lesson's model with the true label: {conditional:.2f} nats/image")

# %% [markdown]
# The same class grid and the same nearest-neighbour judge as in section 4, for both models, with ten
# samples of each class (the judge compares with training digits of each model's size):

# %%
train28 = train if SIZE == 28 else load_dataset("mnist-subset", "train")
grid_labels = torch.arange(10).repeat(10)  # columns: classes 0..9; rows: samples
judged_share = {}
fig, axes = plt.subplots(1, 2, figsize=(13, 5))
for ax, (name, m, digits) in zip(
    axes, (("this lesson's model", model, train), ("pretrained binary-conditional", finished, train28))
):
    drawn = sample(m, len(grid_labels), labels=grid_labels, seed=8)
    _, idx = nearest_neighbours(drawn, digits.images, k=5)
    judged_share[name] = (majority_label(idx, digits.labels, 10) == grid_labels).float().mean().item()
    print(f"{name}: the judge names the requested class for {judged_share[name]:.0%} of {len(grid_labels)} samples")
    show_grid(
        drawn,
        f"{name}: class-conditional samples",
        nrow=10,
        ax=ax,
        xlabel="class 0 to 9 (left to right)",
        ylabel="sample",
    )
plt.tight_layout()
plt.show()

# %% [markdown]
# The longer-trained model's digits are cleaner, with fewer broken strokes and stray pixels, and the judge
# names the requested class about twice as often (the lines printed above, 100 samples each). It completes
# half digits too: given the top half and the true class, it draws the bottom half.

# %%
test28 = test if SIZE == 28 else load_dataset("mnist-subset", "test")
given_digits, given_labels = test28.images[::100][:10], test28.labels[::100][:10]
given = occlude(given_digits, "bottom")
completed = sample(finished, len(given_digits), labels=given_labels, given=given, seed=9)
show_grid(
    torch.cat([given_digits * given[1], completed, given_digits]),
    "Pretrained model: bottom halves completed",
    nrow=10,
    xlabel="test digit",
    ylabel="top half given / completed / original",
)
plt.show()

# %% [markdown]
# **Check.** The longer-trained model must be recognised at least as often as this lesson's, and far more
# often than chance.

# %%
assert judged_share["pretrained binary-conditional"] >= max(0.5, judged_share["this lesson's model"])

# %% jupyter={"source_hidden": true} tags=["claims"]
from course_lib.config import claims_checked

if claims_checked():  # the prose's claims, on the course's own full-size build
    ratio = judged_share["pretrained binary-conditional"] / judged_share["this lesson's model"]
    assert 1.5 < ratio < 2.5, "the pretrained model should be recognised about twice as often"

# %% [markdown]
# ## 9 · Classifier-free guidance: make the label count for more
#
# **Can we make the samples follow their label more closely?** Our model's conditional samples are often
# not recognisable as their class (sections 4 and 8). *Classifier-free guidance* (Ho & Salimans, 2022,
# introduced for diffusion models) mixes, at every step, the logits $\ell_c$ of the conditional model
# $p(x_k \mid x_{<k}, y)$ and $\ell_u$ of the unconditional model $p(x_k \mid x_{<k})$ with a weight $w \ge 0$:
#
# $$\ell_w = (1 + w)\,\ell_c - w\,\ell_u = \ell_c + w\,(\ell_c - \ell_u).$$
#
# The difference $\ell_c - \ell_u$ is what knowing the label changed; guidance multiplies that change by
# $1 + w$. At $w = 0$ it is plain conditional sampling. By Bayes' rule, the new distribution of a sub-pixel is
# proportional to $p(x_k \mid x_{<k}, y)\,\big(p(y \mid x_{\le k}) / p(y \mid x_{<k})\big)^w$: it favours the
# values that make the label more evident to the model's own implicit classifier. It is no longer sampling
# from the model: like a low temperature, it trades the model's probabilities for something else.
#
# We guide with this lesson's network, whose label 10 already is the unconditional model that guidance
# needs (it was trained with 30% of the labels hidden), so no second network has to be trained. Both
# predictions come from cached samplers over the same images (`sample(..., guidance=w,
# unconditional=model, null_label=10)`), so a guided sample costs two cached samples, not $2D$ forward passes.
#
# We draw the same class grid at several weights, and measure two things on every batch: how often the
# judge of section 4 names the requested class, and the mean log-likelihood of the samples under the
# unconditional model, $\log p(x)$ (label 10). Samples drawn with the same seed share their random numbers,
# so each seed gives one comparison across weights; we repeat with several seeds to see the spread.

# %%
guidance_weights = pick(fast=(0, 1, 3), full=(0, 0.5, 1, 2, 3))
guidance_seeds = range(pick(fast=3, full=5))
per_class_guided = pick(fast=3, full=10)
guided_labels = torch.arange(10).repeat(per_class_guided)  # columns: classes 0..9; rows: samples
no_label_guided = torch.full_like(guided_labels, NULL)


def judged_correct(images, labels):
    """Share of `images` that the judge of section 4 (5 nearest training digits) assigns to `labels`."""
    _, idx = nearest_neighbours(images, train.images, k=5)
    return (majority_label(idx, train.labels, 10) == labels).float().mean().item()


start = time.perf_counter()
guided = {}  # (w, seed) -> samples
judged_at, log_p_at = {w: [] for w in guidance_weights}, {w: [] for w in guidance_weights}
for w in guidance_weights:
    for seed in guidance_seeds:
        x = sample(
            model,
            len(guided_labels),
            labels=guided_labels,
            seed=100 + seed,
            guidance=w,
            unconditional=model,
            null_label=NULL,
        )
        guided[w, seed] = x
        judged_at[w].append(judged_correct(x, guided_labels))
        log_p_at[w].append(model.log_prob(x, no_label_guided).mean().item())
print(
    f"{len(guidance_weights)} weights x {len(guidance_seeds)} seeds x {len(guided_labels)} samples "
    f"in {time.perf_counter() - start:.0f} s"
)
print(f"{'w':>4s} {'judged correct (mean ± sd, min-max)':>37s} {'log p(x) under label 10 (mean ± sd)':>38s}")
for w in guidance_weights:
    j, lp = torch.tensor(judged_at[w]), torch.tensor(log_p_at[w])
    print(
        f"{w:4} {j.mean():14.0%} ± {j.std():3.0%} ({j.min():.0%}-{j.max():.0%})"
        f" {lp.mean():24.1f} ± {lp.std():4.1f} nats"
    )
print(
    f"for comparison, real test digits: log p(x) = {-unconditional:.1f} nats; the judge on them: {judge_accuracy:.0%}"
)
for w in guidance_weights[1:]:  # the same seeds at w and at 0: one paired comparison per seed
    gains = [a - b for a, b in zip(judged_at[w], judged_at[0])]
    print(f"w = {w}: judged correct minus at w = 0, seed by seed: " + ", ".join(f"{g:+.0%}" for g in gains))

# %%
shown_weights = (0, 1, 3)
fig, axes = plt.subplots(1, len(shown_weights), figsize=(15, 2.9), layout="constrained")
for ax, w in zip(axes, shown_weights):
    show_grid(
        guided[w, 0][:30],
        f"guidance w = {w}",
        nrow=10,
        ax=ax,
        xlabel="class 0 to 9 (left to right)",
        ylabel="sample (seed 100)",
    )
fig.suptitle("Class-conditional samples with classifier-free guidance (this lesson's model, same random numbers)")
plt.show()

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for ax, values, ylabel in (
    (axes[0], judged_at, "judged as the requested class"),
    (axes[1], log_p_at, "mean log p(x) under label 10 (nats)"),
):
    mean = [torch.tensor(values[w]).mean().item() for w in guidance_weights]
    sd = [torch.tensor(values[w]).std().item() for w in guidance_weights]
    for seed in guidance_seeds:
        ax.plot(guidance_weights, [values[w][seed] for w in guidance_weights], ".", color="lightgray")
    ax.errorbar(
        guidance_weights, mean, yerr=sd, fmt="o-", capsize=4, label=f"mean ± sd over {len(guidance_seeds)} seeds"
    )
    ax.set(xlabel="guidance weight w", ylabel=ylabel)
axes[0].axhline(0.1, color="gray", linestyle=":", label="chance")
axes[0].set_title("How often the judge names the requested class")
axes[0].legend()
axes[1].axhline(-unconditional, color="gray", linestyle="--", label="real test digits")
axes[1].set_title("Likelihood of the samples under the unconditional model")
axes[1].legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# Where this comes from: every point is one batch of samples (grey dots: single seeds), judged by the
# nearest-neighbour judge and scored by this lesson's model with label 10.
#
# What holds beyond the spread of the seeds:
#
# - **A little guidance makes the label count.** Without guidance the judge names the requested class in
#   51% of the samples (42% to 60% over the seeds); at $w = 1$ in 63%, and the gain appears in every one
#   of the five seeds (the seed-by-seed lines above).
# - **More guidance does not help the judge further.** At $w = 1$, 2 and 3 the means differ by less than the
#   spread between seeds, so these runs show no gain beyond $w = 1$.
# - **Guidance costs likelihood, at every step of $w$.** Unguided samples score close to real test digits
#   under the unconditional model ($-74.2$ against $-68.8$ nats); every increase of $w$ makes them less
#   likely, by far more than the spread, down to $-150.1$ nats at $w = 3$. Unlike a low temperature, which
#   makes samples *more* likely (section 2), guidance pushes them away from what the model finds typical,
#   towards what makes the class evident.
#
# The grids show what guidance does to a digit (one seed, so read them as examples, not as evidence): at
# $w = 1$ more digits have the strokes that define their class (compare the 4s, 6s and 7s with $w = 0$); at
# $w = 3$ strokes multiply into dashes and doubled lines.
#
# `unconditional=` also takes a separate model of the same images, for a pair of networks trained
# apart: `sample(finished, 10, labels=3, guidance=1, unconditional=pretrained("binary"))` guides the
# pretrained conditional model of section 8 with the pretrained unconditional one.
#
# **Check.** Guidance with $w = 0$ is plain conditional sampling: the same seed gives the same images.

# %%
assert torch.equal(guided[0, 0], sample(model, len(guided_labels), labels=guided_labels, seed=100))

# %% jupyter={"source_hidden": true} tags=["claims"]
from course_lib.config import claims_checked

if claims_checked():  # the prose's claims, on the course's own full-size build
    mean = {w: torch.tensor(v).mean().item() for w, v in judged_at.items()}
    sd = {w: torch.tensor(v).std().item() for w, v in judged_at.items()}
    assert all(a > b for a, b in zip(judged_at[1], judged_at[0])), "w = 1 should beat w = 0 in every seed"
    assert mean[1] - mean[0] > sd[1] + sd[0], "the gain at w = 1 should exceed the spread"
    assert all(abs(mean[w] - mean[1]) < sd[w] + sd[1] for w in (2, 3)), "no gain beyond w = 1 beyond the spread"
    lp_mean = [torch.tensor(log_p_at[w]).mean().item() for w in guidance_weights]
    lp_sd = [torch.tensor(log_p_at[w]).std().item() for w in guidance_weights]
    assert all(lp_mean[k] - lp_mean[k + 1] > lp_sd[k] + lp_sd[k + 1] for k in range(len(lp_mean) - 1)), (
        "log p(x) should fall at every step of w, beyond the spread"
    )
    assert abs(lp_mean[0] + unconditional) < 10, "unguided samples should score near real test digits"

# %% [markdown]
# ## Recap
# - **Ancestral sampling** draws sub-pixels in the masks' raster-then-channel order, each from the model's
#   conditional given everything drawn so far; it gives exact samples of $p(x)$, and the log-probabilities
#   of the draws add up to the sample's log-likelihood. `AncestralStepper` is that loop, opened up.
# - **Temperature** divides the logits; below 1 samples are cleaner, more alike and more likely under the
#   model, above 1 noisier and less likely.
# - **Completion** keeps given sub-pixels and draws the rest; it is exact when the hidden part comes last in
#   raster order (bottom half), but a box is drawn without seeing the given pixels after it.
# - **Class conditioning** is a label input; hiding the label during part of training (an extra "no label"
#   class) gives $p(x \mid y)$ and $p(x)$ in one network. A nearest-neighbour judge recognises the
#   requested class several times more often than chance.
# - **No copying**: no sample is a training digit; samples are at least as far from the training set as
#   real new digits are.
# - **Cost**: naive sampling needs $C \cdot H \cdot W$ full forward passes per image (scoring needs one);
#   batching, skipping known pixels, smaller models and caching make it cheaper.
# - **Caching**: masked activations never change once computed; keeping them and computing one row of the
#   vertical stack per row and one position of each layer per pixel gives the same images, over a hundred
#   times faster at batch 64 on a 2-core CPU. `sample()` does it by default.
# - **Pretrained models**: `pretrained("binary-conditional")` loads a model trained for half an hour in one
#   line; the same judge measures how much cleaner its class-conditional samples are.
# - **Classifier-free guidance** mixes the logits, $(1 + w)\,\ell_c - w\,\ell_u$, of the conditional and the
#   unconditional model (here one network, with label 10 as "no label"); `sample(..., guidance=w,
#   unconditional=...)` does it with the cache. A little guidance ($w = 1$) made the judge name the
#   requested class more often, in every seed; more did not help further, and every increase of $w$ made
#   the samples less likely under the unconditional model.

# %% [markdown]
# ## References
#
# - van den Oord, Kalchbrenner, Kavukcuoglu (2016), *Pixel Recurrent Neural Networks*, ICML, arXiv:1601.06759: PixelRNN and PixelCNN, masks A and B, binarized MNIST results.
# - van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves, Kavukcuoglu (2016), *Conditional Image Generation with PixelCNN Decoders*, NeurIPS, arXiv:1606.05328: the Gated PixelCNN, its vertical and horizontal stacks, and class conditioning.
# - Ramachandran, Le Paine, Khorrami, Babaeizadeh, Chang, Zhang, Hasegawa-Johnson, Campbell, Huang (2017), *Fast Generation for Convolutional Autoregressive Models*, ICLR workshop, arXiv:1704.06001: caching for sampling.
# - Salimans, Karpathy, Chen, Kingma (2017), *PixelCNN++: Improving the PixelCNN with Discretized Logistic Mixture Likelihood and Other Modifications*, ICLR, arXiv:1701.05517.
# - Ho, Salimans (2022), *Classifier-Free Diffusion Guidance*, arXiv:2207.12598 (NeurIPS 2021 workshop on deep generative models): training with the label dropped to a null class, and mixing conditional and unconditional predictions with a guidance weight.

# %% [markdown]
# ## Exercises
# The graded notebook `exercises/04_sampling.ipynb` (its solved twin is in `solutions/`) has 3 tasks worth 8
# points; the check cell under each task tells you as you go whether your code is right, and
# `pixelcnn-grade` grades the whole notebook.
# - **Task 1 · Temperature** (2 points). Write `temperature_probs(logits, temperature) -> probabilities`.
# - **Task 2 · The ancestral sampling loop** (3 points). Write
#   `ancestral_sample(model, n, *, temperature=1.0, labels=None, generator=None)` returning `n` images of
#   integer levels, shape `(n, C, H, W)` with `C, H, W = model.image_shape`.
# - **Task 3 · Completion: keep what is given** (3 points). Write
#   `complete(model, images, known, *, temperature=1.0, labels=None, generator=None)` returning the
#   completed images, shape `(n, C, H, W)`.
