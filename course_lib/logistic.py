"""The discretized logistic mixture (PixelCNN++, Salimans et al. 2017): an output head that knows that
intensity 242 lies next to 243.

A softmax over K levels learns every level's probability separately. The mixture instead models a
sub-pixel's intensity as a continuous variable on [-1, 1] with a density that is a mixture of M logistic
distributions, and gives level k the probability mass of its bin:

    centre of level k:  x_k = 2k / (K - 1) - 1,   bin [x_k - d, x_k + d] with half-width d = 1 / (K - 1)
    P(k) = sum_m pi_m * (sigmoid((x_k + d - mu_m) / s_m) - sigmoid((x_k - d - mu_m) / s_m))

The two edge levels take the tails: level 0 gets everything below x_0 + d and level K-1 everything above
x_{K-1} - d, so the K probabilities sum to exactly 1. Everything is computed from the K-1 bin boundaries
in log space (no difference of two nearly equal probabilities), so far tails and narrow components stay
finite. Per sub-pixel the head needs 3M numbers (mixture
logits, means, log-scales) instead of K, whatever K is.

`mixture_log_probs` turns those 3M numbers into K log-probabilities. A model with this head returns
them in the place of categorical logits (log-softmax leaves normalised log-probabilities unchanged), so
the likelihood, both samplers and everything else in the course work with it unchanged. Training and
scoring need only the observed level's probability: `mixture_log_prob_at` computes that one bin, K times
less work than all K.
"""

import torch
import torch.nn.functional as F

MIN_LOG_SCALE = -7.0  # s >= e^-7: a bin of width 2/255 is then at most about 8.6 scales wide


def split_params(params):
    """(..., 3M) -> mixture logits, means, log-scales, each (..., M); means in [-1, 1] (tanh), log-scales
    clamped below at MIN_LOG_SCALE."""
    logit_pi, mu, log_s = params.chunk(3, dim=-1)
    return logit_pi, torch.tanh(mu), log_s.clamp(min=MIN_LOG_SCALE)


def _log_bin_mass(lo, hi, gap):
    """log(sigmoid(hi) - sigmoid(lo)) for hi = lo + gap, gap > 0, computed stably in log space:
    sigmoid(hi) - sigmoid(lo) = sigmoid(hi) * sigmoid(-lo) * (1 - exp(-gap))."""
    return F.logsigmoid(hi) + F.logsigmoid(-lo) + torch.log(-torch.expm1(-gap))


def mixture_log_probs(params, levels):
    """Log-probabilities of the K = `levels` intensity levels, (..., 3M) -> (..., K); exp() of the last
    dimension sums to 1 (up to rounding)."""
    logit_pi, mu, log_s = split_params(params)
    inv_s = torch.exp(-log_s)[..., None, :]  # (..., 1, M)
    half = 1.0 / (levels - 1)
    bounds = torch.linspace(-1.0 + half, 1.0 - half, levels - 1, dtype=params.dtype, device=params.device)
    z = (bounds[:, None] - mu[..., None, :]) * inv_s  # (..., K-1, M): standardised bin boundaries
    log_mass = torch.cat(  # (..., K, M): log P(level | component)
        [
            F.logsigmoid(z[..., :1, :]),  # level 0: everything below its upper boundary
            _log_bin_mass(z[..., :-1, :], z[..., 1:, :], 2 * half * inv_s),  # levels 1..K-2
            F.logsigmoid(-z[..., -1:, :]),  # level K-1: everything above its lower boundary
        ],
        dim=-2,
    )
    return torch.logsumexp(log_mass + F.log_softmax(logit_pi, dim=-1)[..., None, :], dim=-1)


def mixture_log_prob_at(params, x, levels):
    """Log-probability of the observed levels only: params (..., 3M), x (...) integers 0..K-1 -> (...).
    The same numbers as mixture_log_probs(params, levels) at x, for one bin instead of K."""
    logit_pi, mu, log_s = split_params(params)
    inv_s = torch.exp(-log_s)  # (..., M)
    half = 1.0 / (levels - 1)
    centre = (x.to(params.dtype) * (2 * half) - 1.0)[..., None]  # (..., 1): x_k = 2k / (K - 1) - 1
    lo, hi = (centre - half - mu) * inv_s, (centre + half - mu) * inv_s  # standardised bin edges
    k = x[..., None]
    log_mass = torch.where(  # (..., M): log P(x | component); the edge levels take the tails
        k == 0,
        F.logsigmoid(hi),
        torch.where(k == levels - 1, F.logsigmoid(-lo), _log_bin_mass(lo, hi, 2 * half * inv_s)),
    )
    return torch.logsumexp(log_mass + F.log_softmax(logit_pi, dim=-1), dim=-1)
