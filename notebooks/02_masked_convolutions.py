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
# # 02 · Masked convolutions
#
# Lesson 01 wrote the probability of an image as a product of one-pixel conditionals in *raster order*
# (row by row, left to right):
#
# $$p(\mathbf x) = \prod_{k=1}^{D} p(x_k \mid x_1, \dots, x_{k-1}).$$
#
# A PixelCNN computes all $D$ conditionals with **one** forward pass of a convolutional network: the
# output at pixel $k$ is the distribution of $x_k$. That only works if the output at pixel $k$ cannot
# see $x_k, x_{k+1}, \dots$. This lesson is about the masks that guarantee it, why they do, how to *test*
# that the code really does it, and what goes wrong when it doesn't.
#
# ## What you will learn
# - why a plain convolution cheats, and how to see it both in the loss and in the gradients;
# - raster order, masks **A** and **B**, and the R → G → B channel order of colour images;
# - why masks make a network causal, how to test it with the Jacobian, and how a receptive field grows
#   layer by layer;
# - the **blind spot** of stacked masked convolutions, and how the Gated PixelCNN's vertical and
#   horizontal stacks remove it;
# - the classic bug (mask B on the first layer) live: a superb loss, useless samples; and why
#   BatchNorm leaks;
# - gated activations and class conditioning, with parameter counts, and how many parameters the masks
#   zero;
# - one gated layer of the course's main model, as a diagram and as the library's own code.

# %%
import inspect

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn

from course_lib import (
    GatedPixelCNN,
    IndependentPixelModel,
    MaskedConv2d,
    PixelCNN,
    count_parameters,
    evaluate,
    fit,
    load_dataset,
    pick,
    raster_mask,
    sample,
    vertical_mask,
)
from course_lib.causality import causality_violations, dependency_matrix, receptive_field
from course_lib.masks import masked_parameter_count
from course_lib.models import AutoregressiveImageModel, GatedBlock
from course_lib.plotting import show_grid

torch.manual_seed(0)
train = load_dataset("mnist-subset", "train")  # binarized at 0.5: pixels are 0 or 1
test = load_dataset("mnist-subset", "test")
print(train)
print(test)

# %% [markdown]
# ## 1. Why does a plain convolution cheat?
#
# **Question.** Train an ordinary CNN to output, at every pixel $(i, j)$, the logit of
# $p(x_{ij} = 1)$, with the image itself as the target. What stops it from getting everything right?
#
# Nothing. The target $x_{ij}$ is also an *input*: a 3×3 convolution centred on $(i, j)$ reads
# $x_{ij}$ and can simply copy it. The loss goes to zero and the model has learnt nothing about digits.
# Here is that "model": one plain 3×3 convolution (10 parameters), trained with the course's `fit`.
#
# Every model in this lesson is tiny and is taken apart on the CPU afterwards (gradients, Jacobians, exact
# sums over all images), so all of them train there too (`device="cpu"`): each trains in seconds, and
# its weights stay where the analysis needs them.


# %%
class PlainConvModel(AutoregressiveImageModel):
    """A 'model' whose unmasked 3x3 convolution sees the very pixel it predicts."""

    def __init__(self, image_shape=(1, 28, 28)):
        super().__init__(image_shape, levels=2, num_classes=None)
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x, labels=None):
        return self.conv(self.scale(x))  # Bernoulli logits (B, 1, H, W)


torch.manual_seed(0)
plain = PlainConvModel()
plain_history = fit(plain, train, test, epochs=1, batch_size=32, lr=0.3, device="cpu", progress=False)
plain_nats = plain_history["test_nats"][-1]
baseline = evaluate(IndependentPixelModel.fit(train), test)
print(f"independent pixels : {baseline['nats']:7.2f} nats per test image")
print(f"plain 3x3 conv     : {plain_nats:7.2f} nats per test image   <- 'better' than any published model")
print("its kernel (the centre weight dominates: it copies the pixel it should predict):")
print(plain.conv.weight.detach()[0, 0].numpy().round(2))

# %% [markdown]
# The published PixelCNN scores about 81 nats on binarized MNIST (a harder binarization than our
# threshold, but the point stands): a 10-parameter convolution "beats" it by a mile because it reads the
# answer. Check:

# %%
w = plain.conv.weight.detach()[0, 0].abs()
assert plain_nats < 5, "copying the pixel should give a near-zero loss"
assert w[1, 1] == w.max(), "the centre weight, the pixel itself, should be the largest"

# %% [markdown]
# ## 2. Raster order and masks A and B
#
# **Question.** Which inputs may the output at pixel $(i, j)$ use?
#
# Exactly the pixels before it in raster order: every pixel of the rows above, and the pixels to its
# left in its own row. The figure numbers the pixels of a 5×5 image in that order.

# %%
H = W = 5
order = np.arange(H * W).reshape(H, W) + 1
ci, cj = 2, 2
past = order < order[ci, cj]
fig, ax = plt.subplots(figsize=(4.2, 4.2))
kind = np.where(order == order[ci, cj], 2, np.where(past, 1, 0))  # 0 future, 1 past, 2 current
colours = matplotlib.colors.ListedColormap(["white", "#9ecae1", "#fd8d3c"])
ax.imshow(kind, cmap=colours, vmin=0, vmax=2)
for (r, c), k in np.ndenumerate(order):
    ax.text(c, r, str(k), ha="center", va="center", fontsize=11)
ax.legend(
    handles=[matplotlib.patches.Patch(color=colours(v), label=t) for v, t in ((1, "past"), (2, "current"))],
    loc="upper left",
    bbox_to_anchor=(1.02, 1),
)
ax.set_title(f"Raster order: pixel {order[ci, cj]} may see pixels 1-{order[ci, cj] - 1}")
ax.set_xlabel("column j")
ax.set_ylabel("row i")
plt.show()

# %% [markdown]
# A **masked convolution** multiplies its kernel by a fixed 0/1 mask that zeroes every weight looking at
# the present or the future. For a $k \times k$ kernel centred on $(i, j)$: all rows above the centre are
# allowed, and in the centre row only the weights left of the centre. The two masks differ only at
# the centre weight itself:
#
# - **mask A** (first layer) excludes the centre: the output at $(i, j)$ must not see $x_{ij}$;
# - **mask B** (every later layer) includes it.

# %% tags=["nbval-check-output"]
mask_a = raster_mask(5, "A", in_channels=1, out_channels=1)[0, 0].int()
mask_b = raster_mask(5, "B", in_channels=1, out_channels=1)[0, 0].int()
print("mask A (5x5):\n", mask_a.numpy())
print("mask B (5x5):\n", mask_b.numpy())
print("they differ only at the centre:", (mask_b - mask_a).nonzero().tolist())

# %% [markdown]
# **Why is mask B allowed after the first layer?** Write $h^{\ell}_{ij}$ for the features of layer
# $\ell$ at $(i, j)$ and $x_{<ij}$ for the pixels before $(i, j)$. Mask A makes
# $h^{1}_{ij} = f(x_{<ij})$. If $h^{\ell-1}_{kl}$ depends only on $x_{<kl}$, a mask-B layer combines
# $h^{\ell-1}$ at $(i, j)$ and at positions before it, all of which know only pixels before $(i, j)$; so
# $h^{\ell}_{ij}$ depends only on $x_{<ij}$ too. By induction the whole stack is causal. The centre weight
# of a later layer is not a leak: it carries what the network *already knows* about the past of $(i, j)$,
# and without it that knowledge would be thrown away at every layer.
#
# The PixelCNN's first layer is 7×7 with mask A; its later layers use 3×3 (and 1×1) mask-B kernels.


# %%
def draw_mask(ax, mask, title, xlabel="kernel column", ylabel="kernel row"):
    """Draw a 2-D 0/1 mask on `ax`: white = weight kept, black = weight zeroed."""
    mask = np.asarray(mask, dtype=float)
    ax.imshow(mask, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks(range(mask.shape[1]))
    ax.set_yticks(range(mask.shape[0]))
    ax.set_xticks(np.arange(-0.5, mask.shape[1]), minor=True)
    ax.set_yticks(np.arange(-0.5, mask.shape[0]), minor=True)
    ax.grid(which="minor", color="0.5", linewidth=0.8)
    ax.tick_params(which="minor", length=0)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def mark_centre(ax, r, c, color="red"):
    """Outline the cell (r, c) of an image drawn on `ax`."""
    ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor=color, linewidth=2.5))


def mask_key(fig, centre=True):
    """The key of a mask figure, below its panels (the figure needs layout="constrained")."""
    handles = [
        matplotlib.patches.Patch(facecolor="white", edgecolor="0.5", label="1: weight kept"),
        matplotlib.patches.Patch(facecolor="black", edgecolor="0.5", label="0: weight zeroed"),
    ]
    if centre:
        handles.append(
            matplotlib.patches.Patch(
                facecolor="none", edgecolor="red", linewidth=2.5, label="centre: the output's position"
            )
        )
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)


fig, axes = plt.subplots(1, 3, figsize=(11, 4.3), layout="constrained")
draw_mask(axes[0], raster_mask(7, "A", 1, 1)[0, 0], "7×7 mask A (first layer)")
draw_mask(axes[1], raster_mask(7, "B", 1, 1)[0, 0], "7×7 mask B")
draw_mask(axes[2], raster_mask(3, "B", 1, 1)[0, 0], "3×3 mask B (later layers)")
for ax, k in zip(axes, (7, 7, 3)):
    mark_centre(ax, k // 2, k // 2)
mask_key(fig)
plt.show()

# %%
for k in (3, 5, 7):
    a, b = raster_mask(k, "A", 1, 1)[0, 0], raster_mask(k, "B", 1, 1)[0, 0]
    assert a.sum() == (k * k - 1) // 2 and b.sum() == a.sum() + 1  # exactly the past half (+ centre)
    assert a[k // 2 :, :].flatten()[k // 2 :].sum() == 0  # nothing from the centre onwards in raster order
    # a masked convolution is causal: changing a future pixel never changes the output at the centre
    conv = MaskedConv2d(1, 4, k, "A")
    x = torch.randn(1, 1, k, k)
    y = x.clone()
    y[0, 0, k // 2, k // 2 :] += 1
    y[0, 0, k // 2 + 1 :] += 1
    assert torch.equal(conv(x)[..., k // 2, k // 2], conv(y)[..., k // 2, k // 2])
print("masks A and B keep exactly the past (and, for B, the centre)")

# %% [markdown]
# ## 3. Colour: R → G → B inside a pixel
#
# **Question.** A colour pixel has three sub-pixels. In which order are they generated, and what does
# the mask do about it?
#
# PixelCNN orders them red, then green, then blue:
# $p(x_{ij}) = p(R_{ij} \mid x_{<ij})\, p(G_{ij} \mid R_{ij}, x_{<ij})\, p(B_{ij} \mid R_{ij}, G_{ij}, x_{<ij})$.
# Every hidden layer splits its channels into three contiguous **groups**; group $g$ carries what is known
# about colour $g$. Off-centre weights are unchanged. At the *centre* weight, an output of group $g$ may
# read input group $g'$ when $g' < g$ (mask A) or $g' \le g$ (mask B). Printed below: the centre weight
# of a 3-in, 3-out layer, with rows = output group and columns = input group.

# %% tags=["nbval-check-output"]
centre_a = raster_mask(7, "A", 3, 3, data_channels=3)[:, :, 3, 3].int()
centre_b = raster_mask(7, "B", 3, 3, data_channels=3)[:, :, 3, 3].int()
centre_hidden = raster_mask(3, "B", 6, 6, data_channels=3)[:, :, 1, 1].int()
print("centre of mask A (out R,G,B x in R,G,B):\n", centre_a.numpy())
print("centre of mask B:\n", centre_b.numpy())
print("centre of mask B between two hidden layers of 6 channels (2 per colour group):\n", centre_hidden.numpy())

# %%
fig, axes = plt.subplots(1, 3, figsize=(11, 4.3), layout="constrained")
rgb = ["R", "G", "B"]
for ax, m, title in ((axes[0], centre_a, "centre weight, mask A"), (axes[1], centre_b, "centre weight, mask B")):
    draw_mask(ax, m, title, xlabel="input colour group", ylabel="output colour group")
    ax.set_xticks(range(3), rgb)
    ax.set_yticks(range(3), rgb)
draw_mask(
    axes[2], centre_hidden, "mask B, 6 hidden channels", xlabel="input channel (group)", ylabel="output channel (group)"
)
axes[2].set_xticks(range(6), [f"{k}({rgb[k // 2]})" for k in range(6)])
axes[2].set_yticks(range(6), [f"{k}({rgb[k // 2]})" for k in range(6)])
mask_key(fig, centre=False)
plt.show()

# %% [markdown]
# The check uses the Jacobian test of section 4 (next): a small colour PixelCNN with 4 intensity levels
# passes it; the same network with a first-layer mask that ignores the colour groups (one group for all
# three channels) lets every colour see all three colours of its own pixel, its own included.

# %%
torch.manual_seed(0)
colour = PixelCNN((3, 5, 5), levels=4, channels=12, n_blocks=1)
broken = PixelCNN((3, 5, 5), levels=4, channels=12, n_blocks=1)
broken.input_conv.mask.copy_(raster_mask(7, "B", 3, 12, data_channels=1))  # channel order ignored
colour_leaks, leaks = causality_violations(colour), causality_violations(broken)
print(f"colour PixelCNN: {len(colour_leaks)} violations; with the colour order ignored: {len(leaks)}")
print("a few of them, as (output channel, i, j) <- (input channel, i, j):", leaks[:4])
assert colour_leaks == []
assert leaks and all(o[1:] == k[1:] and k[0] >= o[0] for o, k in leaks)  # same pixel, same or later colour

# %% [markdown]
# ## 4. Testing causality with gradients
#
# **Question.** How can we check that a network is causal, whatever its layers, residuals and paddings?
#
# Two different things answer it. The *argument* is the induction of section 2: if every layer's output
# at a position depends only on features of the past (mask A first, mask B after it), so does the next
# layer's. It holds for any input and any weights, but only for the network we *think* the code builds.
# The *test* looks at the Jacobian of the network the code *does* build. With the sub-pixels numbered in
# raster-then-channel order, the model is causal exactly when
#
# $$\frac{\partial\, \mathrm{logit}_o}{\partial x_k} = 0 \quad \text{for every input } k \ge o.$$
#
# `course_lib.causality` computes this Jacobian in float64, on a copy of the model at one random input
# (the models accept float inputs for this purpose). The masks' structure makes the allowed zeros
# *exact*: a masked weight is multiplied by 0, so a path through it contributes exactly $0.0$, not a small
# number. A single non-zero entry on or above the diagonal therefore proves a leak. The converse does not
# hold: a real path can carry zero gradient at one input and not at another (a ReLU that happens to be
# off, a gate that is shut), so all zeros at one input is evidence, not a proof. We run the test at
# several random inputs (`seed=`): each seed is another chance to catch a leak, and all zeros at every
# one of them, together with the argument from the masks, is strong evidence that the model is causal.
# (Perturbing an input and comparing outputs is weaker: small effects round away, and a single
# perturbation can miss a path.) `dependency_matrix(model)` is the whole Jacobian as a True/False matrix;
# `causality_violations(model)` lists the forbidden entries.
#
# Below: the dependency matrix of the trained plain convolution (its weights in an 8×8 copy) and of a
# PixelCNN, both on 8×8 images (64 pixels). Causal means *strictly lower triangular*: nothing on or
# above the diagonal.

# %%
plain8 = PlainConvModel((1, 8, 8))
plain8.load_state_dict(plain.state_dict())  # convolution weights do not depend on the image size
torch.manual_seed(0)
pixelcnn8 = PixelCNN((1, 8, 8), channels=16, n_blocks=2)
fig, axes = plt.subplots(1, 2, figsize=(10, 4.8))
for ax, model, name in ((axes[0], plain8, "plain 3×3 conv"), (axes[1], pixelcnn8, "PixelCNN")):
    dep = dependency_matrix(model).numpy()
    ax.imshow(dep, cmap="Greys", interpolation="nearest")
    ax.plot([-0.5, 63.5], [-0.5, 63.5], color="red", linewidth=0.8)
    ax.set_title(f"{name}: {int(np.triu(dep).sum())} entries on/above the diagonal")
    ax.set_xlabel("input pixel k (raster order)")
    ax.set_ylabel("output pixel o (raster order)")
plt.tight_layout()
plt.show()

# %%
plain_leaks = causality_violations(plain8)
assert all(causality_violations(pixelcnn8, seed=s) == [] for s in range(5)), "no violation at five random inputs"
assert ((0, 3, 3), (0, 3, 3)) in plain_leaks  # the plain conv's output at (3, 3) sees its own pixel
print(f"plain conv: {len(plain_leaks)} violations; PixelCNN: none, at each of 5 random inputs")

# %% [markdown]
# ### The receptive field, layer by layer
#
# One row of the Jacobian, reshaped to an image, is the **receptive field** of one output pixel:
# `receptive_field(model, i, j)` returns $|\partial\,\mathrm{logit}_{ij} / \partial x|$. Below, the centre
# pixel of a 28×28 image, for PixelCNNs with 0, 1, 2, 3 and 6 residual blocks after the 7×7 mask-A layer
# (each block holds one 3×3 mask-B convolution). Colour: $\log_{10}$ of the gradient's size; white:
# exactly zero; red box: the output pixel.


# %%
def log_range(fields):
    """(vmin, vmax) of log10 |gradient| over the non-zero entries of all `fields`: one scale for all panels."""
    values = np.concatenate([np.asarray(f)[np.asarray(f) > 0] for f in fields])
    return float(np.log10(values.min())), float(np.log10(values.max()))


def draw_field(ax, field, i, j, title, holes=None, limits=None):
    """Heat map of log10 |gradient| (white where exactly zero) on the colour scale `limits` (vmin, vmax);
    red box = output pixel; x = blind spot."""
    field = np.asarray(field)
    shown = np.ma.masked_where(field == 0, np.log10(np.where(field > 0, field, 1.0)))
    vmin, vmax = limits if limits is not None else (None, None)
    image = ax.imshow(shown, cmap="viridis", vmin=vmin, vmax=vmax)
    mark_centre(ax, i, j)
    if holes is not None and holes.any():
        r, c = np.nonzero(np.asarray(holes))
        ax.scatter(c, r, marker="x", color="red", s=14, linewidths=1.0, label="blind spot")
        ax.legend(loc="lower right", fontsize=7)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("column j")
    ax.set_ylabel("row i")
    return image


i, j = 14, 14
depths = (0, 1, 2, 3, 6)
pixelcnn_fields = {}
for n in depths:
    torch.manual_seed(0)
    pixelcnn_fields[n] = receptive_field(PixelCNN(channels=16, n_blocks=n), i, j)[0]

top = slice(0, 18)  # the fields lie in rows 0-14: show the top 18 rows of the 28
fig, axes = plt.subplots(1, len(depths), figsize=(16, 2.9), layout="constrained")
limits = log_range(pixelcnn_fields.values())
for ax, n in zip(axes, depths):
    title = f"PixelCNN, {n} residual block{'s' * (n != 1)}"
    image = draw_field(ax, pixelcnn_fields[n][top], i, j, title, limits=limits)
fig.colorbar(image, ax=axes, shrink=0.8, label="log10 |d logit / d x|")
plt.show()

# %% [markdown]
# Every field sits in the past (above, or left in the same row), as the masks promise. Each block adds
# one row on top and one column on each side. But look at the right side: the field grows to the right
# by only one column per row *up*. A wedge of pixels above and to the right of the output stays white
# however deep the network: pixels that are in the past, that the model is allowed to use, and never
# sees.

# %%
for field in pixelcnn_fields.values():
    future = field.flatten()[i * 28 + j :]
    assert (future == 0).all(), "the output may not see its own pixel or any later one"
    assert field[i, j - 1] > 0 and field[i - 1, j] > 0, "the nearest past pixels must be seen"
assert pixelcnn_fields[6][i - 1, j + 3] > 0 and pixelcnn_fields[6][i - 1, j + 4] == 0
print("no field reaches its own pixel or a later one; with 6 blocks the row above is seen only up to 3 columns right")

# %% [markdown]
# ## 5. The blind spot, and how the Gated PixelCNN removes it
#
# **Question.** Why can't depth fill the wedge?
#
# The rightmost position a 3×3 mask-B kernel at $(i, j)$ reads in the row above is $(i-1, j+1)$. The
# features there are causal *for pixel $(i-1, j+1)$*: in row $i-1$ they know only the pixels left of
# column $j+1$, and in the rows above they reach only as far right as a field one layer shallower reaches
# from $(i-1, j+1)$. So every step up one row buys at most one column to the right, and a new layer adds
# a row on top of the field without widening the rows it already covers: row $i-1$ is seen up to column
# $j+3$ (where the 7×7 first layer put it) however deep the network, row $i-2$ up to $j+4$, row $i-3$ up
# to $j+5$, and so on. Everything right of that diagonal edge stays unseen: a wedge. For a digit, it means a stroke
# coming down from the upper right is invisible until it is almost directly above the pixel being drawn.
#
# We can count the blind spot. Call a past pixel a **hole** when the output ignores it although it sees
# a pixel *further up in the same column*: a gap inside the receptive field, not its natural edge.


# %%
def blind_spot(seen, i):
    """Holes of a receptive field `seen` (H, W bool) of output row i: past pixels (rows above i) that
    are not seen although a pixel higher up in the same column is."""
    seen_higher = torch.cummax(seen.int(), dim=0).values.bool()  # seen at this row or above
    seen_higher = torch.cat([torch.zeros_like(seen[:1]), seen_higher[:-1]])  # strictly above
    holes = seen_higher & ~seen
    holes[i:] = False
    return holes


pixelcnn_holes = {n: blind_spot(f > 0, i) for n, f in pixelcnn_fields.items()}
print("PixelCNN holes, by number of residual blocks:", {n: int(h.sum()) for n, h in pixelcnn_holes.items()})

# %% [markdown]
# The **Gated PixelCNN** (van den Oord et al., 2016, "Conditional Image Generation with PixelCNN
# Decoders") splits every layer in two stacks:
#
# - the **vertical stack** sees whole rows *above* the output, as wide to the right as to the left. Its
#   first 7×7 kernel covers only the rows strictly above the centre (mask "V0"); later 3×3 kernels also
#   take the centre row of the vertical features (mask "V"), which is safe because those features only
#   know rows above. This is what "the *shifted* vertical stack" means: its features at row $i$ describe
#   rows $i-1$ and above, one row behind the output. A common implementation convolves over the centre row
#   too and then shifts the result down by one row; here the mask V0 does the shift by zeroing the centre
#   row (and everything below it) of the first kernel.
# - the **horizontal stack** sees the output's own row, to the left: a 1×7 mask-A kernel, then 1×3
#   mask-B kernels.
#
# At every layer the vertical features feed the horizontal stack through a 1×1 convolution, *never* the
# other way round. (A vertical "V" kernel reads the centre row including the right neighbour; if it
# carried horizontal features, which know row $i$ up to column $j'-1$ at position $j'$, the output at
# $(i, j)$ would learn $x_{ij}$ from the features at $(i, j+1)$.)

# %%
fig, axes = plt.subplots(1, 4, figsize=(14, 4.1), gridspec_kw={"width_ratios": [7, 3, 7, 3]}, layout="constrained")
draw_mask(axes[0], vertical_mask(7, 1, 1, include_centre_row=False)[0, 0], "vertical, first layer\n7×7 mask V0")
draw_mask(axes[1], vertical_mask(3, 1, 1, include_centre_row=True)[0, 0], "vertical, later\n3×3 mask V")
draw_mask(axes[2], raster_mask((1, 7), "A", 1, 1)[0, 0], "horizontal, first\n1×7 mask A")
draw_mask(axes[3], raster_mask((1, 3), "B", 1, 1)[0, 0], "horizontal, later\n1×3 mask B")
for ax, (r, c) in zip(axes, ((3, 3), (1, 1), (0, 3), (0, 1))):
    mark_centre(ax, r, c)
mask_key(fig)
plt.show()

# %% [markdown]
# Now the same experiment for Gated PixelCNNs with 0 to 5 gated layers; the last one is the course's
# default model (dilations 1-2-1-4-1: a layer of dilation $d$ reaches $d$ pixels further, so the field
# grows fast at no extra cost). Red crosses mark holes; top row: the PixelCNNs again.

# %%
dilation_sets = ((), (1,), (1, 2), (1, 2, 1), (1, 2, 1, 4, 1))
gated_fields = {}
for d in dilation_sets:
    torch.manual_seed(0)
    gated_fields[d] = receptive_field(GatedPixelCNN(channels=16, dilations=d), i, j)[0]
gated_holes = {d: blind_spot(f > 0, i) for d, f in gated_fields.items()}

fig, axes = plt.subplots(2, 5, figsize=(16, 5.0), layout="constrained")
limits = log_range([*pixelcnn_fields.values(), *(f for f in gated_fields.values() if (f > 0).any())])
for ax, n in zip(axes[0], depths):
    holes = int(pixelcnn_holes[n].sum())
    draw_field(
        ax,
        pixelcnn_fields[n][top],
        i,
        j,
        f"PixelCNN, {n} block{'s' * (n != 1)}\n{holes} hole{'s' * (holes != 1)}",
        pixelcnn_holes[n][top],
        limits=limits,
    )
for ax, d in zip(axes[1], dilation_sets):
    name = "-".join(map(str, d)) or "none"
    image = draw_field(
        ax,
        gated_fields[d][top],
        i,
        j,
        f"Gated, dilations {name}\n{int(gated_holes[d].sum())} holes",
        gated_holes[d][top],
        limits=limits,
    )
fig.colorbar(image, ax=axes, shrink=0.6, label="log10 |d logit / d x|")
plt.show()

# %% tags=["nbval-check-output"]
print(f"{'model':28s} {'pixels seen':>11s} {'holes':>6s}")
for n in depths:
    print(f"{f'PixelCNN, {n} blocks':28s} {int((pixelcnn_fields[n] > 0).sum()):11d} {int(pixelcnn_holes[n].sum()):6d}")
for d in dilation_sets:
    name = f"Gated, dilations {'-'.join(map(str, d)) or 'none'}"
    print(f"{name:28s} {int((gated_fields[d] > 0).sum()):11d} {int(gated_holes[d].sum()):6d}")

# %% [markdown]
# With no gated layer the output sees only the three pixels to its left: the vertical stack reaches the
# output only through the 1×1 links inside the gated layers. From one layer on, the field is a solid
# block of rows above plus the row to the left, and it grows at the rate of the dilations. The default
# Gated PixelCNN sees more pixels than a 6-block PixelCNN, with no hole at all.

# %%
assert pixelcnn_holes[6].sum() > 0 and all(pixelcnn_holes[n].sum() > 0 for n in depths[1:])
assert all(h.sum() == 0 for h in gated_holes.values()), "the Gated PixelCNN has no blind spot"
for d, field in gated_fields.items():
    assert (field.flatten()[i * 28 + j :] == 0).all(), f"gated model with dilations {d} sees the future"
assert (gated_fields[(1, 2, 1, 4, 1)] > 0).sum() > (pixelcnn_fields[6] > 0).sum()

# %% [markdown]
# ## 6. The classic bug, live: mask B on the first layer
#
# **Question.** What happens if the first layer gets mask B instead of mask A?
#
# Then $h^1_{ij}$ sees $x_{ij}$, every later layer passes it on, and the output at $(i, j)$ can copy its
# own pixel, exactly like the plain convolution of section 1. Let us make the mistake on purpose: two
# identical PixelCNNs, one with the mask-A buffer of its first layer overwritten by mask B, trained
# the same way.

# %%
channels, n_blocks = pick(fast=16, full=32), pick(fast=2, full=6)
bug_train = load_dataset("mnist-subset", "train", limit=pick(fast=1000, full=4000))
bug_epochs = pick(fast=2, full=3)


def build(first_mask, image_shape=(1, 28, 28)):
    """A PixelCNN whose first layer has mask `first_mask` ("A" is correct, "B" is the bug)."""
    model = PixelCNN(image_shape, channels=channels, n_blocks=n_blocks)
    model.input_conv.mask.copy_(raster_mask(7, first_mask, 1, channels, 1))
    return model


torch.manual_seed(0)
correct = build("A")
torch.manual_seed(0)
leaky = build("B")  # same initial weights, only the centre of the first mask differs

results = {}
for name, model in (("correct (mask A first)", correct), ("leaky (mask B first)", leaky)):
    fit(model, bug_train, None, epochs=bug_epochs, batch_size=32, lr=1e-2, device="cpu", progress=False)
    results[name] = {"train": evaluate(model, bug_train)["nats"], "test": evaluate(model, test)["nats"]}
print(f"{count_parameters(correct):,} parameters each, {bug_epochs} epochs on {len(bug_train)} digits\n")
print(f"{'model':26s} {'train nats':>10s} {'test nats':>10s}")
print(f"{'independent pixels':26s} {'':>10s} {baseline['nats']:10.2f}")
for name, r in results.items():
    print(f"{name:26s} {r['train']:10.3f} {r['test']:10.3f}")

# %% [markdown]
# The leaky model's loss is far lower on the training *and* the test images: it is not overfitting, it
# is reading the answer on any image. Now sample from both. Sampling generates pixel by pixel: when the
# model predicts pixel $(i, j)$, that pixel does not exist yet (it is still the placeholder 0).

# %%
samples_correct = sample(correct, 8, seed=0)
samples_leaky = sample(leaky, 8, seed=0)
fig, axes = plt.subplots(2, 1, figsize=(9, 3.4))
show_grid(samples_correct, "correct PixelCNN: samples", ax=axes[0], xlabel="8 samples, seed 0", ylabel="")
show_grid(samples_leaky, "leaky PixelCNN: samples", ax=axes[1], xlabel="8 samples, seed 0", ylabel="")
plt.tight_layout()
plt.show()
ink = {
    "data": train.images.float().mean().item(),
    "correct": samples_correct.float().mean().item(),
    "leaky": samples_leaky.float().mean().item(),
}
print("fraction of pixels on:", {k: round(v, 3) for k, v in ink.items()})

# %% [markdown]
# The leaky model learnt "output whatever the input pixel is". At sampling time the input pixel is the
# placeholder 0, so it confidently predicts 0, everywhere: blank images. The correct model never saw its
# own pixel and had to learn how strokes continue; its samples are strokes of ink, a few of them passable
# digits. (A small model trained for a minute or two on a CPU draws digit-like strokes, not yet clean
# digits; lesson 04 samples from a better model.)
#
# **How the Jacobian test catches it.** On the trained models, one output pixel is enough to see the
# leak: the leaky model's receptive field contains the output pixel itself (its red box is filled in,
# and marked with a star).

# %%
field_ok, field_bad = receptive_field(correct, i, j)[0], receptive_field(leaky, i, j)[0]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
limits = log_range([field_ok, field_bad])
draw_field(axes[0], field_ok[top], i, j, "trained correct model: output (14, 14)", limits=limits)
image = draw_field(axes[1], field_bad[top], i, j, "trained leaky model: output (14, 14)", limits=limits)
axes[1].scatter([j], [i], marker="*", s=160, color="red", edgecolor="white", label="sees its own pixel")
axes[1].legend(loc="lower right", fontsize=8)
fig.colorbar(image, ax=axes, shrink=0.8, label="log10 |d logit / d x|")
plt.show()
print(f"|d logit(14,14) / d x(14,14)|: correct {field_ok[i, j]:.3g}, leaky {field_bad[i, j]:.3g}")

# %% [markdown]
# You do not need to train, or even to use full-size images, to find the bug: the masks are the same for
# any image size and any weights. This is how a unit test does it: build the architecture on small 8×8
# images and run the full Jacobian test. Every one of the leaky model's 64 outputs depends on its own
# pixel, and on nothing later.

# %%
torch.manual_seed(0)
violations_ok, violations_bad = causality_violations(build("A", (1, 8, 8))), causality_violations(build("B", (1, 8, 8)))
print(f"correct: {len(violations_ok)} violations; leaky: {len(violations_bad)}, e.g. {violations_bad[:2]}")

# %%
assert field_ok[i, j] == 0 and field_bad[i, j] > 0, "the trained leaky model sees its own pixel"
assert violations_ok == []
assert len(violations_bad) == 8 * 8 and all(o == k for o, k in violations_bad)  # each pixel sees itself, no more
r_ok, r_bad = results["correct (mask A first)"], results["leaky (mask B first)"]
assert r_bad["train"] < r_ok["train"] - 40 and r_bad["test"] < r_ok["test"] - 40, "the leak makes the loss look better"
assert r_ok["test"] < baseline["nats"] - 50, "the correct model beats independent pixels"
assert ink["leaky"] < 0.02 < ink["correct"], "the leaky model draws (nearly) blank images"

# %% jupyter={"source_hidden": true} tags=["claims"]
from course_lib.config import claims_checked

if claims_checked():  # the prose's claims, on the course's own full-size build
    assert r_bad["train"] < 5 and r_bad["test"] < 5, "the leaky model copies its input: (near) zero loss"

# %% [markdown]
# ### Why the leaky "likelihood" is meaningless
#
# A causal model's conditionals multiply to a probability distribution over images: summed over
# every possible image, $p(\mathbf x)$ gives exactly 1. A leaky model's numbers do not, so a "likelihood"
# near 1 for every image is no achievement. We can check this by brute force on 3×3 binary images
# (only $2^9 = 512$ of them): train both kinds of model on the 3×3 centre patches of the digits, then sum
# $p(\mathbf x)$ over all 512 images.

# %%
from course_lib import ImageDataset

patches = ImageDataset("centre 3x3 patches", train.intensities[:, :, 13:16, 13:16], train.labels)
every_image = ((torch.arange(512)[:, None] >> torch.arange(9)) & 1).view(512, 1, 3, 3)
totals = {}
for name, first_mask in (("correct", "A"), ("leaky", "B")):
    torch.manual_seed(0)
    small = PixelCNN((1, 3, 3), channels=8, n_blocks=1)
    small.input_conv.mask.copy_(raster_mask(7, first_mask, 1, 8, 1))
    fit(small, patches, None, epochs=2, batch_size=256, lr=3e-2, device="cpu", progress=False)
    with torch.no_grad():
        totals[name] = small.double().log_prob(every_image).exp().sum().item()
    print(
        f"{name:8s} sum of p(x) over all 512 images = {totals[name]:8.3f}   "
        f"({evaluate(small.float(), patches)['nats']:.3f} nats per training patch)"
    )
assert abs(totals["correct"] - 1) < 1e-3, "a causal model defines a distribution"
assert totals["leaky"] > 10, "a leaky model's 'probabilities' sum to far more than 1"

# %% [markdown]
# ## 7. Why BatchNorm leaks
#
# **Question.** Our models have no BatchNorm. Why not?
#
# In training mode, BatchNorm normalises each channel with the mean and variance of the *current batch*,
# taken over all images and all positions:
# $\hat h_{b,c,i,j} = (h_{b,c,i,j} - \mu_c)/\sigma_c$ with $\mu_c = \frac{1}{BHW}\sum_{b,i,j} h_{b,c,i,j}$.
# So every output depends a little on every pixel of every image in the batch, future pixels included.
# The effect per pixel is small, but it is a path from the future to the present, and a network trained
# by gradient descent can learn to use it (most easily with small batches). In eval mode the
# statistics are fixed numbers and the leak is gone, but then the model behaves differently from how it
# was trained.
#
# Test: a mask-A layer followed by BatchNorm, on a batch of 4 random 8×8 images. The output at the
# *first* pixel, $(0, 0)$ of image 0, has no past at all: it may depend on nothing.

# %%
torch.manual_seed(0)
conv = MaskedConv2d(1, 8, 7, "A").double()
norm = nn.BatchNorm2d(8).double()
x = torch.rand(4, 1, 8, 8, dtype=torch.float64, requires_grad=True)
grads = {}
for mode in ("train", "eval"):
    norm.train(mode == "train")
    out = norm(conv(x))[0, :, 0, 0].sum()  # first pixel of image 0, all channels
    grads[mode] = torch.autograd.grad(out, x)[0][:, 0].abs()  # (4 images, 8, 8)

fig, axes = plt.subplots(1, 3, figsize=(11, 3.6), layout="constrained")
panels = (
    (grads["train"][0], "train mode: image 0"),
    (grads["train"][1], "train mode: image 1"),
    (grads["eval"][0], "eval mode: image 0 (all zero)"),
)
images = [draw_field(ax, g.numpy(), 0, 0, title) for ax, (g, title) in zip(axes, panels)]
fig.colorbar(images[0], ax=axes, shrink=0.8, label="log10 |d output(0,0) / d x|")
plt.show()
print({mode: f"{int((g > 0).sum())} of {g.numel()} input pixels reach the first output" for mode, g in grads.items()})

# %%
# every input pixel reaches it, in every image, except the very last pixel, which no mask-A output reads
assert (grads["train"].flatten(1)[:, :-1] > 0).all(), "train mode: everything leaks"
assert (grads["eval"] == 0).all(), "eval mode: the first pixel depends on nothing"
assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in PixelCNN().modules())
assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in GatedPixelCNN().modules())

# %% [markdown]
# Prefer no normalisation (as here), or one that works per position and per image. The Jacobian test
# runs the model in eval mode, so **it cannot see a BatchNorm leak**: check for BatchNorm layers
# separately, as the last two lines above do.

# %% [markdown]
# ## 8. Gated activations and class conditioning
#
# **Question.** What does a gated layer compute, and how does a class label get in?
#
# Each gated layer computes $2p$ feature maps from its $p$ inputs and combines the two halves
# multiplicatively, like an LSTM's gates:
#
# $$\mathbf y = \tanh(W_f * \mathbf x + V_f^\top \mathbf h) \odot \sigma(W_g * \mathbf x + V_g^\top \mathbf h).$$
#
# $\tanh$ proposes a value in $(-1, 1)$, the sigmoid decides how much of it passes. For a class label,
# $\mathbf h$ is one-hot, so $V^\top \mathbf h$ is just a **learnt bias per class** (an `nn.Embedding`),
# the same at every position: it adds no dependency on any pixel and cannot break causality.

# %%
a = torch.linspace(-4, 4, 201)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for b in (-2.0, 0.0, 2.0):
    axes[0].plot(a, torch.tanh(a) * torch.sigmoid(torch.tensor(b)), label=f"gate input b = {b:g}")
axes[0].plot(a, torch.relu(a), "k--", linewidth=0.8, label="ReLU(a), for comparison")
axes[0].set_title("gated unit tanh(a)·sigmoid(b)")
axes[0].set_xlabel("value input a")
axes[0].set_ylabel("output")
axes[0].set_ylim(-1.2, 2.2)
axes[0].legend(fontsize=8)
grid_a, grid_b = torch.meshgrid(a, a, indexing="xy")
image = axes[1].imshow(
    torch.tanh(grid_a) * torch.sigmoid(grid_b), extent=(-4, 4, -4, 4), origin="lower", cmap="RdBu_r", vmin=-1, vmax=1
)
axes[1].set_title("tanh(a)·sigmoid(b) over both inputs")
axes[1].set_xlabel("value input a")
axes[1].set_ylabel("gate input b")
fig.colorbar(image, ax=axes[1], label="output")
plt.tight_layout()
plt.show()

# %% [markdown]
# Parameter counts of the course's two default models, without and with 10 classes. The PixelCNN adds
# one class bias after its first layer ($10 \times$ channels numbers); the Gated PixelCNN adds one to
# both halves of both stacks of every gated layer: $10 \times 4p$ per layer.
#
# Not every counted parameter does something. A masked convolution stores a full kernel and multiplies
# it by its mask in every forward pass, so a weight under a 0 of the mask never reaches the output: its
# gradient is exactly zero, and `fit`'s Adam (no weight decay) leaves it at its initial value.
# `masked_parameter_count(model)` (in `course_lib/masks.py`) counts these weights: the entries whose mask
# is 0, over all `MaskedConv2d` layers. The last column of the table is that count.

# %% tags=["nbval-check-output"]
rows = {
    "PixelCNN (64 ch, 6 blocks)": (PixelCNN(), PixelCNN(num_classes=10)),
    "Gated PixelCNN (32 ch, 5 layers)": (GatedPixelCNN(), GatedPixelCNN(num_classes=10)),
}
print(f"{'model':34s} {'unconditional':>13s} {'10 classes':>11s} {'added':>7s} {'masked to 0':>17s}")
for name, (uncond, cond) in rows.items():
    n0, n1, zeroed = count_parameters(uncond), count_parameters(cond), masked_parameter_count(uncond)
    print(f"{name:34s} {n0:13,d} {n1:11,d} {n1 - n0:7,d} {zeroed:9,d} ({zeroed / n0:.1%})")

# %%
p, n_layers, n_classes = 32, 5, 10
gated0, gated10 = rows["Gated PixelCNN (32 ch, 5 layers)"]
pixel0, pixel10 = rows["PixelCNN (64 ch, 6 blocks)"]
assert count_parameters(gated10) - count_parameters(gated0) == n_layers * n_classes * 4 * p
assert count_parameters(pixel10) - count_parameters(pixel0) == n_classes * 64
torch.manual_seed(0)
assert causality_violations(GatedPixelCNN((1, 8, 8), channels=8, dilations=(1, 2), num_classes=10)) == []
print(
    f"conditioning costs {n_layers} layers x {n_classes} classes x 4p = {n_layers * n_classes * 4 * p:,} "
    f"parameters, and the conditional model passes the Jacobian test"
)
# the weights masked_parameter_count counts are exactly those whose gradient is zero by construction
torch.manual_seed(0)
gated0.zero_grad()
(-gated0.log_prob(train.images[:8])).mean().backward()
masked = [conv.weight.grad[conv.mask == 0] for conv in gated0.modules() if isinstance(conv, MaskedConv2d)]
assert sum(g.numel() for g in masked) == masked_parameter_count(gated0)
assert all((g == 0).all() for g in masked), "a weight under a 0 of the mask gets exactly zero gradient"
print(f"{masked_parameter_count(gated0):,} masked weights of the Gated PixelCNN, all with gradient exactly 0")

# %% [markdown]
# So 41,984 of the default Gated PixelCNN's 152,545 parameters (27.5%), and 26,176 of the PixelCNN's
# 88,065 (29.7%), can never affect what the model computes. When models are compared by size, the number
# that matters is the parameter count minus the masked weights. (Storing them costs memory, not accuracy:
# a full kernel times a mask is the simplest way to write a masked convolution, and it runs as one
# ordinary convolution.)

# %% jupyter={"source_hidden": true} tags=["claims"]
from course_lib.config import claims_checked

if claims_checked():  # the prose's claims, on the course's own full-size build
    assert (masked_parameter_count(gated0), count_parameters(gated0)) == (41_984, 152_545)
    assert (masked_parameter_count(pixel0), count_parameters(pixel0)) == (26_176, 88_065)

# %% [markdown]
# ## 9. One gated layer, drawn and read
#
# **Question.** What exactly happens inside one layer of the course's main model?
#
# Sections 5 and 8 gave the two ideas: two stacks, and gated units. Here they are together, as in
# Figure 2 of van den Oord et al. (2016). Each layer takes the vertical features $v$ and the horizontal
# features $h$ (both $p$ channels) and returns new ones. Follow the arrows: the vertical stack's masked
# convolution gives $2p$ maps; a 1×1 convolution carries them into the horizontal stack *before* its gate;
# each stack gates its $2p$ maps down to $p$; the horizontal stack adds a 1×1 convolution and a residual
# connection to its input. The vertical stack has no residual, and nothing flows from $h$ to $v$.


# %%
def box(ax, x, y, text, color="#deebf7", width=2.3, height=0.8):
    """A labelled box centred at (x, y) on the diagram's axes."""
    ax.add_patch(plt.Rectangle((x - width / 2, y - height / 2), width, height, facecolor=color, edgecolor="black"))
    ax.text(x, y, text, ha="center", va="center", fontsize=9)


def arrow(ax, start, end):
    """An arrow from `start` to `end` (x, y)."""
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="->", linewidth=1.3))


fig, ax = plt.subplots(figsize=(10, 5.2))
box(ax, 1.5, 5.0, "v  (p maps)", "#fee6ce")
box(ax, 1.5, 3.2, "v_conv: k×k, mask V\np → 2p", "#fee6ce")
box(ax, 1.5, 1.2, "gate: tanh ⊙ σ\n2p → p", "#fee6ce")
box(ax, 1.5, -0.4, "v out  (p maps)", "#fee6ce")
box(ax, 4.6, 3.2, "v_to_h: 1×1\n2p → 2p", "#e5f5e0")
box(ax, 7.7, 5.0, "h  (p maps)")
box(ax, 7.7, 3.2, "h_conv: 1×k, mask B\np → 2p")
box(ax, 7.7, 2.2, "+", width=0.5, height=0.5)
box(ax, 7.7, 1.2, "gate: tanh ⊙ σ\n2p → p")
box(ax, 7.7, 0.2, "h_out: 1×1, mask B\np → p")
box(ax, 7.7, -0.9, "+", width=0.5, height=0.5)
box(ax, 7.7, -1.9, "h out  (p maps)")
arrow(ax, (1.5, 4.6), (1.5, 3.6))
arrow(ax, (1.5, 2.8), (1.5, 1.6))
arrow(ax, (1.5, 0.8), (1.5, 0.0))
arrow(ax, (2.65, 3.2), (3.45, 3.2))
arrow(ax, (5.75, 3.0), (7.45, 2.2))
ax.text(6.1, 2.35, "added before\nthe gate", ha="center", va="top", fontsize=8, color="dimgray")
arrow(ax, (7.7, 4.6), (7.7, 3.6))
arrow(ax, (7.7, 2.8), (7.7, 2.45))
arrow(ax, (7.7, 1.95), (7.7, 1.6))
arrow(ax, (7.7, 0.8), (7.7, 0.6))
arrow(ax, (7.7, -0.2), (7.7, -0.65))
arrow(ax, (7.7, -1.15), (7.7, -1.5))
ax.plot([8.85, 9.25, 9.25], [5.0, 5.0, -0.9], color="black", linewidth=1.3)  # from the h box, down the right
arrow(ax, (9.25, -0.9), (7.95, -0.9))
ax.text(9.35, 2.0, "residual:\nh + ...", fontsize=8, color="dimgray")
ax.text(1.5, 5.8, "vertical stack (rows above)", ha="center", fontsize=10, weight="bold")
ax.text(7.7, 5.8, "horizontal stack (row to the left)", ha="center", fontsize=10, weight="bold")
ax.set_xlim(0, 10.3)
ax.set_ylim(-2.6, 6.2)
ax.set_title("One layer of the Gated PixelCNN (GatedBlock in course_lib/models.py)")
ax.axis("off")
plt.show()

# %% [markdown]
# The code is as short as the diagram. This is the layer's `forward` from `course_lib/models.py`, printed
# from the library itself, so it cannot drift from what the course runs:

# %%
print(inspect.getsource(GatedBlock.forward))

# %% [markdown]
# Line by line:
#
# 1. `v_feat = self.v_conv(v)`: the vertical stack's masked k×k convolution, $p \to 2p$ maps (mask "V":
#    rows above, and the centre row of vertical features, which know only rows above).
# 2. `h_feat = self.h_conv(h) + self.v_to_h(v_feat)`: the horizontal stack's 1×k mask-B convolution, plus
#    the vertical features through a 1×1 convolution, added **before** the gate. This is the only link
#    between the stacks, and it goes one way: vertical to horizontal.
# 3. The optional class bias (section 8) is added to both stacks' pre-activations, the same at every position.
# 4. `return gate(v_feat), h + self.h_out(gate(h_feat))`: each stack gates its $2p$ maps down to $p$; the
#    horizontal stack adds a 1×1 mask-B convolution and the **residual** $h + \dots$; the vertical stack
#    has none.
#
# **Check.** Count the parameters by hand for $p$ channels and kernel size $k = 3$ (weights + biases):
# `v_conv` $2p \cdot p \cdot 9 + 2p$, `h_conv` $2p \cdot p \cdot 3 + 2p$, `v_to_h` $2p \cdot 2p + 2p$ and
# `h_out` $p \cdot p + p$, together $29p^2 + 7p$. Of these, the masks zero $8p^2$: 3 of the 9 taps of
# `v_conv` (mask V drops the row below the centre: $2p \cdot p \cdot 3$) and 1 of the 3 taps of `h_conv`
# (mask B drops the right neighbour: $2p \cdot p$); the 1×1 mask B of `h_out` keeps everything when there
# is one colour channel. And trace the shapes through one call.

# %% tags=["nbval-check-output"]
p = 16
layer = GatedBlock(p, data_channels=1, kernel_size=3)
by_hand = 29 * p**2 + 7 * p
print(f"GatedBlock, p = {p}: {count_parameters(layer):,} parameters; by hand 29p² + 7p = {by_hand:,}")
print(f"  masked to 0: {masked_parameter_count(layer):,}; by hand 8p² = {8 * p**2:,}")
shapes = {}
for name in ("v_conv", "h_conv", "v_to_h", "h_out"):
    # a forward hook that returns None only watches (a returned value would replace the output)
    getattr(layer, name).register_forward_hook(lambda m, inputs, out, name=name: shapes.__setitem__(name, out.shape))
v_in, h_in = torch.randn(2, p, 28, 28), torch.randn(2, p, 28, 28)
v_out, h_out = layer(v_in, h_in)
for name, shape in shapes.items():
    print(f"  {name:7s} -> {tuple(shape)}")
print(f"  layer   -> v {tuple(v_out.shape)}, h {tuple(h_out.shape)}")

# %%
assert count_parameters(layer) == by_hand
assert masked_parameter_count(layer) == 8 * p**2
assert shapes["v_conv"] == shapes["h_conv"] == shapes["v_to_h"] == (2, 2 * p, 28, 28)
assert v_out.shape == h_out.shape == v_in.shape


# %% [markdown]
# ## Recap
# - A plain convolution sees the pixel it predicts: it copies it and reaches a near-zero, meaningless loss.
# - Masked convolutions keep only the past in raster order: **mask A** on the first layer (no centre),
#   **mask B** afterwards (the centre holds only knowledge of the past). For colour, hidden channels form
#   R, G, B groups and the centre weight follows R → G → B.
# - Causality is argued from the masks' structure (by induction over the layers; masked weights are exact
#   zeros) and tested on the code: the Jacobian $\partial\,\mathrm{logit}_o/\partial x_k$ must vanish for
#   every $k \ge o$. `causality_violations` computes it in float64 on a freshly built model, no data
#   needed. One non-zero forbidden entry proves a leak; zeros at several random inputs are strong
#   evidence, not a proof.
# - Stacked masked convolutions have a **blind spot** above and to the right. The Gated PixelCNN's vertical
#   stack (rows strictly above the output: *shifted* one row down, here by the mask V0 of its first layer)
#   and horizontal stack (the row to the left), linked only vertical → horizontal, see every past pixel
#   within their reach.
# - Mask B on the first layer gives a superb loss and blank samples; its "probabilities" no longer sum to
#   one. BatchNorm in training mode leaks across positions and images, and the Jacobian test (in eval
#   mode) cannot see it.
# - Gated units multiply $\tanh$ by a sigmoid gate; class conditioning is a learnt per-class bias,
#   $4p$ numbers per class per gated layer.
# - Masks zero a large share of the counted parameters: those weights never reach the output and get
#   exactly zero gradient (`masked_parameter_count`).
# - One gated layer: vertical k×k (mask V) → gate; horizontal 1×k (mask B) plus the vertical features
#   through a 1×1 link *before* its gate, then a 1×1 and a residual on the horizontal stack only:
#   $29p^2 + 7p$ parameters for $k = 3$.

# %% [markdown]
# ## References
#
# - van den Oord, Kalchbrenner, Kavukcuoglu (2016), *Pixel Recurrent Neural Networks*, ICML, arXiv:1601.06759: PixelRNN and PixelCNN, masks A and B, binarized MNIST results.
# - van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves, Kavukcuoglu (2016), *Conditional Image Generation with PixelCNN Decoders*, NeurIPS, arXiv:1606.05328: the Gated PixelCNN, its vertical and horizontal stacks, and class conditioning.

# %% [markdown]
# ## Exercises
# The graded notebook `exercises/02_masked_convolutions.ipynb` (its solved twin is in `solutions/`) has 4
# tasks worth 9 points; the check cell under each task tells you as you go whether your code is right, and
# `pixelcnn-grade` grades the whole notebook.
# - **Task 1 · `make_mask(kernel_size, mask_type, in_channels, out_channels, data_channels=1)`** (3 points).
#   Return the 0/1 mask, shape `(out_channels, in_channels, k, k)` like a `Conv2d` weight, float, for an odd
#   `kernel_size` k with centre `(k // 2, k // 2)`.
# - **Task 2 · `class MaskedConv2d(nn.Conv2d)`** (2 points). A convolution layer whose kernel is multiplied
#   by your mask.
# - **Task 3 · `receptive_field_map(model, i, j, c=0)`** (2 points). Which inputs can the output at
#   sub-pixel `(c, i, j)` see?
# - **Task 4 · `is_causal(model)`** (2 points). Number the sub-pixels in raster order and, inside a pixel,
#   R → G → B.
