"""Tiny enumerable worlds: binary images so small (2x2, 3x3) that every one of the 2**D images can be
listed, so distributions, conditionals and divergences are computed exactly, with no sampling.

Conventions: an H x W binary image has D = H*W pixels numbered in raster order, k = i*W + j. Image
number n (0 <= n < 2**D) has pixel k equal to bit D-1-k of n (pixel 0 is the most significant bit),
so `joint.view((2,) * D)` is indexed by the pixels in raster order. A distribution over the world is a
float64 tensor of shape (2**D,) that sums to one. Everything is in nats.
"""

import math

import torch


def all_binary_images(h: int, w: int) -> torch.Tensor:
    """Every binary h x w image, shape (2**(h*w), h, w) int64; row n is image number n."""
    d = h * w
    n = torch.arange(2**d)
    bits = (n[:, None] >> torch.arange(d - 1, -1, -1)) & 1
    return bits.view(-1, h, w)


def index_of(images: torch.Tensor) -> torch.Tensor:
    """Image numbers (N,) int64 of binary images (N, h, w) or (N, 1, h, w); inverse of `all_binary_images`."""
    flat = images.reshape(images.shape[0], -1)
    index = torch.zeros(flat.shape[0], dtype=torch.long)
    for k in range(flat.shape[1]):  # pixel 0 ends up as the most significant bit
        index = index * 2 + flat[:, k].long()
    return index


def empirical_joint(images: torch.Tensor, alpha: float = 0.0) -> torch.Tensor:
    """Histogram of binary images (N, h, w) (or (N, 1, h, w)) over all 2**D images, with `alpha`
    pseudo-counts added to every image: (counts + alpha) / (N + alpha * 2**D), shape (2**D,) float64."""
    d = math.prod(images.shape[-2:])
    counts = torch.bincount(index_of(images), minlength=2**d).double()
    return (counts + alpha) / (counts.sum() + alpha * 2**d)


def marginal(joint: torch.Tensor, pixels) -> torch.Tensor:
    """Joint distribution of the listed pixels, shape (2,) * len(pixels), dimensions in the listed order."""
    d = int(math.log2(joint.numel()))
    pixels = [int(p) for p in pixels]
    cube = joint.view((2,) * d)
    others = [k for k in range(d) if k not in pixels]
    m = cube.sum(dim=others) if others else cube
    kept = sorted(pixels)
    return m.permute([kept.index(p) for p in pixels]) if pixels else m


def conditionals(joint: torch.Tensor, order=None, context=None) -> torch.Tensor:
    """Exact conditionals of `joint` along a pixel order, evaluated at every image of the world.

    Entry [n, t] is p(x_{o_t} = its value in image n | the values in image n of the pixels that come
    before o_t in `order`), shape (2**D, D) float64. `order`: a permutation of range(D), raster order
    if None. `context`: condition on only the last `context` earlier pixels of the order (0: no context,
    i.e. each pixel's marginal; None: all earlier pixels, the exact chain rule).
    Where the context itself has probability 0 the entry is 0 (so is the joint there).
    """
    d = int(math.log2(joint.numel()))
    order = list(range(d)) if order is None else [int(k) for k in order]
    assert sorted(order) == list(range(d)), "order must be a permutation of the pixels"
    bits = (torch.arange(2**d)[:, None] >> torch.arange(d - 1, -1, -1)) & 1  # (2**D, D)
    columns = []
    for t, k in enumerate(order):
        start = 0 if context is None else max(0, t - context)
        given = order[start:t]
        num = marginal(joint, given + [k])[tuple(bits[:, g] for g in given + [k])]
        den = marginal(joint, given)[tuple(bits[:, g] for g in given)] if given else torch.ones_like(num)
        columns.append(torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(num)))
    return torch.stack(columns, dim=1)


def autoregressive_joint(joint: torch.Tensor, order=None, context=None) -> torch.Tensor:
    """The distribution q(x) = prod_t p(x_{o_t} | context), shape (2**D,), built from the exact
    conditionals of `joint` (see `conditionals`). With context=None, q equals `joint` (the chain rule)."""
    return conditionals(joint, order, context).prod(dim=1)


def entropy(p: torch.Tensor) -> torch.Tensor:
    """H(p) = -sum p log p in nats (0 log 0 = 0)."""
    return -(p * p.clamp_min(1e-300).log()).where(p > 0, torch.zeros_like(p)).sum()


def cross_entropy(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """H(p, q) = -sum p log q in nats: the expected NLL under q of data drawn from p (inf if q misses p's support)."""
    terms = torch.where(p > 0, -p * q.log(), torch.zeros_like(p))
    return terms.sum()


def kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) = H(p, q) - H(p) >= 0 in nats, zero exactly when q = p."""
    return cross_entropy(p, q) - entropy(p)


def raster_order(h: int, w: int) -> list:
    """Pixel numbers row by row: [0, 1, ..., h*w - 1]."""
    return list(range(h * w))


def column_order(h: int, w: int) -> list:
    """Pixel numbers column by column (top to bottom, then left to right)."""
    return [i * w + j for j in range(w) for i in range(h)]
