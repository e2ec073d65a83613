"""Shared by the model tests: a model's probabilities over a tiny world of images."""

import itertools

import torch


def total_probability(model, shape, levels) -> float:
    """The sum of exp(log_prob) over every image of `shape` (C, H, W) with `levels` levels: 1 for a model that
    is a distribution. Use a float64 model on a world small enough to list (levels ** (C*H*W) images)."""
    n = shape[0] * shape[1] * shape[2]
    images = torch.tensor(list(itertools.product(range(levels), repeat=n))).view(-1, *shape)
    with torch.no_grad():
        return model.log_prob(images).exp().sum().item()
