"""Output heads: what the numbers of a model's last layer mean.

A model's last 1x1 convolution gives K' numbers per sub-pixel; the head says which distribution over the
sub-pixel's K levels they describe:

    head                         levels   K' numbers per sub-pixel        the distribution
    BernoulliHead                K = 2    1: the logit of P(x = 1)        P(1) = sigmoid(logit)
    SoftmaxHead ("softmax")      K > 2    K: one logit per level          P(k) = softmax(logits)_k
    LogisticMixtureHead          K > 2    3M: a mixture of M logistics    P(k) = mass of level k's bin
      ("logistic")                                                        (`logistic.py`)

Every head turns a network output (B, C*K', H, W) into logits in one layout, so that H and W stay the
last two dimensions and `F.cross_entropy(logits, x)` works directly:
    K == 2:  (B, C, H, W)      one Bernoulli logit per sub-pixel
    K  > 2:  (B, K, C, H, W)   K-way categorical logits per sub-pixel (the mixture's K log-probabilities)

`log_prob_from_logits` scores images from such logits; `probabilities` and `draw` sample one sub-pixel
from them. A head's own `log_prob(out, x)` scores images straight from the network output: for the mixture
only the observed level's bin, K times less work than all K log-probabilities.
"""

import torch
import torch.nn.functional as F

from .errors import CourseError
from .logistic import mixture_log_prob_at, mixture_log_probs

HEADS = ("softmax", "logistic")  # the choices for K > 2; K = 2 always has the Bernoulli head


# -- scoring images from logits ----------------------------------------------------------------------
def log_prob_from_logits(logits, x):
    """Log-likelihood in nats of each image, shape (B,), in float32 (also under autocast).

    logits: (B, C, H, W) Bernoulli logits, or (B, K, C, H, W) categorical logits.
    x: (B, C, H, W) integer levels (0/1 for Bernoulli, 0..K-1 for categorical).
    """
    if logits.dim() == 4:
        per_dim = -F.binary_cross_entropy_with_logits(logits.float(), x.float(), reduction="none")
    else:
        per_dim = -F.cross_entropy(logits.float(), x.long(), reduction="none")
    return per_dim.flatten(1).sum(1)


# -- sampling one sub-pixel from logits --------------------------------------------------------------
def probabilities(logits, temperature=1.0):
    """Distribution of one sub-pixel for every image from its logits: (B,) logits -> (B,) P(x=1),
    (B, K) logits -> (B, K) probabilities. Temperature divides the logits *before* sigmoid / softmax."""
    logits = logits.float() if temperature == 1 else logits.float() / temperature  # dividing by 1 changes nothing
    return torch.sigmoid(logits) if logits.dim() == 1 else torch.softmax(logits, dim=1)


def distribution_at(logits, i, j, c, temperature=1.0):
    """Probabilities of sub-pixel (c, i, j) for every image: (B,) P(x=1) for Bernoulli logits
    (B, C, H, W), or (B, K) for categorical logits (B, K, C, H, W)."""
    if logits.dim() == 4:
        return probabilities(logits[:, c, i, j], temperature)
    return probabilities(logits[:, :, c, i, j], temperature)


def draw(probs, generator=None):
    """Draw one integer level per image from `probabilities`' output. Returns (B,) int64."""
    if probs.dim() == 1:
        return torch.bernoulli(probs, generator=generator).long()
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


# -- the heads -------------------------------------------------------------------------------------
class BernoulliHead:
    """Binary images: one number per sub-pixel, the logit of P(x = 1). The output is already the logits."""

    outputs_per_channel = 1
    scores_itself = False  # scoring the logits is as cheap as it gets

    def __init__(self, levels=2):
        self.levels = levels

    def logits(self, out):
        """(B, C, H, W) network output -> (B, C, H, W) Bernoulli logits: the same tensor."""
        return out

    def channel_logits(self, out, c):
        """One position's output (B, C*K') -> the logits of channel c: (B,) here, (B, K) for K > 2."""
        k = self.outputs_per_channel
        return out[:, c] if k == 1 else out[:, c * k : (c + 1) * k]

    def log_prob(self, out, x):
        """(B, C*K', H, W) network output and images x (B, C, H, W) -> log-likelihood in nats, (B,), float32."""
        return log_prob_from_logits(self.logits(out), x)


class SoftmaxHead(BernoulliHead):
    """K levels: one logit per level and sub-pixel, P(k) = softmax(logits)_k."""

    def __init__(self, levels):
        self.levels = self.outputs_per_channel = int(levels)

    def logits(self, out):
        """(B, C*K, H, W) network output -> (B, K, C, H, W) categorical logits."""
        b, ck, h, w = out.shape
        k = self.outputs_per_channel
        return out.view(b, ck // k, k, h, w).transpose(1, 2)


class LogisticMixtureHead(BernoulliHead):
    """K levels from 3M numbers per sub-pixel (mixture logits, means, log-scales of M logistics): level k
    gets the mixture's probability mass on its bin (`logistic.py`). Its logits are the K log-probabilities."""

    scores_itself = True  # `log_prob` reads one bin per sub-pixel instead of decoding all K

    def __init__(self, levels, mixtures):
        self.levels = int(levels)
        self.outputs_per_channel = 3 * int(mixtures)

    def params(self, out):
        """(B, C*3M, H, W) network output -> mixture parameters (B, C, H, W, 3M)."""
        b, c3m, h, w = out.shape
        k = self.outputs_per_channel
        return out.view(b, c3m // k, k, h, w).permute(0, 1, 3, 4, 2)

    def logits(self, out):
        """(B, C*3M, H, W) network output -> (B, K, C, H, W) log-probabilities of the K levels."""
        return mixture_log_probs(self.params(out), self.levels).permute(0, 4, 1, 2, 3)

    def channel_logits(self, out, c):
        """One position's output (B, C*3M) -> the K log-probabilities of channel c, (B, K)."""
        return mixture_log_probs(super().channel_logits(out, c), self.levels)

    def log_prob(self, out, x):
        """(B, C*3M, H, W) network output and images x (B, C, H, W) -> log-likelihood in nats, (B,), float32,
        from each sub-pixel's observed level alone."""
        return mixture_log_prob_at(self.params(out.float()), x, self.levels).flatten(1).sum(1)


def make_head(levels, head="softmax", mixtures=5):
    """The head for K = `levels` (2..256): Bernoulli for K = 2, else `head` ("softmax" or "logistic", the
    latter with `mixtures` logistic components)."""
    if levels < 2 or levels > 256:
        raise CourseError(f"levels={levels} is not supported; use 2 (binary) up to 256 levels.")
    if head not in HEADS:
        raise CourseError(f"head={head!r} is not known; use 'softmax' or 'logistic'.")
    if head == "logistic" and (levels == 2 or int(mixtures) < 1):
        raise CourseError(
            "head='logistic' needs levels > 2 and mixtures >= 1 (binary images use a Bernoulli output); "
            f"got levels={levels}, mixtures={mixtures}."
        )
    if levels == 2:
        return BernoulliHead()
    return SoftmaxHead(levels) if head == "softmax" else LogisticMixtureHead(levels, mixtures)
