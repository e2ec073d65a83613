"""Likelihood in nats and bits per dimension, the independent-pixel baseline, and dataset evaluation.

Conventions: sum the negative log-likelihood over all D = C*H*W sub-pixels of an image, average over
images. bits/dim = (nats per image) / (D * ln 2).
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from .device import model_device
from .distributed import all_reduce_sum, world
from .heads import log_prob_from_logits  # noqa: F401 - lessons import it from here
from .models import eval_mode, log_likelihood


def nll(model, x, labels=None):
    """Negative log-likelihood of each image in nats, shape (B,): minus `log_likelihood` (models.py)."""
    return -log_likelihood(model, x, labels)


def bits_per_dim(nats_per_image, dims):
    """Convert nats per image (a float or tensor) into bits per dimension, D = `dims` = C*H*W."""
    return nats_per_image / (dims * math.log(2))


class IndependentPixelModel(nn.Module):
    """Baseline: every sub-pixel is an independent categorical (Bernoulli for 2 levels) with its own
    probabilities, fitted by counting on the training set (with `alpha` pseudo-counts per level).

    Its logits have the same layout as the autoregressive models', so `nll`, `evaluate` and
    `sample` work with it too (it ignores x and labels).
    """

    def __init__(self, image_shape, levels=2, alpha=1.0):
        super().__init__()
        self.image_shape, self.levels, self.alpha = tuple(image_shape), levels, alpha
        self.num_classes = None
        self.register_buffer("log_probs", torch.full((levels, *self.image_shape), -math.log(levels)))

    @classmethod
    def fit(cls, dataset, alpha=1.0):
        """Count level frequencies of every sub-pixel over all images of `dataset`."""
        model = cls(dataset.image_shape, dataset.levels, alpha)
        counts = torch.zeros(dataset.levels, *dataset.image_shape, dtype=torch.float64)
        for x, _ in DataLoader(dataset, batch_size=1000):
            counts += F.one_hot(x.long(), dataset.levels).sum(0).permute(3, 0, 1, 2).double()
        probs = (counts + alpha) / (counts.sum(0, keepdim=True) + alpha * dataset.levels)
        model.log_probs.copy_(probs.log().float())
        return model

    @property
    def probs(self):
        """Per-sub-pixel probabilities, shape (K, C, H, W)."""
        return self.log_probs.exp()

    def log_prob(self, x, labels=None):
        """Log-likelihood of each image in nats, shape (B,): `log_likelihood(self, x)`."""
        return log_likelihood(self, x, labels)

    def forward(self, x, labels=None):
        b = x.shape[0]
        if self.levels == 2:  # Bernoulli logit = log p(1) - log p(0)
            return (self.log_probs[1] - self.log_probs[0]).expand(b, *self.image_shape)
        return self.log_probs.expand(b, *self.log_probs.shape)


@torch.no_grad()
def evaluate(model, dataset, batch_size=256, device=None, distributed=False):
    """Average NLL over *every* image of `dataset` (no dropped last batch).

    distributed=True (inside a torchrun job): each process scores a disjoint slice of the images and
    the sums are added up, so every image counts exactly once.
    Returns {"nats": nats per image, "bpd": bits per dim, "n_images": count}.
    """
    device = device or model_device(model)
    rank, size, _ = world() if distributed else (0, 1, 0)
    total, count = 0.0, 0
    shard = Subset(dataset, range(rank, len(dataset), size))
    with eval_mode(model):
        for x, y in DataLoader(shard, batch_size=batch_size, shuffle=False, drop_last=False):
            x, y = x.to(device), y.to(device)
            labels = y if getattr(model, "num_classes", None) else None
            total += nll(model, x, labels).double().sum().item()
            count += x.shape[0]
    if distributed:
        total, count = all_reduce_sum(total, count, device=device)
    if count != len(dataset):
        raise RuntimeError(f"evaluation scored {count} of {len(dataset)} images; it must cover every image once")
    nats = total / count
    dims = math.prod(getattr(dataset, "image_shape", None) or dataset[0][0].shape)  # D = C*H*W
    return {"nats": nats, "bpd": bits_per_dim(nats, dims), "n_images": int(count)}
