"""Causality checked with gradients: which inputs can change which outputs.

For an autoregressive model, the logits of sub-pixel (c, i, j) may depend only on inputs that come
before it in raster-then-channel order. We measure dependencies with the exact Jacobian in float64
on a copy of the model: a masked path contributes exactly 0.0, so "non-zero" means "connected".
(Perturbing inputs and comparing outputs gives false alarms and misses; the Jacobian does not.)
"""

import copy

import torch


def _float64_copy(model):
    return copy.deepcopy(model).double().eval()


def _random_input(model, generator=None):
    c, h, w = model.image_shape
    x = torch.rand(1, c, h, w, dtype=torch.float64, generator=generator) * (model.levels - 1)
    labels = torch.zeros(1, dtype=torch.long) if model.num_classes else None
    return x, labels


def receptive_field(model, i, j, c=0, x=None, labels=None):
    """|d logits(c, i, j) / d input| summed over the output's K logits: a (C, H, W) float64 map.
    Non-zero entries are the inputs the output at (c, i, j) can see."""
    m = _float64_copy(model)
    if x is None:
        x, labels = _random_input(m)
    x = x.clone().double().requires_grad_(True)
    logits = m(x, labels)
    out = logits[0, c, i, j] if logits.dim() == 4 else logits[0, :, c, i, j]
    grads = [torch.autograd.grad(o, x, retain_graph=True)[0][0].abs() for o in out.reshape(-1)]
    return torch.stack(grads).sum(0)


def dependency_matrix(model, seed=0):
    """Boolean matrix (C*H*W outputs, C*H*W inputs), indices in raster-then-channel order
    ((i*W + j)*C + c): entry [o, k] is True when output o depends on input k."""
    m = _float64_copy(model)
    x, labels = _random_input(m, torch.Generator().manual_seed(seed))
    c, h, w = m.image_shape

    def f(inp):  # (1, C, H, W) Bernoulli or (1, K, C, H, W) categorical logits -> (K', C, H, W), K' = 1 or K
        return m(inp, labels).reshape(-1, c, h, w)

    jac = torch.autograd.functional.jacobian(f, x, vectorize=True)  # (K, C, H, W, 1, C, H, W)
    jac = jac.abs().sum(0)[:, :, :, 0]  # (C, H, W, C, H, W): outputs, then inputs
    jac = jac.permute(1, 2, 0, 4, 5, 3)  # (H, W, C, H, W, C): raster-then-channel order
    return jac.reshape(h * w * c, h * w * c) != 0


def causality_violations(model, seed=0):
    """List of (output, input) pairs, each (c, i, j), where an output depends on an input at or after
    it in raster-then-channel order. An empty list means the model is causal."""
    dep = dependency_matrix(model, seed)
    c, h, w = model.image_shape
    n = c * h * w
    at_or_after = torch.ones(n, n, dtype=torch.bool).triu()  # input index >= output index

    def unflat(k):  # raster-then-channel index -> (channel, row, column)
        return (k % c, k // c // w, k // c % w)

    return [(unflat(o), unflat(k)) for o, k in (dep & at_or_after).nonzero().tolist()]
