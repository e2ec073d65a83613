"""Ancestral sampling: draw pixels one at a time in raster order (and channel by channel inside a
pixel), each from the model's conditional distribution given everything drawn so far.

`sample(...)` is the one entry point; `method` selects the sampler:
    "naive":  one full forward pass per sub-pixel (H*W*C passes): simple, works for any model.
    "cached": keeps every layer's activations and computes only what each new pixel changes
              (`cached_sampling`); exact, and tens to hundreds of times faster.
    "auto":   (default) "cached" where the model supports it, else "naive".
Both draw the same random numbers in the same order, so with a seed they give the same images.

Threads: a cached step is a few dozen tiny operations. On an idle CPU several threads help a little; on
a shared one (a classroom server, a test run beside it) threads that wait for a core make every tiny
operation slow. So on the CPU the cached sampler times a few steps with your thread count and with one
thread, now and then, and uses the faster (`ThreadChooser`); `threads=` fixes the count instead. Your
`torch.get_num_threads()` setting is restored when sampling ends.
"""

import statistics
import time

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


class ThreadChooser:
    """Chooses the CPU thread count for the cached sampler's steps by measuring, not guessing.

    options: the thread counts to compare, e.g. (2, 1). Every `every` rows, the first `probe` steps of the
    row run with each option in turn, timed one by one; the rest of the row and the following rows use
    the option with the smallest median step time. The load of a shared machine changes, hence the
    re-check. With one option there is nothing to measure. `clock` is the timer (tests pass a fake one).
    """

    def __init__(self, options, probe=3, every=7, clock=time.perf_counter):
        self.options, self.probe, self.every, self.clock = list(dict.fromkeys(options)), probe, every, clock
        self.current = self.options[0]
        self.times = {}
        self.chosen = []  # the thread count chosen at every decision, for inspection

    def plan(self, i, steps):
        """Thread count for each of the `steps` steps of row i: a probe at the start of every `every`-th row."""
        if len(self.options) == 1 or i % self.every or steps < self.probe * len(self.options):
            return [self.current] * steps
        self.times = {t: [] for t in self.options}
        probes = [t for t in self.options for _ in range(self.probe)]
        return probes + [None] * (steps - len(probes))  # None: the winner, decided after the probes

    def run(self, threads, step, *args):
        """Run `step(*args)` with `threads` (None: the current choice); time it if it is a probe."""
        if threads is None:
            if self.times:
                self.current = min(self.options, key=lambda t: statistics.median(self.times[t]))
                self.times = {}
                self.chosen.append(self.current)
            threads = self.current
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        if not self.times:  # not probing: run untimed
            return step(*args)
        start = self.clock()
        result = step(*args)
        self.times[threads].append(self.clock() - start)
        return result


@torch.no_grad()
def sample_cached(model, x, known, labels, temperature, generator, progress=False, threads=None):
    """Fill the unknown entries of x (B, C, H, W) in raster order like `sample_naive`, but with a
    cache of activations (`cached_sampling.make_cache`): one row of the vertical stack per row, one
    position of every layer per sub-pixel. Same draws, in the same order, as `sample_naive`.
    threads: None chooses between the current CPU thread count and 1 by timing (`ThreadChooser`); an
    int uses that many threads. The caller's thread count is restored at the end."""
    _, c, h, w = x.shape
    cache = make_cache(model, x, labels)
    user_threads = torch.get_num_threads()
    on_cpu = x.device.type == "cpu"
    chooser = ThreadChooser([threads] if threads else [user_threads, 1] if on_cpu else [user_threads])
    steps = [(j, ch) for j in range(w) for ch in range(c)]

    def step(i, j, ch):
        logits = cache.logits_at(j, ch)  # computed even when given: later pixels read the cache
        todo = ~known[:, ch, i, j]
        if todo.any():
            probs = probabilities(logits, temperature)
            x[:, ch, i, j] = torch.where(todo, draw(probs, generator), x[:, ch, i, j])

    try:
        for i in tqdm(range(h), disable=not progress, desc="rows", leave=False):
            cache.start_row(i)
            if cache.skip_given_rows and known[:, :, i].all():
                continue
            for (j, ch), n_threads in zip(steps, chooser.plan(i, len(steps))):
                chooser.run(n_threads, step, i, j, ch)
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
    threads: CPU threads for cached sampling; None (default) picks between your setting and 1 by timing.
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
