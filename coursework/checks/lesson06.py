"""Checks for exercises 06: the discretized logistic likelihood of PixelCNN++.

Each check compares the learner's log-probabilities with a float64 reference on fresh random parameters
and, when they differ, names the closest plausible mistake (each one computed here as a variant of the
reference): probabilities instead of logs, edge levels without tails, bins of the wrong width, levels on
[0, 1], the log-scale used as the scale, a density instead of a bin's mass, weights not normalised.
"""

import torch
import torch.nn.functional as F

from course_lib.masks import raster_mask

from .helpers import call, close, fail, fresh_generator, isolated, no_delegation, passed

LOG_SPACE = (
    "compute log(sigmoid(b) - sigmoid(a)) as logsigmoid(b) + logsigmoid(-a) + log(-expm1(a - b)), "
    "and log(1 - sigmoid(a)) as logsigmoid(-a)"
)


# -- references and plausible mistakes, all float64 ------------------------------------------------------------------------------------------------------------
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
    ref = reference(m, ls, k)
    unit = torch.linspace(0.0, 1.0, k, dtype=torch.float64)
    z = (torch.linspace(-1.0, 1.0, k, dtype=torch.float64) - m[..., None]) * torch.exp(-ls)[..., None]
    log_density = -z - ls[..., None] - 2 * F.softplus(-z)  # log of the logistic pdf at the centres
    no_tails = _bins(*_edges(m, ls, k), tails=False)
    return {
        "probabilities": (ref.exp(), "you returned probabilities, not log-probabilities", "return the log of each level's probability"),
        "no tails": (no_tails, "the edge levels 0 and K-1 lack their tails: the probabilities sum to less than 1",
                     "give level 0 everything below its upper edge (logsigmoid(hi)) and level K-1 everything above its lower edge"),
        "renormalised": (no_tails.log_softmax(-1), "the edge levels lack their tails (renormalising the bins does not replace them)",
                         "give level 0 everything below its upper edge and level K-1 everything above its lower edge"),
        "half-width 1/K": (_bins(*_edges(m, ls, k, half=1.0 / k)), "the bins have the wrong width",
                           "levels are 2/(K-1) apart on [-1, 1], so each bin reaches d = 1/(K-1) to either side"),
        "half-width 2/(K-1)": (_bins(*_edges(m, ls, k, half=2.0 / (k - 1))), "the bins have the wrong width",
                               "levels are 2/(K-1) apart on [-1, 1], so each bin reaches d = 1/(K-1) to either side"),
        "levels on [0, 1]": (_bins(*_edges(m, ls, k, centres=unit, half=0.5 / (k - 1))), "the levels sit on [0, 1], not on [-1, 1]",
                             "level k sits at x_k = 2k/(K-1) - 1"),
        "levels on [0, 1], wide bins": (_bins(*_edges(m, ls, k, centres=unit)), "the levels sit on [0, 1], not on [-1, 1]",
                                        "level k sits at x_k = 2k/(K-1) - 1"),
        "log-scale as scale": (_bins(*_edges(m, ls, k, inv_s=1 / ls)), "the log-scale was used as the scale",
                               "the scale is s = exp(log_scale)"),
        "multiplied by the scale": (_bins(*_edges(m, -ls, k)), "the bin edges were multiplied by the scale instead of divided",
                                    "standardise as (x - mean) / s, i.e. multiply by exp(-log_scale)"),
        "density": (log_density + torch.log(torch.tensor(2.0 / (k - 1), dtype=torch.float64)),
                    "you used the density at each level's centre, not the probability mass of its bin",
                    "a bin's mass is a difference of two CDFs: sigmoid(upper edge) - sigmoid(lower edge)"),
        "mirrored": (reference(-m, ls, k), "the distribution is mirrored: its mass sits on the wrong side of the mean",
                     "standardise as (x - mean) / s, not (mean - x) / s"),
    }  # fmt: skip


def _diagnose(got, mean, log_scale, levels, what):
    """Fail with the closest plausible mistake, or with a generic message. An answer right wherever a level
    has a probability above 1e-3 (where float32 cancellation stays below the tolerance) has the formula
    right and the numerics wrong, so that comes first."""
    ref = reference(mean, log_scale, levels)
    likely = ref > -7.0
    if close(got.detach()[likely], ref[likely], rtol=1e-3, atol=1e-3):
        fail(f"{what}: your log-probabilities are right for likely levels but wrong for unlikely ones", LOG_SPACE)
    for variant, message, hint in _mistakes(mean, log_scale, levels).values():
        if close(got, variant, rtol=1e-3, atol=1e-3):
            fail(f"{what}: {message}", hint)
    fail(f"{what}: your log-probabilities differ from the reference",
         "bin edges x_k ± 1/(K-1) with x_k = 2k/(K-1) - 1, standardised by exp(log_scale); edge levels take the tails")  # fmt: skip


def _check_output(got, ref, what, name, shape_hint, finite_hint):
    if not torch.is_tensor(got):
        fail(f"{name} returned {type(got).__name__}, not a tensor", "return a torch tensor of log-probabilities")
    if tuple(got.shape) != tuple(ref.shape):
        fail(f"{what}: {name} returned shape {tuple(got.shape)}, expected {tuple(ref.shape)}", shape_hint)
    if not torch.isfinite(got.detach()).all():
        fail(f"{what}: some log-probabilities are -inf or NaN", finite_hint)


def _check_inputs_unchanged(inputs, originals, what, name):
    for given, original in zip(inputs, originals):
        if given.shape != original.shape or not torch.equal(given, original):
            fail(f"{what}: {name} changed its input tensors in place",
                 "build new tensors (x[..., None], -x, x - y) instead of in-place operations (unsqueeze_, neg_, -=)")  # fmt: skip


def _ok(got, ref):
    return torch.is_tensor(got) and tuple(got.shape) == tuple(ref.shape) and bool(torch.isfinite(got.detach()).all())


# -- task 1 ------------------------------------------------------------------------------------------------------------------------------------------------
@isolated
@no_delegation(
    "course_lib.logistic.mixture_log_probs",
    "course_lib.logistic.mixture_log_prob_at",
    "course_lib.logistic._log_bin_mass",
)
def check_discretized_logistic(discretized_logistic):
    g = fresh_generator()
    cases = [  # the first: positive log-scales keep every mistake finite, so it gets named
        ("7 levels, wide logistics", (3, 4), 7, 0.6, (0.3, 1.5)),
        ("5 levels, inputs of shape (2, 1, 3)", (2, 1, 3), 5, 0.9, (-2.5, -0.5)),
        ("256 levels", (2, 3), 256, 0.95, (-4.0, -1.0)),
        ("256 levels, a very narrow logistic far from most levels", (5,), 256, 0.8, (-7.0, -6.0)),
    ]
    for what, shape, levels, spread, (lo, hi) in cases:
        mean = ((torch.rand(shape, generator=g) * 2 - 1) * spread).float()
        log_scale = (lo + torch.rand(shape, generator=g) * (hi - lo)).float()
        ref = reference(mean, log_scale, levels)
        inputs = (mean.clone(), log_scale.clone())
        got = call(discretized_logistic, *inputs, levels)
        _check_inputs_unchanged(inputs, (mean, log_scale), what, "discretized_logistic")
        if _ok(got, ref):
            if close(got, ref, rtol=1e-4, atol=1e-4):
                continue
            _diagnose(got, mean, log_scale, levels, what)
        _check_output(
            got,
            ref,
            what,
            "discretized_logistic",
            "keep the input's shape and add the K levels as a new last dimension",
            LOG_SPACE,
        )
    return passed("discretized_logistic matches the reference at 5, 7 and 256 levels, narrow and wide logistics")


# -- task 2 ------------------------------------------------------------------------------------------------------------------------------------------------
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


@isolated
@no_delegation("course_lib.logistic.mixture_log_probs", "course_lib.logistic.mixture_log_prob_at")
def check_mixture(mixture):
    g = fresh_generator()
    cases = [
        ("3 components, 7 levels", (2, 3), 3, 7, (-2.0, -0.5)),
        ("1 component, inputs of shape (2, 1, 1)", (2, 1), 1, 5, (-2.0, -0.5)),
        ("4 components, 256 levels", (3,), 4, 256, (-4.0, -1.0)),
        ("2 narrow components, 256 levels", (2,), 2, 256, (-7.0, -6.0)),
    ]
    for what, shape, m, levels, (lo, hi) in cases:
        logit_pi = torch.randn(*shape, m, generator=g) * 2
        mean = torch.rand(*shape, m, generator=g) * 1.8 - 0.9
        log_scale = lo + torch.rand(*shape, m, generator=g) * (hi - lo)
        ref = reference_mixture(logit_pi, mean, log_scale, levels)
        inputs = (logit_pi.clone(), mean.clone(), log_scale.clone())
        got = call(mixture, *inputs, levels)
        _check_inputs_unchanged(inputs, (logit_pi, mean, log_scale), what, "mixture")
        if _ok(got, ref):
            if close(got, ref, rtol=1e-4, atol=1e-4):
                continue
            for variant, message, hint in _mixture_mistakes(logit_pi, mean, log_scale, levels).values():
                if close(got, variant, rtol=1e-3, atol=1e-3):
                    fail(f"{what}: {message}", hint)
            fail(f"{what}: your mixture's log-probabilities differ from the reference",
                 "check your discretized_logistic first (its check must pass), then logsumexp over the components "
                 "of log_softmax(logit_pi) + their log-probabilities")  # fmt: skip
        _check_output(got, ref, what, "mixture", "replace the last dimension (the M components) by the K levels",
                      "combine the components in log space with torch.logsumexp: exp() of log-probabilities near -1000 "
                      "is 0, and so is a sum of such probabilities")  # fmt: skip
    return passed("mixture matches the reference for 1 to 4 components at 5, 7 and 256 levels")


# -- task 3 ------------------------------------------------------------------------------------------------------------------------------------------------
def reference_centre_mask(in_channels, out_channels, data_channels, mask_type):
    """(out, in) centre-pixel mask of `course_lib.masks.raster_mask`: contiguous colour groups."""
    return raster_mask(1, mask_type, in_channels, out_channels, data_channels)[:, :, 0, 0]


def _centre_mistakes(n_in, n_out, groups, mask_type):
    other = "B" if mask_type == "A" else "A"

    def allowed(g_out, g_in):  # (out, in): the link rule of this mask type for the given group indices
        return ((g_out[:, None] > g_in[None, :]) if mask_type == "A" else (g_out[:, None] >= g_in[None, :])).float()

    block_in, block_out = torch.arange(n_in) * groups // n_in, torch.arange(n_out) * groups // n_out
    inter = allowed(torch.arange(n_out) % groups, torch.arange(n_in) % groups)
    reversed_order = allowed(groups - 1 - block_out, groups - 1 - block_in)
    return {
        "A and B swapped": (reference_centre_mask(n_in, n_out, groups, other), f"this is the centre of mask {other}, not mask {mask_type}",
                            "mask A allows strictly earlier colour groups (<), mask B also the same group (<=)"),
        "order reversed": (reversed_order, "the colour order is reversed (B -> G -> R)",
                           "output group g may see input groups before it (mask A) or up to it (mask B)"),
        "interleaved groups": (inter, "the channels are grouped by j % data_channels (interleaved), not in contiguous blocks",
                               "channel j of n belongs to group j * data_channels // n"),
        "all ones": (torch.ones(n_out, n_in), "every link is open: the output sees its own colour and later ones",
                     "compare the colour groups of input and output"),
    }  # fmt: skip


@isolated
@no_delegation("course_lib.masks.raster_mask", "course_lib.masks.channel_groups")
def check_centre_mask(centre_mask):
    cases = [
        (3, 8, 3, "A"),
        (3, 8, 3, "B"),
        (7, 10, 3, "B"),
        (10, 7, 3, "A"),
        (5, 4, 1, "A"),
        (5, 4, 1, "B"),
        (7, 9, 5, "A"),
    ]
    for n_in, n_out, groups, mask_type in cases:
        what = f"mask {mask_type}, {n_in} -> {n_out} channels, {groups} colour group{'s' * (groups > 1)}"
        ref = reference_centre_mask(n_in, n_out, groups, mask_type)
        got = call(centre_mask, n_in, n_out, groups, mask_type)
        if not torch.is_tensor(got):
            fail(f"centre_mask returned {type(got).__name__}, not a tensor", "return a float tensor of ones and zeros")
        if not got.is_floating_point():
            fail(
                f"centre_mask returned a {got.dtype} tensor, not a float one",
                "return the mask as ones and zeros: .float()",
            )
        if tuple(got.shape) == (n_in, n_out) and n_in != n_out and torch.equal(got.float(), ref.T):
            fail(
                f"{what}: rows and columns are swapped", "return shape (out_channels, in_channels), like a conv weight"
            )
        if tuple(got.shape) != (n_out, n_in):
            fail(
                f"{what}: shape {tuple(got.shape)}, expected {(n_out, n_in)}",
                "rows are output channels, columns input channels",
            )
        if torch.equal(got.float(), ref):
            continue
        for variant, message, hint in _centre_mistakes(n_in, n_out, groups, mask_type).values():
            if torch.equal(got.float(), variant.float()):
                fail(f"{what}: {message}", hint)
        fail(f"{what}: the mask differs from the reference", "channel j of n is in group j * data_channels // n; "
             "mask A: group(in) < group(out), mask B: group(in) <= group(out)")  # fmt: skip
    return passed("centre_mask matches masks A and B for colour and grey layers, even and uneven channel counts")
