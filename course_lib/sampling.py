"""Ancestral sampling: draw pixels one at a time in raster order (and channel by channel inside a
pixel), each from the model's conditional distribution given everything drawn so far.

`sample(...)` is the one entry point; `method` selects the sampler:
    "naive":  one full forward pass per sub-pixel (H*W*C passes): simple, works for any model.
    "cached": keeps every layer's activations and computes only what each new pixel changes
              (`cached_sampling`); exact, and tens to hundreds of times faster.
    "auto":   (default) "cached" where the model supports it, else "naive".
Both draw the same random numbers in the same order, so with a seed they give the same images.
"""

import torch
from tqdm.auto import tqdm

from .cached_sampling import make_cache, supports_cache
from .device import model_device
from .errors import CourseError
from .models import eval_mode


def probabilities(logits, temperature=1.0):
    """Distribution of one sub-pixel for every image from its logits: (B,) logits -> (B,) P(x=1),
    (B, K) logits -> (B, K) probabilities. Temperature divides the logits *before* sigmoid / softmax."""
    if logits.dim() == 1:
        return torch.sigmoid(logits.float() / temperature)
    return torch.softmax(logits.float() / temperature, dim=1)


def distribution_at(logits, i, j, c, temperature=1.0):
    """Probabilities of sub-pixel (c, i, j) for every image: (B,) P(x=1) for Bernoulli logits
    (B, C, H, W), or (B, K) for categorical logits (B, K, C, H, W)."""
    if logits.dim() == 4:
        return probabilities(logits[:, c, i, j], temperature)
    return probabilities(logits[:, :, c, i, j], temperature)


def draw(probs, generator=None):
    """Draw one integer level per image from `distribution_at`'s output. Returns (B,) int64."""
    if probs.dim() == 1:
        return torch.bernoulli(probs, generator=generator).long()
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def _prepare(model, n, labels, given, device):
    c, h, w = model.image_shape
    x = torch.zeros(n, c, h, w, dtype=torch.long, device=device)
    known = torch.zeros(n, c, h, w, dtype=torch.bool, device=device)
    if given is not None:
        values, mask = given
        values = torch.as_tensor(values).to(device).long()
        if tuple(values.shape) != (n, c, h, w):
            raise CourseError(
                f"given images have shape {tuple(values.shape)} but sampling makes {(n, c, h, w)}; "
                f"pass n images of the model's size."
            )
        known = torch.as_tensor(mask).to(device).bool().expand(n, c, h, w).clone()
        x = torch.where(known, values, x)
    if model.num_classes is not None:
        if labels is None:
            raise CourseError("This model is class-conditional; pass labels=... (an int or one class per image).")
        labels = torch.as_tensor(labels, device=device).long().expand(n).clone()
        if labels.min() < 0 or labels.max() >= model.num_classes:
            raise CourseError(f"labels must lie in 0..{model.num_classes - 1}.")
    elif labels is not None:
        raise CourseError("This model is unconditional; drop labels= or train a model with num_classes.")
    return x, known, labels


@torch.no_grad()
def sample_naive(model, x, known, labels, temperature, generator, progress=False):
    """Fill the unknown entries of x (B, C, H, W) in raster order with one full forward pass per
    sub-pixel: H*W*C passes. Known entries are never changed."""
    _, c, h, w = x.shape
    for i in tqdm(range(h), disable=not progress, desc="rows", leave=False):
        for j in range(w):
            for ch in range(c):
                todo = ~known[:, ch, i, j]
                if not todo.any():
                    continue  # every image already has this sub-pixel: skip the forward pass
                probs = distribution_at(model(x, labels), i, j, ch, temperature)
                x[:, ch, i, j] = torch.where(todo, draw(probs, generator), x[:, ch, i, j])
    return x


@torch.no_grad()
def sample_cached(model, x, known, labels, temperature, generator, progress=False):
    """Fill the unknown entries of x (B, C, H, W) in raster order like `sample_naive`, but with a
    cache of activations (`cached_sampling.make_cache`): one row of the vertical stack per row, one
    position of every layer per sub-pixel. Same draws, in the same order, as `sample_naive`."""
    _, c, h, w = x.shape
    cache = make_cache(model, x, labels)
    for i in tqdm(range(h), disable=not progress, desc="rows", leave=False):
        cache.start_row(i)
        if cache.skip_given_rows and known[:, :, i].all():
            continue
        for j in range(w):
            for ch in range(c):
                logits = cache.logits_at(j, ch)  # computed even when given: later pixels read the cache
                todo = ~known[:, ch, i, j]
                if not todo.any():
                    continue
                probs = probabilities(logits, temperature)
                x[:, ch, i, j] = torch.where(todo, draw(probs, generator), x[:, ch, i, j])
    return x


SAMPLERS = {"naive": sample_naive, "cached": sample_cached}


def pick_method(model, method="auto"):
    """The sampler `sample` uses: `method` itself, or for "auto" "cached" if the model supports it."""
    if method == "auto":
        return "cached" if supports_cache(model) else "naive"
    if method not in SAMPLERS:
        raise CourseError(f"Unknown sampling method {method!r}; choose one of: auto, {', '.join(SAMPLERS)}.")
    return method


@torch.no_grad()
def sample(model, n, *, temperature=1.0, labels=None, given=None, seed=None, method="auto", progress=False):
    """Draw `n` images (n, C, H, W) of integer levels from `model` (returned on the CPU).

    temperature: > 0; divides the logits (below 1: sharper, above 1: more random).
    labels: class index (int) or one per image, for class-conditional models.
    given: (values, known) to complete partial images: values (n, C, H, W) integer levels, known a
           boolean mask broadcastable to it; known entries are kept exactly.
    seed: makes the draw reproducible. The model is put in eval mode (and restored afterwards).
    method: "auto" (default: cached where possible), "cached" or "naive" (see the module docstring).
    """
    method = pick_method(model, method)
    if not temperature > 0:
        raise CourseError(
            f"temperature must be positive, got {temperature}; use e.g. 1.0 (or 0.5 for sharper samples)."
        )
    device = model_device(model)
    generator = torch.Generator(device=device)
    generator.manual_seed(seed) if seed is not None else generator.seed()
    x, known, labels = _prepare(model, n, labels, given, device)
    with eval_mode(model):
        x = SAMPLERS[method](model, x, known, labels, temperature, generator, progress)
    return x.cpu()


def occlude(images, region="bottom"):
    """Build `given` for completion: keep part of `images` (B, C, H, W) and hide the rest.

    region: "bottom" hides the bottom half, "right" the right half, "box" a centred square of half
    the size. Returns (images, known) with known a (1, 1, H, W) boolean mask, True where kept.
    """
    _, _, h, w = images.shape
    known = torch.ones(1, 1, h, w, dtype=torch.bool)
    if region == "bottom":
        known[..., h // 2 :, :] = False
    elif region == "right":
        known[..., :, w // 2 :] = False
    elif region == "box":
        known[..., h // 4 : h // 4 + h // 2, w // 4 : w // 4 + w // 2] = False
    else:
        raise CourseError(f"Unknown region {region!r}; use 'bottom', 'right' or 'box'.")
    return images, known
