"""Checks for exercises 06: the discretized logistic likelihood of PixelCNN++, its mixture, and the colour order
at the centre of a mask. Each check compares with a float64 reference on fresh random parameters, beyond the
lesson's settings too (2 and 3 levels, means far outside [-1, 1], logistics narrow or wide enough for a naive
formula to underflow or cancel in float32, channel counts that are not multiples of the colour groups), and names
a wrong answer by the plausible mistake, computed here as a variant of the reference, that reproduces it.
"""

import math

import torch
import torch.nn.functional as F

from course_lib.masks import raster_mask

from .helpers import call, close, fail, first_match, fresh_generator, isolated, no_delegation, passed, tensor_rule

LOG_SPACE = (
    "compute log(sigmoid(b) - sigmoid(a)) as logsigmoid(b) + logsigmoid(-a) + log(-expm1(a - b)), "
    "and log(1 - sigmoid(a)) as logsigmoid(-a); for close a and b, exp(a - b) rounds to the float32 next to 1, "
    "so 1 - exp(a - b) and log1p(-exp(a - b)) keep only its rounding error"
)


# -- references and plausible mistakes, all float64 --------------------------------------------------------------------
def _edges(mean, log_scale, levels, centres=None, half=None, inv_s=None):
    """Standardised lower and upper bin edges, each (..., K)."""
    half = 1.0 / (levels - 1) if half is None else half
    centres = torch.linspace(-1.0, 1.0, levels, dtype=torch.float64) if centres is None else centres
    inv_s = torch.exp(-log_scale) if inv_s is None else inv_s
    return (centres - half - mean[..., None]) * inv_s[..., None], (centres + half - mean[..., None]) * inv_s[..., None]


def _bins(lo, hi, tails=True):
    """Log-mass of every bin (..., K); with `tails` the edge levels take everything beyond them."""
    inner = F.logsigmoid(hi) + F.logsigmoid(-lo) + torch.log(-torch.expm1(lo - hi))
    if not tails:
        return inner
    return torch.cat([F.logsigmoid(hi[..., :1]), inner[..., 1:-1], F.logsigmoid(-lo[..., -1:])], dim=-1)


def reference(mean, log_scale, levels):
    """Log-probabilities (..., K) of one discretized logistic, edge levels taking the tails."""
    return _bins(*_edges(mean.double(), log_scale.double(), levels))


def _mistakes(mean, log_scale, levels):
    """{name: (log-probabilities, what is wrong, hint)} for the plausible mistakes of task 1."""
    m, ls, k = mean.double(), log_scale.double(), levels
    unit = torch.linspace(0.0, 1.0, k, dtype=torch.float64)
    z = _edges(m, ls, k, half=0.0)[0]  # the standardised centres of the levels
    no_tails = _bins(*_edges(m, ls, k), tails=False)
    width = ("the bins have the wrong width",
             "levels are 2/(K-1) apart on [-1, 1], so each bin reaches d = 1/(K-1) to either side")  # fmt: skip
    on_01 = ("the levels sit on [0, 1], not on [-1, 1]", "level k sits at x_k = 2k/(K-1) - 1")
    return {
        "probabilities": (reference(m, ls, k).exp(), "you returned probabilities, not log-probabilities", "return the log of each level's probability"),
        "no tails": (no_tails, "the edge levels 0 and K-1 lack their tails: the probabilities sum to less than 1",
                     "give level 0 everything below its upper edge (logsigmoid(hi)) and level K-1 everything above its lower edge"),
        "renormalised": (no_tails.log_softmax(-1), "the edge levels lack their tails (renormalising the bins does not replace them)",
                         "give level 0 everything below its upper edge and level K-1 everything above its lower edge"),
        "half-width 1/K": (_bins(*_edges(m, ls, k, half=1.0 / k)), *width),
        "half-width 2/(K-1)": (_bins(*_edges(m, ls, k, half=2.0 / (k - 1))), *width),
        "levels on [0, 1]": (_bins(*_edges(m, ls, k, centres=unit, half=0.5 / (k - 1))), *on_01),
        "levels on [0, 1], wide bins": (_bins(*_edges(m, ls, k, centres=unit)), *on_01),
        "log-scale as scale": (_bins(*_edges(m, ls, k, inv_s=1 / ls)), "the log-scale was used as the scale",
                               "the scale is s = exp(log_scale)"),
        "multiplied by the scale": (_bins(*_edges(m, -ls, k)), "the bin edges were multiplied by the scale instead of divided",
                                    "standardise as (x - mean) / s, i.e. multiply by exp(-log_scale)"),
        "density": (-z - ls[..., None] - 2 * F.softplus(-z) + math.log(2.0 / (k - 1)),  # pdf at the centre x width
                    "you used the density at each level's centre, not the probability mass of its bin",
                    "a bin's mass is a difference of two CDFs: sigmoid(upper edge) - sigmoid(lower edge)"),
        "mirrored": (reference(-m, ls, k), "the distribution is mirrored: its mass sits on the wrong side of the mean",
                     "standardise as (x - mean) / s, not (mean - x) / s"),
    }  # fmt: skip


def _diagnose(got, mean, log_scale, levels, what):
    """Fail with the closest plausible mistake, or with a generic message. An answer right wherever a level
    has a probability above 1e-3 (where float32 cancellation stays below the tolerance) and wrong elsewhere has
    the formula right and the numerics wrong, so that comes first; an answer off by less than 0.05 that no
    mistake (told apart from the reference by this case) explains has the formula right and loses digits."""
    ref, got = reference(mean, log_scale, levels), got.detach()
    likely = ref > -7.0
    if (~likely).any() and close(got[likely], ref[likely], "loose"):
        fail(f"{what}: your log-probabilities are right for likely levels but wrong for unlikely ones", LOG_SPACE)
    first_match(got, _mistakes(mean, log_scale, levels), prefix=f"{what}: ", reference=ref)
    if close(got, ref, (0.0, 0.05)):
        fail(f"{what}: your log-probabilities are near the reference but further from it than float32 rounding",
             LOG_SPACE)  # fmt: skip
    fail(f"{what}: your log-probabilities differ from the reference",
         "bin edges x_k ± 1/(K-1) with x_k = 2k/(K-1) - 1, standardised by exp(log_scale); edge levels take the tails")  # fmt: skip


def _answer(fn, name, inputs, levels, ref, what, shape_hint, finite_hint):
    """The learner's `fn(*inputs, levels)`, run on copies of `inputs`: None when it matches `ref`, else the
    answer (a finite tensor of the right shape, to diagnose); a wrong type, shape or value fails here, and so
    does a change to the input tensors."""
    given = tuple(x.clone() for x in inputs)
    got = call(fn, *given, levels)
    if any(x.shape != y.shape or not torch.equal(x, y) for x, y in zip(given, inputs)):
        fail(f"{what}: {name} changed its input tensors in place",
             "build new tensors (x[..., None], -x, x - y) instead of in-place operations (unsqueeze_, neg_, -=)")  # fmt: skip
    finite, hint = ("some log-probabilities are -inf or NaN", finite_hint), "return a torch tensor of log-probabilities"
    got = tensor_rule(got, name, ref.shape, hint, shape_hint=shape_hint, finite=finite, prefix=f"{what}: ")
    return None if close(got, ref, "log_prob") else got


def _draw(g, shape, low, high, signed=False):
    """Uniform numbers in [low, high] of `shape` (with `signed`, each of random sign)."""
    x = low + torch.rand(shape, generator=g) * (high - low)
    return x * (torch.randint(0, 2, shape, generator=g) * 2 - 1) if signed else x


# -- task 1 ------------------------------------------------------------------------------------------------------------
LOGISTICS = [  # (what, shape, levels, means (low, high, signed), log-scales); the first keeps every mistake finite
    ("7 levels, wide logistics", (3, 4), 7, (-0.6, 0.6, False), (0.3, 1.5)),
    ("5 levels, inputs of shape (2, 1, 3)", (2, 1, 3), 5, (-0.9, 0.9, False), (-2.5, -0.5)),
    ("256 levels", (2, 3), 256, (-0.95, 0.95, False), (-4.0, -1.0)),
    ("256 levels, a very narrow logistic far from most levels", (5,), 256, (-0.8, 0.8, False), (-7.0, -6.0)),
    ("2 levels", (3, 2), 2, (-0.9, 0.9, False), (-2.0, 0.5)),  # edges: levels the lesson does not use
    ("3 levels", (4,), 3, (-0.9, 0.9, False), (-3.0, 0.0)),
    ("256 levels, means far outside [-1, 1]", (2, 3), 256, (1.5, 3.0, True), (-5.0, -3.0)),
    ("256 levels, logistics far wider than [-1, 1]", (3, 4), 256, (-0.9, 0.9, False), (7.5, 8.5)),
]  # fmt: skip


@isolated
@no_delegation(
    "course_lib.logistic.mixture_log_probs",
    "course_lib.logistic.mixture_log_prob_at",
    "course_lib.logistic._log_bin_mass",
)
def check_discretized_logistic(discretized_logistic):
    """Task 1: `discretized_logistic(mean, log_scale, levels)` gives the (..., K) log-probabilities of the
    K levels, within float32 precision of a float64 reference, for any levels, means and log-scales."""
    g = fresh_generator()
    for what, shape, levels, means, (lo, hi) in LOGISTICS:
        mean, log_scale = _draw(g, shape, *means), _draw(g, shape, lo, hi)
        got = _answer(discretized_logistic, "discretized_logistic", (mean, log_scale), levels, reference(mean, log_scale, levels),
                      what, "keep the input's shape and add the K levels as a new last dimension", LOG_SPACE)  # fmt: skip
        if got is not None:
            _diagnose(got, mean, log_scale, levels, what)
    return passed("discretized_logistic matches the reference at 2, 3, 5, 7 and 256 levels, for narrow and wide "
                  "logistics and means inside and far outside [-1, 1]")  # fmt: skip


# -- task 2 ------------------------------------------------------------------------------------------------------------
def reference_mixture(logit_pi, mean, log_scale, levels):
    """Log-probabilities (..., K) of a mixture of discretized logistics; inputs (..., M)."""
    components = reference(mean, log_scale, levels)  # (..., M, K)
    return torch.logsumexp(F.log_softmax(logit_pi.double(), dim=-1)[..., None] + components, dim=-2)


def _mixture_mistakes(logit_pi, mean, log_scale, levels):
    comp = reference(mean, log_scale, levels)
    lp = logit_pi.double()[..., None]
    return {
        "raw logits": (torch.logsumexp(lp + comp, dim=-2), "the mixture weights are the raw logits, not normalised",
                       "use log_softmax(logit_pi, dim=-1) as the log-weights"),
        "weights over the wrong dim": (torch.logsumexp(F.log_softmax(logit_pi.double(), dim=0)[..., None] + comp, dim=-2),
                                       "the weights were normalised over the wrong dimension",
                                       "normalise over the M components, the last dimension of logit_pi"),
        "probabilities as log-weights": (torch.logsumexp(F.softmax(lp, dim=-2) + comp, dim=-2),
                                         "the weights were added as probabilities, not log-probabilities",
                                         "add log_softmax(logit_pi) to the components' log-probabilities"),
        "sum of log-probabilities": ((F.log_softmax(lp, dim=-2) + comp).sum(-2),
                                     "you added the components' log-probabilities; a mixture adds probabilities",
                                     "combine the components with torch.logsumexp over the component dimension"),
        "weighted log-probabilities": ((F.softmax(lp, dim=-2) * comp).sum(-2),
                                       "you averaged the components' log-probabilities; a mixture averages probabilities",
                                       "log sum_m pi_m P_m(k) = logsumexp over m of (log pi_m + log P_m(k))"),
    }  # fmt: skip


MIXTURES = [  # (what, batch shape, components, levels, log-scales (low, high))
    ("3 components, 7 levels", (2, 3), 3, 7, (-2.0, -0.5)),
    ("1 component, inputs of shape (2, 1, 1)", (2, 1), 1, 5, (-2.0, -0.5)),
    ("4 components, 256 levels", (3,), 4, 256, (-4.0, -1.0)),
    ("2 narrow components, 256 levels", (2,), 2, 256, (-7.0, -6.0)),
    ("5 components, 2 levels", (3,), 5, 2, (-2.0, 0.5)),  # edge: levels the lesson does not use
]


@isolated
@no_delegation("course_lib.logistic.mixture_log_probs", "course_lib.logistic.mixture_log_prob_at")
def check_mixture(mixture):
    """Task 2: `mixture(logit_pi, mean, log_scale, levels)` gives the (..., K) log-probabilities of a mixture
    of M discretized logistics (inputs (..., M)), weights softmax(logit_pi), computed in log space."""
    g = fresh_generator()
    for what, shape, m, levels, (lo, hi) in MIXTURES:
        logit_pi = torch.randn(*shape, m, generator=g) * 2
        mean, log_scale = _draw(g, (*shape, m), -0.9, 0.9), _draw(g, (*shape, m), lo, hi)
        got = _answer(mixture, "mixture", (logit_pi, mean, log_scale), levels, reference_mixture(logit_pi, mean, log_scale, levels),
                      what, "replace the last dimension (the M components) by the K levels",
                      "combine the components in log space with torch.logsumexp: exp() of log-probabilities near -1000 "
                      "is 0, and so is a sum of such probabilities")  # fmt: skip
        if got is not None:
            first_match(got, _mixture_mistakes(logit_pi, mean, log_scale, levels), prefix=f"{what}: ")
            fail(f"{what}: your mixture's log-probabilities differ from the reference",
                 "check your discretized_logistic first (its check must pass), then logsumexp over the components "
                 "of log_softmax(logit_pi) + their log-probabilities")  # fmt: skip
    return passed("mixture matches the reference for 1 to 5 components at 2, 5, 7 and 256 levels")


# -- task 3 ------------------------------------------------------------------------------------------------------------
def reference_centre_mask(in_channels, out_channels, data_channels, mask_type):
    """(out, in) centre-pixel mask of `course_lib.masks.raster_mask`: contiguous colour groups."""
    return raster_mask(1, mask_type, in_channels, out_channels, data_channels)[:, :, 0, 0]


def _centre_mistakes(n_in, n_out, groups, mask_type):
    other = "B" if mask_type == "A" else "A"
    any_size = (
        "your colour groups are right only when the channel count is a multiple of data_channels",
        "channel j of n belongs to group j * data_channels // n, for any n: 4 channels in 3 groups are R, R, G, B",
    )

    def allowed(group):  # (out, in): the link rule of this mask type, channel j of n being in group(j, n)
        g_out, g_in = group(torch.arange(n_out), n_out)[:, None], group(torch.arange(n_in), n_in)[None, :]
        return (g_out > g_in if mask_type == "A" else g_out >= g_in).float()

    return {
        "A and B swapped": (reference_centre_mask(n_in, n_out, groups, other), f"this is the centre of mask {other}, not mask {mask_type}",
                            "mask A allows strictly earlier colour groups (<), mask B also the same group (<=)"),
        "order reversed": (allowed(lambda j, n: groups - 1 - j * groups // n),
                           "the colour order is reversed (B -> G -> R)",
                           "output group g may see input groups before it (mask A) or up to it (mask B)"),
        "interleaved groups": (allowed(lambda j, n: j % groups), "the channels are grouped by j % data_channels (interleaved), not in contiguous blocks",
                               "channel j of n belongs to group j * data_channels // n"),
        "all ones": (torch.ones(n_out, n_in), "every link is open: the output sees its own colour and later ones",
                     "compare the colour groups of input and output"),
        "groups of n // groups channels": (allowed(lambda j, n: j // (n // groups)), *any_size),
        "groups of ceil(n / groups) channels": (allowed(lambda j, n: j // -(-n // groups)), *any_size),
    }  # fmt: skip


@isolated
@no_delegation("course_lib.masks.raster_mask", "course_lib.masks.channel_groups")
def check_centre_mask(centre_mask):
    """Task 3: `centre_mask(in_channels, out_channels, data_channels, mask_type)` gives the (out, in) centre of
    a colour-ordered mask, float, for any channel count with at least one channel per group."""
    cases = [(3, 8, 3, "A"), (3, 8, 3, "B"), (7, 10, 3, "B"), (10, 7, 3, "A"), (5, 4, 1, "A"), (5, 4, 1, "B"),
             (7, 9, 5, "A"), (4, 5, 3, "A"), (5, 3, 2, "B")]  # fmt: skip
    for n_in, n_out, groups, mask_type in cases:
        what = f"mask {mask_type}, {n_in} -> {n_out} channels, {groups} colour group{'s' * (groups > 1)}"
        swapped = ("rows and columns are swapped", "return shape (out_channels, in_channels), like a conv weight")
        got = tensor_rule(call(centre_mask, n_in, n_out, groups, mask_type), "centre_mask", (n_out, n_in), "return a float tensor of ones and zeros",
                          shape_hint="rows are output channels, columns input channels", shapes={(n_in, n_out): swapped}, prefix=f"{what}: ")  # fmt: skip
        if not got.is_floating_point():
            fail(f"centre_mask returned a {got.dtype} tensor, not a float one", "return the mask as ones and zeros: .float()")  # fmt: skip
        if not torch.equal(got.float(), reference_centre_mask(n_in, n_out, groups, mask_type)):
            first_match(got.float(), _centre_mistakes(n_in, n_out, groups, mask_type), prefix=f"{what}: ")
            fail(f"{what}: the mask differs from the reference", "channel j of n is in group j * data_channels // n; "
                 "mask A: group(in) < group(out), mask B: group(in) <= group(out)")  # fmt: skip
    return passed("centre_mask matches masks A and B for colour and grey layers, even and uneven channel counts")
