"""Checks for lesson 04 (sampling): temperature on one sub-pixel's logits, the ancestral sampling loop, and
completion of partly given images.

Each check builds fresh tiny random models (a binary class-conditional Gated PixelCNN on 5x5 images and a
3-channel, 4-level one on 3x3 images), runs the learner's function with a seeded generator next to
`course_lib.sample` with the same seed, prints one verdict line and raises CheckFailed when something is
wrong. With the same generator and the same `draw` calls in the same order, a correct loop reproduces
`course_lib.sample` draw for draw, so any difference is a real difference. Known mistakes get their own
message: sampling in train mode or without no_grad, temperature applied after the softmax (or sigmoid),
temperature ignored or multiplied, one forward pass for all pixels, the wrong pixel or channel order,
given pixels overwritten during completion, given pixels pasted back only at the end.

The models include a 1-channel 256-level one (categorical although it has one channel), the model arrives
in train mode in some cases and in eval mode in others (its mode must be restored), the caller's tensors
must stay untouched, and device handling is tested on PyTorch's "meta" device (`helpers.probe_forward`).
"""

import functools

import torch

from course_lib.sampling import draw, sample

from .helpers import (
    ForwardSpy,
    call_explained,
    close,
    fail,
    fail_off_device,
    fresh_seed,
    isolated,
    meta_copy,
    no_delegation,
    passed,
    probe_forward,
    tiny_gated,
)


# -- helpers ------------------------------------------------------------------------------------------
def _describe(model, labels=None):
    c, h, w = model.image_shape
    kind = "binary" if model.levels == 2 else f"{model.levels}-level categorical"
    return f"{'class-conditional ' if labels is not None else ''}{kind} {c}x{h}x{w} model"


_LAYOUT_HINT = (
    "decide from model.levels, not from the number of channels: a binary model (model.levels == 2) gives logits "
    "(B, C, H, W), read logits[:, c, i, j]; a K-level one (B, K, C, H, W), even with one channel, "
    "read logits[:, :, c, i, j]"
)


def _error_hint(message, line, model):
    """A hint for an error of the learner's loop: the logits' layout, or the mask's shape, when they fit."""
    text, line = message.lower(), (line or "")
    if "known" in line or "given" in line or "dimension 1 with size 1" in text:
        return (
            "`known` may have one channel and one image, (1, 1, H, W): expand it to the images' shape before "
            "indexing it: known = known.expand_as(x)"
        )
    if "logits" in line or "too many indices" in text or "dimension 2 with size 1" in text or model.levels > 2:
        return _LAYOUT_HINT
    return "run your function on a small input in a new cell to see the full error"


def _run_watched(fn, model, *args, training=True, where="", **kwargs):
    """Call the learner's `fn` with `model` arriving in training (or eval) mode, watching every forward pass.
    An error names the model it happened with."""
    model.train(training)
    spy = ForwardSpy(model)
    try:
        result = call_explained(
            fn, model, *args, hint=lambda message, line: _error_hint(message, line, model), context=where, **kwargs
        )
    finally:
        spy.remove()
    return result, spy.calls


def _check_mode_and_grad(calls, name, model, what, arrived_training=True):
    """The classic sampling mistakes visible from the forward passes alone."""
    if not calls:
        fail(
            f"{name} never called the model",
            "call logits = model(x, labels) once per sub-pixel to draw: i over range(H), j over range(W), "
            "c over range(C)",
        )
    if any(c["training"] for c in calls):
        fail(
            f"{what} ran with the model in train mode",
            "call model.eval() before the loop: layers such as dropout and batch norm behave differently in "
            "train mode, and samples must come from the model you evaluate",
        )
    if any(c["grad"] for c in calls):
        fail(
            f"{what} ran without torch.no_grad(): every forward pass recorded a graph for backpropagation",
            "wrap the loop in `with torch.no_grad():` (or decorate the function with @torch.no_grad()): "
            "sampling needs no gradients, and keeping them costs memory and time",
        )
    if arrived_training and not model.training:
        fail(
            f"the model was left in eval mode after {what}",
            "remember was_training = model.training and call model.train(was_training) at the end",
        )
    if not arrived_training and model.training:
        fail(
            f"the model arrived in eval mode and was left in train mode after {what}: put it back into the mode "
            "it was in, not always into train mode",
            "was_training = model.training before model.eval(), and model.train(was_training) at the end",
        )


def _as_images(result, shape, name):
    """The learner's result as a CPU int64 tensor of `shape`, or a clear failure."""
    if not torch.is_tensor(result):
        fail(
            f"{name} returned {type(result).__name__}, not a tensor", f"return the images as a tensor of shape {shape}"
        )
    if tuple(result.shape) != tuple(shape):
        fail(
            f"{name} returned shape {tuple(result.shape)}, expected {tuple(shape)} (n, C, H, W)",
            "start from x = torch.zeros(n, C, H, W, dtype=torch.long) and fill it in place",
        )
    result = result.detach().cpu()
    if result.is_floating_point() and not torch.equal(result, result.round()):
        fail(f"{name} returned non-integer values", "store the drawn levels (0/1, or 0..K-1), not probabilities")
    if result.is_floating_point() or result.dtype == torch.bool:
        fail(
            f"{name} returned images of dtype {result.dtype}: integer levels are stored as integers (torch.long)",
            "start from x = torch.zeros(n, C, H, W, dtype=torch.long) (for completion: x = images.clone())",
        )
    return result.long()


def _sites(c, h, w, order):
    """Sub-pixel positions (channel, row, column) in the given order."""
    if order == "raster":
        return [(ch, i, j) for i in range(h) for j in range(w) for ch in range(c)]
    if order == "columns":
        return [(ch, i, j) for j in range(w) for i in range(h) for ch in range(c)]
    if order == "channels":
        return [(ch, i, j) for ch in range(c) for i in range(h) for j in range(w)]
    if order == "bgr":
        return [(ch, i, j) for i in range(h) for j in range(w) for ch in reversed(range(c))]
    raise ValueError(order)


def _variant_probs(logits, i, j, c, temperature, variant):
    """The distribution of one sub-pixel, as a correct or a known-buggy loop computes it."""
    if logits.dim() == 4:
        logit = logits[:, c, i, j].float()
        if variant == "after":
            return (torch.sigmoid(logit) / temperature).clamp(0, 1)
        return torch.sigmoid(logit / temperature if variant == "right" else logit * temperature)
    logit = logits[:, :, c, i, j].float()
    if variant == "after":  # probabilities divided by T: torch.multinomial renormalises them
        return torch.softmax(logit, dim=1) / temperature
    return torch.softmax(logit / temperature if variant == "right" else logit * temperature, dim=1)


@torch.no_grad()
def _variant_loop(
    model,
    images,
    known,
    labels,
    temperature,
    seed,
    *,
    order="raster",
    variant="right",
    skip_known=True,
    paste_at_end=False,
):
    """What a loop with a given (possibly buggy) structure draws, with a generator seeded by `seed`.
    skip_known: True skips a sub-pixel every image knows, False skips none, "any" skips one that any image
    knows (the hidden ones there keep the values passed in)."""
    g = torch.Generator().manual_seed(seed)  # (the same draws as torch's global generator after manual_seed(seed))
    n, c, h, w = images.shape
    known = known.expand(n, c, h, w)
    x = torch.zeros_like(images) if paste_at_end else torch.where(known, images, torch.zeros_like(images))
    if skip_known == "any":
        x = images.clone()
    was_training = model.training
    model.eval()
    for ch, i, j in _sites(c, h, w, order):
        todo = ~known[:, ch, i, j] if skip_known else torch.ones(n, dtype=torch.bool)
        if skip_known == "any" and known[:, ch, i, j].any():
            continue
        if not todo.any():
            continue
        value = draw(_variant_probs(model(x, labels), i, j, ch, temperature, variant), g)
        # a loop that draws known sub-pixels too still keeps the given values (unless it pastes them at the end)
        keep = todo if paste_at_end else ~known[:, ch, i, j]
        x[:, ch, i, j] = torch.where(keep, value, x[:, ch, i, j])
    model.train(was_training)
    return torch.where(known, images, x) if paste_at_end else x


# -- task 1: temperature_probs -------------------------------------------------------------------------
def _diagnose_probs(got, logits, temperature, kind):
    """Fail with the message of the known mistake that `got` matches (or a generic one)."""
    t = temperature
    if kind == "bernoulli":
        ref = torch.sigmoid(logits / t)
        variants = [
            (
                torch.sigmoid(logits) / t,
                "temperature was applied after the sigmoid: you divided the probability by T",
                "divide the logits by T first, then apply the sigmoid: torch.sigmoid(logits / T)",
            ),
            (
                torch.sigmoid(logits) ** (1 / t),
                "temperature was applied after the sigmoid: you raised the probability "
                "to the power 1/T without renormalising against P(x=0)",
                "divide the logits by T first, then apply the sigmoid: torch.sigmoid(logits / T)",
            ),
            (
                torch.sigmoid(logits),
                f"the temperature was ignored (T = {t:g} gave the probabilities of T = 1)",
                "divide the logits by the temperature before the sigmoid",
            ),
            (
                torch.sigmoid(logits * t),
                "you multiplied the logits by T instead of dividing them",
                "T < 1 must sharpen the distribution: use logits / T",
            ),
            (1 - ref, "you returned P(x = 0), not P(x = 1)", "the Bernoulli logit is log P(x=1) - log P(x=0)"),
            (logits / t, "you returned the scaled logits, not probabilities", "apply torch.sigmoid to logits / T"),
        ]
    else:
        ref = torch.softmax(logits / t, dim=1)
        variants = [
            (
                torch.softmax(logits, dim=1) / t,
                "temperature was applied after the softmax: the probabilities were "
                "divided by T, so they no longer sum to one",
                "divide the logits by T first, then take the softmax: torch.softmax(logits / T, dim=1)",
            ),
            (
                torch.softmax(logits, dim=1) ** (1 / t),
                "temperature was applied after the softmax: you raised the probabilities to the power 1/T without "
                "renormalising them, so they no longer sum to one",
                "divide the logits by T first, then take the softmax: torch.softmax(logits / T, dim=1)",
            ),
            (
                torch.softmax(logits, dim=1),
                f"the temperature had no effect (T = {t:g} gave the probabilities of T = 1); "
                "dividing the probabilities by T after the softmax and renormalising undoes it",
                "divide the logits by T before the softmax: torch.softmax(logits / T, dim=1)",
            ),
            (
                torch.softmax(logits * t, dim=1),
                "you multiplied the logits by T instead of dividing them",
                "T < 1 must sharpen the distribution: use logits / T",
            ),
            (
                torch.softmax(logits / t, dim=0),
                "the softmax ran over the images (dim 0), not over the K levels",
                "each row (one image) must sum to one: torch.softmax(logits / T, dim=1)",
            ),
            (
                torch.log_softmax(logits / t, dim=1),
                "you returned log-probabilities, not probabilities",
                "use torch.softmax, not log_softmax",
            ),
            (logits / t, "you returned the scaled logits, not probabilities", "apply torch.softmax(..., dim=1)"),
        ]
    for wrong, message, hint in variants:
        if close(got, wrong, rtol=1e-4, atol=1e-6):
            fail(message, hint)
    what = (
        "P(x = 1) for Bernoulli logits (B,)"
        if kind == "bernoulli"
        else "the probabilities for categorical logits (B, K)"
    )
    fail(
        f"temperature_probs gave wrong values for {what} at T = {t:g}",
        "divide the logits by T, then apply the sigmoid (Bernoulli, shape (B,)) or softmax over dim=1 (categorical, (B, K))",
    )
    return ref


def _probs_case(temperature_probs, logits, temperature, kind):
    got = call_explained(
        temperature_probs,
        logits.clone(),
        temperature,
        context=f"on {'Bernoulli' if kind == 'bernoulli' else 'categorical'} logits of shape {tuple(logits.shape)}",
        hint="tell the two kinds apart by the logits' shape: (B,) is Bernoulli, torch.sigmoid(logits / T); "
        "(B, K) is categorical, torch.softmax(logits / T, dim=1)",
    )
    if not torch.is_tensor(got):
        fail(f"temperature_probs returned {type(got).__name__}, not a tensor", "return a torch tensor")
    got = got.detach().double().cpu()
    ref = torch.sigmoid(logits / temperature) if kind == "bernoulli" else torch.softmax(logits / temperature, dim=1)
    if tuple(got.shape) != tuple(ref.shape):
        if kind == "bernoulli" and got.dim() == 2 and got.shape[0] == ref.shape[0] and got.shape[1] == 2:
            fail(
                "for Bernoulli logits (B,) you returned two probabilities per image",
                "return P(x = 1) only, shape (B,), as course_lib's draw expects",
            )
        fail(
            f"for {kind} logits of shape {tuple(logits.shape)} you returned shape {tuple(got.shape)}, "
            f"expected {tuple(ref.shape)}",
            "keep the logits' shape: sigmoid for (B,), softmax over dim=1 for (B, K)",
        )
    if not close(got, ref.double(), rtol=1e-4, atol=1e-6):
        _diagnose_probs(got, logits.double(), temperature, kind)


@isolated
@no_delegation("course_lib.sampling.probabilities", "course_lib.sampling.distribution_at")
def check_temperature_probs(temperature_probs):
    """temperature_probs(logits, temperature) -> P(x=1) (B,) for Bernoulli logits (B,), or (B, K) for (B, K)."""
    g = torch.Generator().manual_seed(fresh_seed())
    b, k = int(torch.randint(4, 9, (), generator=g)), int(torch.randint(3, 7, (), generator=g))
    bern = torch.randn(b, generator=g) * 3
    cat = torch.randn(b, k, generator=g) * 3
    _probs_case(temperature_probs, bern, 1.0, "bernoulli")
    for t in (0.5, 2.0):
        _probs_case(temperature_probs, bern, t, "bernoulli")
    _probs_case(temperature_probs, cat, 1.0, "categorical")
    for t in (0.5, 2.0):
        _probs_case(temperature_probs, cat, t, "categorical")
    passed(
        "temperature_probs: the logits are divided by T before the sigmoid (Bernoulli) or the softmax over the "
        "K levels (categorical), for T = 0.5, 1 and 2"
    )


# -- task 2: ancestral_sample ----------------------------------------------------------------------------
def _sample_variants(model, n, temperature, labels, seed):
    """[(samples, message, hint)] of the known buggy sampling loops (samples None where a variant cannot run)."""
    c, h, w = model.image_shape
    options = []
    if temperature != 1:
        if model.levels == 2:
            options.append(
                (
                    dict(variant="after"),
                    "temperature was applied after the sigmoid: your samples are those of probabilities divided by T",
                    "divide the logits by T before the sigmoid",
                )
            )
        options += [
            (
                dict(variant="times"),
                "your samples are those of logits multiplied by T, not divided by it",
                "use logits / T",
            ),
            (
                dict(variant="right", temp=1.0),
                f"your samples ignore the temperature (T = {temperature:g} drew the "
                "samples of T = 1; dividing the probabilities by T after the softmax does that too, since the draw "
                "renormalises them)",
                "divide the logits by T before the softmax / sigmoid (temperature_probs)",
            ),
        ]
    if h > 1:
        options.append(
            (
                dict(order="columns"),
                "you drew the pixels column by column; the masks define raster order",
                "loop over rows i (outer), then columns j, then channels c (innermost)",
            )
        )
    if c > 1:
        options.append(
            (
                dict(order="bgr"),
                "you drew the channels of each pixel in the order B, G, R; the masks define R, then G, then B",
                "loop over the channels forwards: for c in range(C)",
            )
        )
        options.append(
            (
                dict(order="channels"),
                "you drew one colour channel over the whole image before the next; "
                "inside a pixel the order is R, then G, then B",
                "make the channel loop the innermost: for i: for j: for c:",
            )
        )
    options.append(
        (
            dict(seed=seed + _GLOBAL_SEED),
            "your samples ignore the generator: the draws came from torch's global random generator",
            "pass the generator on to every draw: draw(probs, generator)",
        )
    )
    known = torch.zeros(1, 1, 1, 1, dtype=torch.bool)
    blank = torch.zeros(n, c, h, w, dtype=torch.long)
    variants = []
    for option, message, hint in options:
        option = dict(option)
        t = option.pop("temp", temperature)
        s = option.pop("seed", seed)
        try:
            wrong = _variant_loop(model, blank, known, labels, t, s, **option)
        except RuntimeError:  # e.g. probabilities above 1 for a variant: it cannot be what they did
            wrong = None
        variants.append((wrong, message, hint))
    return variants


def _distinct(outputs):
    """True when no two of the tensors (None ignored) are equal: every known bug is then recognisable."""
    outputs = [o for o in outputs if o is not None]
    return all(not torch.equal(a, b) for k, a in enumerate(outputs) for b in outputs[k + 1 :])


def _sample_setup(seed, n, temperature, labels, **model_config):
    """A model and a draw seed for which the correct samples, every known bug's samples and all zeros (draws
    never written) all differ."""
    for attempt in range(8):
        model = tiny_gated(seed + 1009 * attempt, sharpen=True, **model_config)
        draw_seed = seed + 1 + 1009 * attempt
        reference = sample(model, n, temperature=temperature, labels=labels, seed=draw_seed, method="naive")
        variants = [v[0] for v in _sample_variants(model, n, temperature, labels, draw_seed)]
        if _distinct([reference, torch.zeros_like(reference)] + variants):
            break
    return model, draw_seed


_GLOBAL_SEED = 7919  # torch's global generator is seeded with (the draw seed + this) before the learner's call


def _sample_case(ancestral_sample, model, n, temperature, labels, seed, training=True):
    c, h, w = model.image_shape
    reference = sample(model, n, temperature=temperature, labels=labels, seed=seed, method="naive")
    generator = torch.Generator().manual_seed(seed)
    where = f"({_describe(model, labels)}, T = {temperature:g})"
    torch.manual_seed(seed + _GLOBAL_SEED)  # (check_sample is @isolated: the caller's global state is restored)
    result, calls = _run_watched(
        ancestral_sample,
        model,
        n,
        temperature=temperature,
        labels=labels,
        generator=generator,
        training=training,
        where=where,
    )
    _check_mode_and_grad(calls, "ancestral_sample", model, "sampling", arrived_training=training)
    got = _as_images(result, (n, c, h, w), "ancestral_sample")
    d = c * h * w
    if len(calls) == 1:
        fail(
            f"all sub-pixels were drawn from a single forward pass {where}",
            "each sub-pixel depends on the ones drawn before it: call the model again after every draw "
            "(C*H*W passes), and write every drawn value into x before the next pass",
        )
    if torch.equal(got, reference):
        if len(calls) != d:
            fail(
                f"ancestral_sample made {len(calls)} forward passes, expected one per sub-pixel, C*H*W = {d} {where}",
                "one model call per (row, column, channel), inside the innermost loop",
            )
        return
    for wrong, message, hint in _sample_variants(model, n, temperature, labels, seed):
        if wrong is not None and torch.equal(got, wrong):
            fail(f"{message} {where}", hint)
    if len(calls) != d:
        fail(
            f"ancestral_sample made {len(calls)} forward passes, expected one per sub-pixel, C*H*W = {d} {where}",
            "one model call per (row, column, channel), inside the innermost loop",
        )
    if not got.any() and reference.any():
        fail(
            f"your samples are all zeros: the drawn values never reached x {where}",
            "write every draw into the image before the next forward pass: x[:, c, i, j] = draw(probs, generator)",
        )
    fail(
        f"your samples differ from ancestral sampling with the same generator {where}",
        "start from zeros; for i, j, c in raster order: logits = model(x, labels), probabilities of sub-pixel "
        "(c, i, j) with temperature_probs, x[:, c, i, j] = draw(probs, generator)",
    )


def _probe_sample_device(ancestral_sample, model):
    """Device handling without a GPU: the model on the meta device; the image must be made there."""
    meta = meta_copy(model)
    record = probe_forward(ancestral_sample, meta, meta, 2, temperature=1.0, generator=torch.Generator())
    fail_off_device(
        record,
        "ancestral_sample",
        "the image x",
        "create x on the model's device: torch.zeros(n, C, H, W, dtype=torch.long, "
        "device=next(model.parameters()).device)",
    )


@isolated
@no_delegation(
    "course_lib.sampling.sample",
    "course_lib.sampling.sample_naive",
    "course_lib.sampling.sample_cached",
    "course_lib.stepping.AncestralStepper",
    "course_lib.sampling.distribution_at",
    allowed=("course_lib.sampling.draw",),
)
def check_sample(ancestral_sample):
    """ancestral_sample(model, n, *, temperature=1.0, labels=None, generator=None) -> (n, C, H, W) levels."""
    seed = fresh_seed()
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (8,), generator=g)
    binary, draw_seed = _sample_setup(seed, 8, 1.5, labels, image_shape=(1, 5, 5), num_classes=3)
    _sample_case(ancestral_sample, binary, 8, 1.5, labels, draw_seed)
    # one channel, 256 levels (the lesson's tutorial model): categorical although it has a single channel
    grey, draw_seed = _sample_setup(
        seed + 3, 3, 0.8, None, image_shape=(1, 3, 3), levels=256, channels=6, dilations=(1,)
    )
    _sample_case(ancestral_sample, grey, 3, 0.8, None, draw_seed, training=False)
    colour, draw_seed = _sample_setup(
        seed + 2, 3, 0.6, None, image_shape=(3, 3, 3), levels=4, channels=6, dilations=(1,)
    )
    _sample_case(ancestral_sample, colour, 3, 0.6, None, draw_seed)
    _sample_case(ancestral_sample, colour, 2, 1.0, None, draw_seed + 1, training=False)
    _probe_sample_device(ancestral_sample, colour)
    passed(
        "ancestral_sample: eval mode and no_grad (the caller's mode restored), one forward pass per sub-pixel in "
        "raster order (R, G, B inside a pixel), temperature on the logits, on the model's device: draw for draw "
        "the same samples as course_lib.sample for binary, 1-channel 256-level and 3-channel 4-level models"
    )


# -- task 3: complete ----------------------------------------------------------------------------------
def _masks(n, h, w, g):
    """Per-image masks (n, 1, h, w), True where given: bottom half hidden, a box, the right half, random pixels."""
    known = torch.ones(n, 1, h, w, dtype=torch.bool)
    for k in range(n):
        kind = k % 4
        if kind == 0:
            known[k, :, h // 2 :, :] = False
        elif kind == 1:
            known[k, :, h // 4 : h // 4 + max(1, h // 2), w // 4 : w // 4 + max(1, w // 2)] = False
        elif kind == 2:
            known[k, :, :, w // 2 :] = False
        else:
            known[k] = torch.rand(1, h, w, generator=g) < 0.5
    return known


def _complete_variants(model, images, known, temperature, labels, seed):
    """{name: completions} of the known buggy completion loops."""
    loop = functools.partial(_variant_loop, model, images, known, labels)
    n, c, h, w = images.shape
    full = known.expand(n, c, h, w).flatten(2)
    variants = {"pasted": loop(temperature, seed, paste_at_end=True)}
    if full.all(0).any():  # some sub-pixel every image knows (without one, not skipping changes nothing)
        variants["no skip"] = loop(temperature, seed, skip_known=False)
        variants["pasted, no skip"] = loop(temperature, seed, skip_known=False, paste_at_end=True)
    if (full.any(0) & ~full.all(0)).any():  # some sub-pixel known to some images only
        variants["skip any"] = loop(temperature, seed, skip_known="any")
    if temperature != 1:
        variants["T = 1"] = loop(1.0, seed)
    return variants


def _complete_setup(seed, images, known, temperature, labels, **model_config):
    """A model and a draw seed for which the correct completions and every known bug's all differ."""
    for attempt in range(8):
        model = tiny_gated(seed + 1009 * attempt, sharpen=True, **model_config)
        draw_seed = seed + 1 + 1009 * attempt
        reference = sample(
            model,
            len(images),
            temperature=temperature,
            labels=labels,
            given=(images, known),
            seed=draw_seed,
            method="naive",
        )
        variants = _complete_variants(model, images, known, temperature, labels, draw_seed)
        if _distinct([reference, *variants.values()]):
            break
    return model, draw_seed


def _complete_case(complete, model, images, known, temperature, labels, seed, training=True):
    n, c, h, w = images.shape
    known_full = known.expand(n, c, h, w)
    reference = sample(
        model, n, temperature=temperature, labels=labels, given=(images, known), seed=seed, method="naive"
    )
    generator = torch.Generator().manual_seed(seed)
    shape = "one mask for all images" if known.shape[0] == 1 else "a different mask for every image"
    where = f"({c}x{h}x{w} {'binary' if model.levels == 2 else f'{model.levels}-level'} images, {shape}, T = {temperature:g})"
    given_images, given_known = images.clone(), known.clone()
    result, calls = _run_watched(
        complete,
        model,
        given_images,
        given_known,
        temperature=temperature,
        labels=labels,
        generator=generator,
        training=training,
        where=where,
    )
    for tensor, original, what in ((given_images, images, "images"), (given_known, known, "known")):
        if tensor.shape != original.shape or not torch.equal(tensor, original):
            fail(
                f"complete changed the caller's `{what}` tensor in place {where}",
                "work on a copy: x = images.clone() (and known = known.expand_as(x), which makes a view, "
                "never written to)",
            )
    todo_sites = sum(1 for ch, i, j in _sites(c, h, w, "raster") if not known_full[:, ch, i, j].all())
    if not calls and torch.is_tensor(result) and tuple(result.shape) == (n, c, h, w):
        got = result.detach().cpu()
        if torch.equal(got.long(), images):
            fail(
                f"complete never called the model and returned the images passed in, unchanged: no hidden "
                f"sub-pixel was drawn {where}",
                "visit every sub-pixel (i over range(H), j over range(W), c over range(C)); skip it only when every "
                "image knows it (known[:, c, i, j].all()), otherwise call the model and draw",
            )
        if torch.equal(got.long()[known_full], images[known_full]):
            fail(
                f"complete never called the model: the given pixels are kept, but the hidden ones were not drawn "
                f"from the model {where}",
                "for every sub-pixel that some image lacks: logits = model(x, labels), then "
                "draw(temperature_probs(...), generator)",
            )
        fail(
            f"complete never called the model, and the given pixels were not kept either {where}",
            "x = images.clone(); for every sub-pixel that some image lacks, call the model and draw; keep the "
            "given values with torch.where",
        )
    _check_mode_and_grad(calls, "complete", model, "completion", arrived_training=training)
    got = _as_images(result, (n, c, h, w), "complete")
    given_ok = torch.equal(got[known_full], images[known_full])
    if not given_ok:
        wrong = (got != images) & known_full
        if (got[known_full] == 0).all() and images[known_full].any():
            fail(
                f"the given pixels are missing from your completions (they are all 0) {where}",
                "start from a copy of `images` (x = images.clone()), not from zeros, and only draw where known is False",
            )
        fail(
            f"given pixels were overwritten during completion: {int(wrong.sum())} of {int(known_full.sum())} given "
            f"sub-pixels changed {where}",
            "keep what is known: x[:, c, i, j] = torch.where(known[:, c, i, j], x[:, c, i, j], drawn)",
        )
    if torch.equal(got, reference):
        if len(calls) != todo_sites:
            fail(
                f"complete made {len(calls)} forward passes, expected {todo_sites} (one per sub-pixel that some image "
                f"still lacks) {where}",
                "call the model once per sub-pixel to draw, and skip the ones every image knows",
            )
        return
    if torch.equal(got, images) and not torch.equal(reference, images):
        if len(calls) == todo_sites:
            fail(
                f"the drawn values never reached x: your completions are the images passed in, unchanged {where}",
                "write each draw into x before the next pass: "
                "x[:, c, i, j] = torch.where(known[:, c, i, j], x[:, c, i, j], drawn)",
            )
        fail(
            f"no hidden sub-pixel was drawn: your completions are the images passed in, unchanged ({len(calls)} "
            f"forward passes where {todo_sites} sub-pixels need drawing) {where}",
            "skip a sub-pixel only when every image knows it (if known[:, c, i, j].all(): continue); draw all others",
        )
    variants = _complete_variants(model, images, known, temperature, labels, seed)
    if len(calls) > todo_sites and "no skip" in variants and torch.equal(got, variants["no skip"]):
        fail(
            f"complete made {len(calls)} forward passes (and draws) where only {todo_sites} sub-pixels are missing in "
            f"some image: sub-pixels that every image already knows were drawn too {where}",
            "skip a sub-pixel when known[:, c, i, j].all(): no forward pass and no draw for it",
        )
    for pasted in (variants["pasted"], variants.get("pasted, no skip")):
        if pasted is not None and torch.equal(got, pasted):
            fail(
                f"the given pixels were pasted in only at the end: the hidden pixels were drawn without seeing them {where}",
                "put the given pixels into x before the loop, so that every prediction is conditioned on them",
            )
    if len(calls) < todo_sites and "skip any" in variants and torch.equal(got, variants["skip any"]):
        fail(
            f"hidden sub-pixels were left undrawn: you skipped every sub-pixel that ANY image knows, so images that "
            f"lack it keep the values passed in {where}",
            "skip a sub-pixel only when every image knows it: if known[:, c, i, j].all(): continue",
        )
    if len(calls) == 1:
        fail(
            f"all hidden sub-pixels were drawn from a single forward pass {where}",
            "call the model again after every draw: each sub-pixel depends on the ones drawn before it",
        )
    if len(calls) > todo_sites:
        fail(
            f"complete made {len(calls)} forward passes (and draws) where only {todo_sites} sub-pixels are missing in "
            f"some image: sub-pixels that every image already knows were drawn too {where}",
            "skip a sub-pixel when known[:, c, i, j].all(): no forward pass and no draw for it",
        )
    if temperature != 1:
        if torch.equal(got, variants["T = 1"]):
            fail(f"your completions ignore the temperature {where}", "pass the temperature on to temperature_probs")
    if len(calls) < todo_sites:
        fail(
            f"complete made {len(calls)} forward passes, but {todo_sites} sub-pixels are missing in some image: "
            f"some were never drawn {where}",
            "visit every sub-pixel: i over range(H), j over range(W), c over range(C), skipping only those every "
            "image knows",
        )
    fail(
        f"your completions differ from completion with the same generator {where}",
        "x = images.clone(); for i, j, c in raster order, skip sub-pixels every image knows; otherwise "
        "logits = model(x, labels), draw(temperature_probs(...), generator), keep known values with torch.where",
    )


def _probe_complete_device(complete, model):
    """Device handling without a GPU: the model on the meta device, the images and the mask on the CPU."""
    meta = meta_copy(model)
    c, h, w = model.image_shape
    images = torch.zeros(2, c, h, w, dtype=torch.long)
    known = torch.zeros(1, 1, h, w, dtype=torch.bool)
    # a meta tensor has no value: `if known[:, c, i, j].all()` reads as False (some image lacks it)
    record = probe_forward(complete, meta, meta, images, known, generator=torch.Generator(), meta_bool=False)
    fail_off_device(
        record,
        "complete",
        "the images x",
        "move the copy to the model's device: x = images.clone().to(next(model.parameters()).device) "
        "(and the mask: known.to(device))",
    )


@isolated
@no_delegation(
    "course_lib.sampling.sample",
    "course_lib.sampling.sample_naive",
    "course_lib.sampling.sample_cached",
    "course_lib.stepping.AncestralStepper",
    "course_lib.finetune.complete_best_of",
    allowed=("course_lib.sampling.draw",),
)
def check_complete(complete):
    """complete(model, images, known, *, temperature=1.0, labels=None, generator=None) -> (n, C, H, W)."""
    seed = fresh_seed()
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 2, (8, 1, 6, 6), generator=g)
    bottom = torch.ones(1, 1, 6, 6, dtype=torch.bool)
    bottom[..., 4:, :] = False
    binary, draw_seed = _complete_setup(seed, images, bottom, 1.0, None, image_shape=(1, 6, 6))
    _complete_case(complete, binary, images, bottom, 1.0, None, draw_seed)
    masks = _masks(8, 6, 6, g)
    binary, draw_seed = _complete_setup(seed + 2, images, masks, 1.0, None, image_shape=(1, 6, 6))
    _complete_case(complete, binary, images, masks, 1.0, None, draw_seed, training=False)
    # one channel, 256 levels: categorical although it has a single channel
    grey_images = torch.randint(0, 256, (3, 1, 3, 3), generator=g)
    grey_masks = torch.ones(1, 1, 3, 3, dtype=torch.bool)
    grey_masks[..., 1, 1:] = False
    grey_masks[..., 2, :] = False
    grey, draw_seed = _complete_setup(
        seed + 6, grey_images, grey_masks, 0.8, None, image_shape=(1, 3, 3), levels=256, channels=6, dilations=(1,)
    )
    _complete_case(complete, grey, grey_images, grey_masks, 0.8, None, draw_seed)
    images = torch.randint(0, 4, (4, 3, 4, 4), generator=g)
    labels = torch.randint(0, 2, (4,), generator=g)
    masks = _masks(4, 4, 4, g)
    colour, draw_seed = _complete_setup(
        seed + 4, images, masks, 0.7, labels, image_shape=(3, 4, 4), levels=4, channels=6, dilations=(1,), num_classes=2
    )
    _complete_case(complete, colour, images, masks, 0.7, labels, draw_seed)
    _probe_complete_device(complete, grey)
    passed(
        "complete: given sub-pixels kept exactly (the caller's tensors untouched), the hidden ones drawn in raster "
        "order conditioned on them, known sub-pixels skipped, eval mode and no_grad (the caller's mode restored), "
        "on the model's device: the same completions as course_lib.sample(given=...)"
    )
