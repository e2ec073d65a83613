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
# # Exercises 06 · The discretized logistic likelihood and colour order
#
# PixelCNN++ replaces the 256-way softmax with a mixture of logistic distributions discretized to the $K$
# intensity levels. Here you write that likelihood yourself, first one discretized logistic, then the
# mixture, and score real 8-bit digits with a trained model's mixture parameters. Then you write the part
# of a colour model's mask that orders R, G and B inside a pixel.
#
# ## What you will practise
# 1. **One discretized logistic**: the probability mass of every level's bin, with the edge levels taking
#    the tails, computed in log space so that narrow or distant logistics stay finite (3 points).
# 2. **The mixture**: combine $M$ components with softmax weights, in log space (2 points).
# 3. **Colour order at the centre of a mask**: which channels of the current pixel each output may see,
#    for masks A and B (2 points).
#
# Each check runs your function on fresh random parameters, prints `✓ ...` when it behaves like the
# reference, or `✗ ...` with what is wrong and a hint. Run the cells from the top.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math

import torch
import torch.nn.functional as F

from course_lib import GatedPixelCNN, fit, load_dataset, pick
from course_lib.data import per_class
from coursework import checks

torch.manual_seed(0)

# %% [markdown] nbgrader={"grade": false, "grade_id": "task1_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 1 · One discretized logistic (3 points)
#
# Scale the $K$ levels to $[-1, 1]$: level $k$ sits at $x_k = 2k/(K-1) - 1$ and owns the bin
# $[x_k - d, x_k + d]$ with half-width $d = 1/(K-1)$. A logistic with mean $\mu$ and scale
# $s = e^{\log s}$ has the CDF $\sigma((x - \mu)/s)$ ($\sigma$ is the sigmoid), so level $k$ gets
#
# $$P(k) = \sigma\!\left(\tfrac{x_k + d - \mu}{s}\right) - \sigma\!\left(\tfrac{x_k - d - \mu}{s}\right),$$
#
# except the two **edge levels, which take the tails**: $P(0) = \sigma((x_0 + d - \mu)/s)$ and
# $P(K-1) = 1 - \sigma((x_{K-1} - d - \mu)/s)$. Then the $K$ probabilities sum to exactly 1.
#
# Write `discretized_logistic(mean, log_scale, levels) -> (..., K)`: `mean` and `log_scale` are tensors of
# the same shape `(...)`; return the **log**-probabilities of the `levels` levels in a new last dimension.
#
# A difference of two sigmoids underflows: for a narrow logistic far from a bin both are 0 (or both 1) in
# float32 and the log gives $-\infty$. Stay in log space with $\log(1 - \sigma(a)) = \log\sigma(-a)$ and,
# for $b > a$, $\log(\sigma(b) - \sigma(a)) = \log\sigma(b) + \log\sigma(-a) + \log(1 - e^{a - b})$
# (`F.logsigmoid`, and `torch.log(-torch.expm1(a - b))` for the last term).
#
# **Library:** `course_lib`'s `mixture_log_probs`, `mixture_log_prob_at` and `_log_bin_mass` do this task for
# you: calling them earns no points; PyTorch is yours to use.
#
# **Check:** random means and log-scales at $K$ = 5 and 256, then very narrow logistics far from most
# levels. Probabilities instead of log-probabilities, edge levels without their tails, bins of the wrong
# width, levels on $[0, 1]$ instead of $[-1, 1]$, the log-scale used as the scale, a density instead of a
# bin's mass and a difference of sigmoids that underflows each get their own message.


# %% nbgrader={"grade": false, "grade_id": "t06_discretized_logistic", "locked": false, "schema_version": 3, "solution": true, "task": false}
def discretized_logistic(mean, log_scale, levels):
    """Log-probabilities (..., K) of the K = `levels` levels under a logistic (mean, exp(log_scale)) on [-1, 1],
    discretized to the levels' bins; the edge levels take the tails."""
    ### BEGIN SOLUTION
    half = 1.0 / (levels - 1)
    centres = torch.linspace(-1.0, 1.0, levels, dtype=mean.dtype, device=mean.device)  # (K,)
    inv_s = torch.exp(-log_scale)[..., None]  # (..., 1)
    lo = (centres - half - mean[..., None]) * inv_s  # (..., K): standardised lower bin edges
    hi = (centres + half - mean[..., None]) * inv_s
    inner = F.logsigmoid(hi) + F.logsigmoid(-lo) + torch.log(-torch.expm1(lo - hi))
    return torch.cat([F.logsigmoid(hi[..., :1]), inner[..., 1:-1], F.logsigmoid(-lo[..., -1:])], dim=-1)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "t06_discretized_logistic_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
checks.lesson06.check_discretized_logistic(discretized_logistic)

# %% [markdown] nbgrader={"grade": false, "grade_id": "task2_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 2 · The mixture (2 points)
#
# A mixture of $M$ logistics has weights $\pi = \mathrm{softmax}(\text{logits})$ over its components:
#
# $$\log P(k) = \log \sum_m \pi_m P_m(k) = \operatorname{logsumexp}_m \left[\log \pi_m + \log P_m(k)\right].$$
#
# Write `mixture(logit_pi, mean, log_scale, levels) -> (..., K)`: the three inputs have shape `(..., M)`;
# return the mixture's log-probabilities of the levels. Use your `discretized_logistic` for the components.
#
# **Library:** `course_lib`'s `mixture_log_probs` and `mixture_log_prob_at` do this task for you: calling them
# earns no points; PyTorch is yours to use.
#
# **Check:** random mixtures of 1 to 4 components. Raw logits used as weights, weights normalised over the
# wrong dimension, probabilities added in log space and an average of log-probabilities get their own
# messages.


# %% nbgrader={"grade": false, "grade_id": "t06_mixture", "locked": false, "schema_version": 3, "solution": true, "task": false}
def mixture(logit_pi, mean, log_scale, levels):
    """Log-probabilities (..., K) of a mixture of discretized logistics; inputs (..., M)."""
    ### BEGIN SOLUTION
    components = discretized_logistic(mean, log_scale, levels)  # (..., M, K)
    log_pi = F.log_softmax(logit_pi, dim=-1)[..., None]  # (..., M, 1)
    return torch.logsumexp(log_pi + components, dim=-2)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "t06_mixture_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
checks.lesson06.check_mixture(mixture)

# %% [markdown] nbgrader={"grade": false, "grade_id": "score_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Putting it together: scoring real digits
#
# A Gated PixelCNN with the mixture head (`head="logistic"`, $M = 5$) gives 15 numbers per sub-pixel: 5
# mixture logits, 5 means (before a `tanh` that keeps them in $[-1, 1]$) and 5 log-scales. We train one
# briefly on 8-bit digits (100 of every digit); your `mixture` turns its outputs into the probabilities of
# the 256 levels, and the log-probability of the observed levels, summed over an image, is its
# log-likelihood: it must equal what the library computes, on 3 test images of every digit.
#
# The log-scales are floored at −7 first (`log_scale.clamp(min=-7.0)`), as the library does: a logistic
# that predicts one level ever more surely keeps shrinking its scale, and $1/s = e^{-\log s}$ would overflow
# float32 (below $\log s \approx -88$) into infinite bin edges and NaN gradients, while at $s = e^{-7}$ a
# bin of width $2/255$ already spans about 8.6 scales and holds 97% of the logistic's mass.
#
# A correct solution prints about 1,307 nats/image = 2.41 bits/dim, and `True` (measured with the reference
# solution: 1307.08 nats/image = 2.4053 bits/dim). The model is trained by the library and only your
# `mixture` computes these numbers, so a different value means a bug in it, not an unlucky run.

# %% nbgrader={"grade": false, "grade_id": "score", "locked": true, "schema_version": 3, "solution": false, "task": false}
digits = per_class(load_dataset("mnist-subset", "train", levels=256), pick(fast=6, full=100))
torch.manual_seed(0)
model = GatedPixelCNN(levels=256, head="logistic", mixtures=5)
fit(model, digits, epochs=1, batch_size=32, lr=2e-3, device="cpu", progress=False)
scored = per_class(load_dataset("mnist-subset", "test", levels=256), pick(fast=1, full=3))
x = scored.images
captured = {}
hook = model.out2.register_forward_hook(lambda module, inputs, output: captured.update(out=output))
with torch.no_grad():
    library = model.eval().log_prob(x)  # (B,) nats
hook.remove()
b, _, h, w = captured["out"].shape
params = captured["out"].view(b, 1, 15, h, w).permute(0, 1, 3, 4, 2)  # (B, 1, H, W, 15)
logit_pi, raw_mean, log_scale = params.chunk(3, dim=-1)
log_probs = mixture(logit_pi, torch.tanh(raw_mean), log_scale.clamp(min=-7.0), 256)  # (B, 1, H, W, 256)
mine = log_probs.gather(-1, x[..., None]).squeeze(-1).flatten(1).sum(1)
print(f"{b} test digits: {-mine.mean():.2f} nats/image = {-mine.mean() / (784 * math.log(2)):.4f} bits/dim")
print("equal to the library's log-likelihood:", torch.allclose(mine, library, atol=1e-2))

# %% [markdown] nbgrader={"grade": false, "grade_id": "task3_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 3 · Colour order at the centre of a mask (2 points)
#
# A colour model predicts R, then G, then B inside a pixel. Its masked convolutions split every layer's
# channels into `data_channels` contiguous groups, one per colour: channel $j$ of $n$ belongs to group
# $\lfloor j \cdot \text{data\_channels} / n \rfloor$ (so 8 channels in 3 groups are `0 0 0 1 1 1 2 2`).
# At the centre pixel of the kernel, output channel $o$ may see input channel $i$ only if
# - mask `"A"` (the first layer, which sees the image itself): group($i$) < group($o$), strictly earlier
#   colours of the same pixel;
# - mask `"B"` (every later layer): group($i$) ≤ group($o$), because group $g$ of a hidden layer holds only
#   what may be known when predicting colour $g$.
#
# Write `centre_mask(in_channels, out_channels, data_channels, mask_type) -> (out_channels, in_channels)`,
# a float tensor of ones (link allowed) and zeros.
#
# **Library:** `course_lib`'s `raster_mask` and `channel_groups` do this task for you: calling them earns no
# points; PyTorch is yours to use.
#
# **Check:** masks A and B for the image layer (3 → 8), hidden layers with channel counts that do not divide
# evenly (7 → 10, 10 → 7) and a grey model (1 group). Masks A and B swapped, the order reversed
# (B → G → R), interleaved groups (`j % 3`), rows and columns swapped and a mask of all ones get their own
# messages.


# %% nbgrader={"grade": false, "grade_id": "t06_centre_mask", "locked": false, "schema_version": 3, "solution": true, "task": false}
def centre_mask(in_channels, out_channels, data_channels, mask_type):
    """Centre-pixel mask (out_channels, in_channels) of a colour-ordered masked convolution, type "A" or "B"."""
    ### BEGIN SOLUTION
    group_in = torch.arange(in_channels) * data_channels // in_channels  # (in,)
    group_out = torch.arange(out_channels) * data_channels // out_channels  # (out,)
    if mask_type == "A":
        allowed = group_out[:, None] > group_in[None, :]
    else:
        allowed = group_out[:, None] >= group_in[None, :]
    return allowed.float()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "t06_centre_mask_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
checks.lesson06.check_centre_mask(centre_mask)

# %% [markdown] nbgrader={"grade": false, "grade_id": "closing", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## What you wrote
# - **One discretized logistic**: a bin's mass is a difference of two CDFs; the edge levels take the tails,
#   so the $K$ probabilities sum to one; in log space a narrow logistic far from a bin stays finite.
# - **The mixture**: log-softmax weights plus component log-probabilities, combined with `logsumexp`.
# - **Colour order**: contiguous channel groups, one per colour; mask A links strictly earlier groups at the
#   centre pixel, mask B also a group to itself.
#
# `course_lib/logistic.py` and `course_lib/masks.py` (`channel_groups`, `raster_mask`) hold the library
# versions (the first also computes one observed bin at a time for training): read them now and compare.
