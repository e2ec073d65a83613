"""Ancestral sampling: draw pixels one at a time in raster order (and channel by channel inside a
pixel), each from the model's conditional distribution given everything drawn so far.

`sample(...)` is the one entry point; `method` selects the sampler:
    "naive":  one full forward pass per sub-pixel (H*W*C passes): simple, works for any model.
    "cached": keeps every layer's activations and computes only what each new pixel changes
              (`cached_sampling`); exact, and tens to hundreds of times faster.
    "auto":   (default) "cached" where the model supports it, else "naive".
Both draw the same random numbers in the same order, so with a seed they give the same images.

Threads: a cached step is a few dozen tiny operations, which several CPU threads do not speed up and
which become many times slower on a shared machine (a classroom server, a test run beside it), where
threads wait for a core at every operation. So on the CPU the cached sampler runs its per-pixel steps on
one thread, and its once-per-row work (a few larger convolutions) on your thread count, but on no more
threads than there are idle cores at the start of that row (`row_threads`); `threads=n` uses n threads
for all of it. Your `torch.get_num_threads()` setting is restored when sampling ends. Measured in the README.
"""

import os

import torch
from tqdm.auto import tqdm

from .cached_sampling import make_cache, supports_cache
from .device import model_device
from .errors import CourseError
from .models import eval_mode


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


LOADAVG = "/proc/loadavg"  # Linux: "1.02 0.80 0.61 2/153 4242"; the fourth field is running/existing tasks


def idle_cores():
    """How many of the CPU cores this process may use no other task wants right now: those cores minus
    the runnable tasks besides this one that Linux reports (the fourth field of /proc/loadavg, read at
    this moment, not an average); at least 1. None where the file does not exist (macOS, Windows)."""
    try:
        with open(LOADAVG) as f:
            running = int(f.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None
    cores = len(os.sched_getaffinity(0))  # the cores this process (pid 0: itself) may run on; Linux, as the file
    return max(1, cores - max(running - 1, 0))


def _use_threads(n):
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def row_threads(user_threads):
    """Threads for the cached sampler's once-per-row convolutions: your count, but no more than the cores
    that are idle right now (`idle_cores`), so that no thread waits for a core another process holds."""
    idle = idle_cores()
    return user_threads if idle is None else min(user_threads, idle)


@torch.no_grad()
def sample_cached(model, x, known, labels, temperature, generator, progress=False, threads=None):
    """Fill the unknown entries of x (B, C, H, W) in raster order like `sample_naive`, but with a
    cache of activations (`cached_sampling.make_cache`): one row of the vertical stack per row, one
    position of every layer per sub-pixel. Same draws, in the same order, as `sample_naive`.
    threads: None runs the steps on one CPU thread and the rows on the current thread count, limited to
    the idle cores (`row_threads`); an int uses that many threads for both. The caller's count is restored."""
    _, c, h, w = x.shape
    cache = make_cache(model, x, labels)
    user_threads = torch.get_num_threads()
    automatic = threads is None and x.device.type == "cpu"  # else: the caller's count, or the GPU's
    step_threads = 1 if automatic else threads or user_threads
    try:
        for i in tqdm(range(h), disable=not progress, desc="rows", leave=False):
            todo = ~known[:, :, i]  # (B, C, W): sub-pixels to draw in this row
            some, every = todo.any(0).tolist(), todo.all(0).tolist()  # [C][W] flags, read once per row
            _use_threads(row_threads(user_threads) if automatic else step_threads)
            cache.start_row(i)
            if cache.skip_given_rows and not any(map(any, some)):
                continue
            _use_threads(step_threads)
            for j in range(w):
                for ch in range(c):
                    logits = cache.logits_at(j, ch)  # computed even where all are given: later pixels read it
                    if some[ch][j]:
                        value = draw(probabilities(logits, temperature), generator)
                        x[:, ch, i, j] = value if every[ch][j] else torch.where(todo[:, ch, j], value, x[:, ch, i, j])
    finally:
        torch.set_num_threads(user_threads)
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
def sample(
    model, n, *, temperature=1.0, labels=None, given=None, seed=None, method="auto", progress=False, threads=None
):
    """Draw `n` images (n, C, H, W) of integer levels from `model` (returned on the CPU).

    temperature: > 0; divides the logits (below 1: sharper, above 1: more random).
    labels: class index (int) or one per image, for class-conditional models.
    given: (values, known) to complete partial images: values (n, C, H, W) integer levels, known a
           boolean mask broadcastable to it; known entries are kept exactly.
    seed: makes the draw reproducible. The model is put in eval mode (and restored afterwards).
    method: "auto" (default: cached where possible), "cached" or "naive" (see the module docstring).
    threads: CPU threads for cached sampling; None (default) chooses (see the module docstring).
    """
    method = pick_method(model, method)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise CourseError(f"threads must be a positive whole number or None (automatic), got {threads!r}.")
    if not temperature > 0:
        raise CourseError(
            f"temperature must be positive, got {temperature}; use e.g. 1.0 (or 0.5 for sharper samples)."
        )
    device = model_device(model)
    generator = torch.Generator(device=device)
    generator.manual_seed(seed) if seed is not None else generator.seed()
    x, known, labels = _prepare(model, n, labels, given, device)
    with eval_mode(model):
        if method == "cached":
            x = sample_cached(model, x, known, labels, temperature, generator, progress, threads)
        else:
            x = sample_naive(model, x, known, labels, temperature, generator, progress)
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
