"""Ancestral sampling: draw pixels one at a time in raster order (and channel by channel inside a
pixel), each from the model's conditional distribution given everything drawn so far.

Read `sample_naive` first: it is the whole idea, one full forward pass per sub-pixel (H*W*C passes), and
works for any model. `sample_cached` draws the same sub-pixels from the same logits with the same random
numbers, so with a seed it gives the same images, but computes only what each new pixel changes (the
activation caches of `cached_sampling`): tens to hundreds of times faster. `sample(...)` is the one entry
point; its `method` picks the sampler: "naive", "cached", or "auto" (default: "cached" where the model
supports it, else "naive"). On the CPU the cached sampler chooses its own thread counts
(`device.sampling_threads`; measured in the README).

Classifier-free guidance (Ho & Salimans 2022): `sample(model, n, labels=y, guidance=w, unconditional=u)`
draws every sub-pixel from the logits (1 + w) * conditional - w * unconditional (`guide`), where the
conditional logits are `model`'s given y and the unconditional ones come from `u`, a model of p(x) of the
same images: a separate unconditional model, or the same network with its "no label" class (`null_label=`).
w = 0 is plain conditional sampling; w > 0 pushes each sub-pixel further in the direction the label moved it.
"""

import numbers
from contextlib import nullcontext
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from .cached_sampling import make_cache, supports_cache
from .device import model_device, sampling_threads
from .errors import CourseError
from .heads import distribution_at, draw, probabilities  # one sub-pixel's distribution and its draw
from .models import eval_mode


# -- the plain ancestral sampler ---------------------------------------------------------------------
@torch.no_grad()
def sample_naive(model, x, known, labels, temperature, generator, progress=False, guidance=None):
    """Fill the unknown entries of x (B, C, H, W) in raster order with one full forward pass per
    sub-pixel: H*W*C passes (twice that with `guidance`, a `Guidance`). Known entries are never changed."""
    _, c, h, w = x.shape
    for i in tqdm(range(h), disable=not progress, desc="rows", leave=False):
        for j in range(w):
            for ch in range(c):
                todo = ~known[:, ch, i, j]
                if not todo.any():
                    continue  # every image already has this sub-pixel: skip the forward pass
                logits = model(x, labels)
                if guidance is not None:
                    logits = guide(logits, guidance.model(x, guidance.labels), guidance.weight)
                probs = distribution_at(logits, i, j, ch, temperature)
                x[:, ch, i, j] = torch.where(todo, draw(probs, generator), x[:, ch, i, j])
    return x


# -- the same draws, with activation caches -----------------------------------------------------------
@torch.no_grad()
def sample_cached(model, x, known, labels, temperature, generator, progress=False, threads=None, guidance=None):
    """Fill the unknown entries of x (B, C, H, W) in raster order like `sample_naive`, but with a
    cache of activations (`cached_sampling.make_cache`): one row of the vertical stack per row, one
    position of every layer per sub-pixel. Same draws, in the same order, as `sample_naive`.
    threads: CPU threads, None to choose them (`device.sampling_threads`); the caller's count is restored.
    guidance: a `Guidance`, or None; its model gets a cache of its own over the same x, stepped in lockstep."""
    _, c, h, w = x.shape
    caches = [make_cache(model, x, labels)]
    if guidance is not None:
        caches.append(make_cache(guidance.model, x, guidance.labels))
    skip_given_rows = all(cache.skip_given_rows for cache in caches)
    with sampling_threads(x.device, threads) as policy:
        for i in tqdm(range(h), disable=not progress, desc="rows", leave=False):
            todo = ~known[:, :, i]  # (B, C, W): sub-pixels to draw in this row
            some, every = todo.any(0).tolist(), todo.all(0).tolist()  # [C][W] flags, read once per row
            policy.for_row()
            for cache in caches:
                cache.start_row(i)
            if skip_given_rows and not any(map(any, some)):
                continue
            policy.for_steps()
            for j in range(w):
                for ch in range(c):
                    logits = _logits_at(
                        caches, j, ch, guidance
                    )  # computed even where all are given: later pixels read it
                    if some[ch][j]:
                        value = draw(probabilities(logits, temperature), generator)
                        x[:, ch, i, j] = value if every[ch][j] else torch.where(todo[:, ch, j], value, x[:, ch, i, j])
    return x


def _logits_at(caches, j, ch, guidance):
    """The logits of sub-pixel (ch, row, j) from the model's cache, guided by the unconditional model's."""
    logits = caches[0].logits_at(j, ch)
    if guidance is not None:
        logits = guide(logits, caches[1].logits_at(j, ch), guidance.weight)
    return logits


SAMPLERS = {"naive": sample_naive, "cached": sample_cached}


def pick_method(model, method="auto", unconditional=None):
    """The sampler `sample` uses: `method` itself, or for "auto" "cached" if the model (and the
    unconditional model of guidance, if any) supports it."""
    if method == "auto":
        models = [model] if unconditional is None else [model, unconditional]
        return "cached" if all(map(supports_cache, models)) else "naive"
    if method not in SAMPLERS:
        raise CourseError(f"Unknown sampling method {method!r}; choose one of: auto, {', '.join(SAMPLERS)}.")
    return method


@torch.no_grad()
def sample(
    model,
    n,
    *,
    temperature=1.0,
    labels=None,
    given=None,
    seed=None,
    method="auto",
    progress=False,
    threads=None,
    guidance=0.0,
    unconditional=None,
    null_label=None,
):
    """Draw `n` images (n, C, H, W) of integer levels from `model` (returned on the CPU).

    temperature: > 0; divides the logits (below 1: sharper, above 1: more random).
    labels: class index (int) or one per image, for class-conditional models.
    given: (values, known) to complete partial images: values (n, C, H, W) integer levels, known a
           boolean mask broadcastable to it; known entries are kept exactly.
    seed: makes the draw reproducible. The model is put in eval mode (and restored afterwards).
    method: "auto" (default: cached where possible), "cached" or "naive" (see the module docstring).
    threads: CPU threads for cached sampling; None (default) chooses (see the module docstring).
    guidance: classifier-free guidance weight w >= 0 (default 0: plain sampling). Each sub-pixel's logits
              are `guide(conditional, unconditional, w)`, then divided by the temperature.
    unconditional: for guidance, a model of p(x) of the same images (shape, levels, device): a model without
              classes, or a class-conditional one (often `model` itself) read with its class `null_label`
              (an int: the class it learned as "no label"). At w = 0 it is checked but never run.
    """
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise CourseError(f"threads must be a positive whole number or None (automatic), got {threads!r}.")
    if not temperature > 0:
        raise CourseError(
            f"temperature must be positive, got {temperature}; use e.g. 1.0 (or 0.5 for sharper samples)."
        )
    device = model_device(model)
    guided = _guidance(model, guidance, unconditional, null_label, n, device)
    method = pick_method(model, method, guided.model if guided else None)
    generator = torch.Generator(device=device)
    generator.manual_seed(seed) if seed is not None else generator.seed()
    x, known, labels = _prepare(model, n, labels, given, device)
    with eval_mode(model), eval_mode(guided.model) if guided else nullcontext():
        if method == "cached":
            x = sample_cached(model, x, known, labels, temperature, generator, progress, threads, guided)
        else:
            x = sample_naive(model, x, known, labels, temperature, generator, progress, guided)
    return x.cpu()


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


# -- guidance and completion ------------------------------------------------------------------------
def guide(conditional, unconditional, weight):
    """Classifier-free guidance: the logits (1 + w) * conditional - w * unconditional, elementwise.

    conditional, unconditional: logits of the same shape, e.g. (B,) Bernoulli or (B, K) categorical logits of
    one sub-pixel, or a whole model output (B, C, H, W) / (B, K, C, H, W). Returns that shape. For a Bernoulli
    sub-pixel the log-odds become c + w (c - u): the label's effect on them, c - u, is multiplied by 1 + w.
    weight: w >= 0; w = 0 returns `conditional` itself (the unconditional logits are not read)."""
    if weight == 0:
        return conditional
    return (1 + weight) * conditional - weight * unconditional


class Guidance(NamedTuple):
    """What the samplers need for guidance: the unconditional model, its labels ((B,) null class, or None
    for a model without classes) and the weight w > 0."""

    model: object
    labels: torch.Tensor | None
    weight: float


def _guidance(model, weight, unconditional, null_label, n, device):
    """Check the guidance arguments of `sample`; the `Guidance` to use, or None for plain sampling (w = 0)."""
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not 0 <= weight < float("inf"):
        raise CourseError(f"guidance must be a number >= 0 (0: plain conditional sampling), got {weight!r}.")
    if unconditional is None:
        if weight != 0:
            raise CourseError(
                "guidance mixes the model with a model of p(x); pass unconditional=... (an unconditional model "
                "of the same images, or the same network with null_label=, its 'no label' class)."
            )
        if null_label is not None:
            raise CourseError("null_label= is the class of unconditional=...; pass that model too, or drop null_label.")
        return None
    _check_unconditional(model, unconditional, device)
    labels = _null_labels(unconditional, null_label, n, device)
    return Guidance(unconditional, labels, weight) if weight != 0 else None


def _check_unconditional(model, unconditional, device):
    """Stop with one sentence unless `unconditional` can guide `model`: same images, same device, and a
    class-conditional `model` to guide."""
    if model.num_classes is None:
        raise CourseError("guidance steers a class-conditional model towards labels=; this model has no classes.")
    if (tuple(unconditional.image_shape), unconditional.levels) != (tuple(model.image_shape), model.levels):
        raise CourseError(
            f"the unconditional model makes {tuple(unconditional.image_shape)} images with {unconditional.levels} "
            f"levels, the model {tuple(model.image_shape)} with {model.levels}; guide with a model of the same images."
        )
    if model_device(unconditional) != device:
        raise CourseError(
            f"the unconditional model is on {model_device(unconditional)}, the model on {device}; "
            f"move both to one device."
        )


def _null_labels(unconditional, null_label, n, device):
    """The labels to read `unconditional` with: None for a model without classes, else (n,) `null_label`."""
    if unconditional.num_classes is None:
        if null_label is not None:
            raise CourseError("the unconditional model has no classes; drop null_label=.")
        return None
    if isinstance(null_label, bool) or not isinstance(null_label, numbers.Integral):
        raise CourseError(
            f"unconditional= is class-conditional; pass null_label=, the class it learned as 'no label' "
            f"(an int in 0..{unconditional.num_classes - 1}), got {null_label!r}."
        )
    if not 0 <= null_label < unconditional.num_classes:
        raise CourseError(f"null_label must lie in 0..{unconditional.num_classes - 1}, got {null_label}.")
    return torch.full((n,), null_label, device=device)


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
