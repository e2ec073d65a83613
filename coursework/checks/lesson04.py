"""Checks for lesson 04 (sampling): temperature on one sub-pixel's logits, the ancestral sampling loop, and
completion of partly given images. With the same generator and the same `draw` calls in the same order, a
correct loop reproduces `course_lib.sample` draw for draw on fresh tiny models (binary, 1-channel 256-level,
3-channel 4-level; images not square, batches of one), so any difference is real: the check then names the
known buggy loop, computed here, that the answer matches (the verdicts are the table `SAYS`). Forward passes,
the caller's tensors and the device are watched too."""

import functools
import re

import torch

from course_lib.models import eval_mode
from course_lib.sampling import draw, sample

from .helpers import call, close, fail, fresh_seed, isolated, no_delegation, passed, tensor_rule
from .probes import probe_device, tiny_gated
from .rules import eval_rules, mode_restored_rule, run_watched

# name: the verdict it prints, "what is wrong. Hint: what to do" ({fields} filled in by `_fail`)
SAYS = {
    # task 1: temperature_probs
    "sigmoid / T": "temperature was applied after the sigmoid: you divided the probability by T. Hint: divide the logits by T first, then apply the sigmoid: torch.sigmoid(logits / T)",
    "sigmoid ** 1/T": "temperature was applied after the sigmoid: you raised the probability to the power 1/T without renormalising against P(x=0). Hint: divide the logits by T first, then apply the sigmoid: torch.sigmoid(logits / T)",
    "sigmoid, T ignored": "the temperature was ignored (T = {t:g} gave the probabilities of T = 1). Hint: divide the logits by the temperature before the sigmoid",
    "logits * T": "you multiplied the logits by T instead of dividing them. Hint: T < 1 must sharpen the distribution: use logits / T",
    "P(x = 0)": "you returned P(x = 0), not P(x = 1). Hint: the Bernoulli logit is log P(x=1) - log P(x=0)",
    "sigmoid missing": "you returned the scaled logits, not probabilities. Hint: apply torch.sigmoid to logits / T",
    "softmax / T": "temperature was applied after the softmax: the probabilities were divided by T, so they no longer sum to one. Hint: divide the logits by T first, then take the softmax: torch.softmax(logits / T, dim=1)",
    "softmax ** 1/T": "temperature was applied after the softmax: you raised the probabilities to the power 1/T without renormalising them, so they no longer sum to one. Hint: divide the logits by T first, then take the softmax: torch.softmax(logits / T, dim=1)",
    "softmax, T ignored": "the temperature had no effect (T = {t:g} gave the probabilities of T = 1); dividing the probabilities by T after the softmax and renormalising undoes it. Hint: divide the logits by T before the softmax: torch.softmax(logits / T, dim=1)",
    "softmax over the batch": "the softmax ran over the images (dim 0), not over the K levels. Hint: each row (one image) must sum to one: torch.softmax(logits / T, dim=1)",
    "log_softmax": "you returned log-probabilities, not probabilities. Hint: use torch.softmax, not log_softmax",
    "softmax missing": "you returned the scaled logits, not probabilities. Hint: apply torch.softmax(..., dim=1)",
    "two probabilities": "for Bernoulli logits (B,) you returned two probabilities per image. Hint: return P(x = 1) only, shape (B,), as course_lib's draw expects",
    "probs shape": "for {kind} logits of shape {shape} you returned shape {got}, expected {want}. Hint: keep the logits' shape: sigmoid for (B,), softmax over dim=1 for (B, K)",
    "overflow": "temperature_probs gave NaN or inf for {kind} logits as large as ±8 at T = {t:g}: exp(logits / T) overflows float32 (above about 88.7). Hint: let torch.sigmoid / torch.softmax take the exponentials: they stay finite for any logits (softmax subtracts each row's maximum first)",
    "wrong probs": "temperature_probs gave wrong values for {kind} logits of shape {shape} at T = {t:g}. Hint: divide the logits by T, then apply the sigmoid (Bernoulli, shape (B,)) or softmax over dim=1 (categorical, (B, K))",
    # tasks 2 and 3: the forward passes, the result
    "never called": "{name} never called the model. Hint: call logits = model(x, labels) once per sub-pixel to draw: i over range(H), j over range(W), c over range(C)",
    "not integers": "{name} returned non-integer values. Hint: store the drawn levels (0/1, or 0..K-1), not probabilities",
    "dtype": "{name} returned images of dtype {dtype}: integer levels are stored as integers (torch.long). Hint: start from x = torch.zeros(n, C, H, W, dtype=torch.long) (for completion: x = images.clone())",
    # task 2: ancestral_sample
    "single pass": "all sub-pixels were drawn from a single forward pass. Hint: each sub-pixel depends on the ones drawn before it: call the model again after every draw (C*H*W passes), and write every drawn value into x before the next pass",
    "pass count": "ancestral_sample made {passes} forward passes, expected one per sub-pixel, C*H*W = {d}. Hint: one model call per (row, column, channel), inside the innermost loop",
    "after": "temperature was applied after the sigmoid: your samples are those of probabilities divided by T. Hint: divide the logits by T before the sigmoid",
    "times": "your samples are those of logits multiplied by T, not divided by it. Hint: use logits / T",
    "T ignored": "your samples ignore the temperature (T = {t:g} drew the samples of T = 1; dividing the probabilities by T after the softmax does that too, since the draw renormalises them). Hint: divide the logits by T before the softmax / sigmoid (temperature_probs)",
    "columns": "you drew the pixels column by column; the masks define raster order. Hint: loop over rows i (outer), then columns j, then channels c (innermost)",
    "bgr": "you drew the channels of each pixel in the order B, G, R; the masks define R, then G, then B. Hint: loop over the channels forwards: for c in range(C)",
    "channels": "you drew one colour channel over the whole image before the next; inside a pixel the order is R, then G, then B. Hint: make the channel loop the innermost: for i: for j: for c:",
    "global generator": "your samples ignore the generator: the draws came from torch's global random generator. Hint: pass the generator on to every draw: draw(probs, generator)",
    "all zeros": "your samples are all zeros: the drawn values never reached x. Hint: write every draw into the image before the next forward pass: x[:, c, i, j] = draw(probs, generator)",
    "wrong samples": "your samples differ from ancestral sampling with the same generator. Hint: start from zeros; for i, j, c in raster order: logits = model(x, labels), probabilities of sub-pixel (c, i, j) with temperature_probs, x[:, c, i, j] = draw(probs, generator)",
    # task 3: complete
    "in place": "complete changed the caller's `{what}` tensor in place. Hint: work on a copy: x = images.clone() (and known = known.expand_as(x), which makes a view, never written to)",
    "no calls, unchanged": "complete never called the model and returned the images passed in, unchanged: no hidden sub-pixel was drawn. Hint: visit every sub-pixel (i over range(H), j over range(W), c over range(C)); skip it only when every image knows it (known[:, c, i, j].all()), otherwise call the model and draw",
    "no calls, given kept": "complete never called the model: the given pixels are kept, but the hidden ones were not drawn from the model. Hint: for every sub-pixel that some image lacks: logits = model(x, labels), then draw(temperature_probs(...), generator)",
    "no calls": "complete never called the model, and the given pixels were not kept either. Hint: x = images.clone(); for every sub-pixel that some image lacks, call the model and draw; keep the given values with torch.where",
    "given missing": "the given pixels are missing from your completions (they are all 0). Hint: start from a copy of `images` (x = images.clone()), not from zeros, and only draw where known is False",
    "given overwritten": "given pixels were overwritten during completion: {wrong} of {given} given sub-pixels changed. Hint: keep what is known: x[:, c, i, j] = torch.where(known[:, c, i, j], x[:, c, i, j], drawn)",
    "never reached x": "the drawn values never reached x: your completions are the images passed in, unchanged. Hint: write each draw into x before the next pass: x[:, c, i, j] = torch.where(known[:, c, i, j], x[:, c, i, j], drawn)",
    "nothing drawn": "no hidden sub-pixel was drawn: your completions are the images passed in, unchanged ({passes} forward passes where {todo} sub-pixels need drawing). Hint: skip a sub-pixel only when every image knows it (if known[:, c, i, j].all(): continue); draw all others",
    "known drawn": "complete made {passes} forward passes (and draws) where only {todo} sub-pixels are missing in some image: sub-pixels that every image already knows were drawn too. Hint: skip a sub-pixel when known[:, c, i, j].all(): no forward pass and no draw for it",
    "pasted": "the given pixels were pasted in only at the end: the hidden pixels were drawn without seeing them. Hint: put the given pixels into x before the loop, so that every prediction is conditioned on them",
    "skip any": "hidden sub-pixels were left undrawn: you skipped every sub-pixel that ANY image knows, so images that lack it keep the values passed in. Hint: skip a sub-pixel only when every image knows it: if known[:, c, i, j].all(): continue",
    "single pass (completion)": "all hidden sub-pixels were drawn from a single forward pass. Hint: call the model again after every draw: each sub-pixel depends on the ones drawn before it",
    "T ignored (completion)": "your completions ignore the temperature. Hint: pass the temperature on to temperature_probs",
    "too few passes": "complete made {passes} forward passes, but {todo} sub-pixels are missing in some image: some were never drawn. Hint: visit every sub-pixel: i over range(H), j over range(W), c over range(C), skipping only those every image knows",
    "completion pass count": "complete made {passes} forward passes, expected {todo} (one per sub-pixel that some image still lacks). Hint: call the model once per sub-pixel to draw, and skip the ones every image knows",
    "wrong completions": "your completions differ from completion with the same generator. Hint: x = images.clone(); for i, j, c in raster order, skip sub-pixels every image knows; otherwise logits = model(x, labels), draw(temperature_probs(...), generator), keep known values with torch.where",
}
_SAMPLERS = (
    "course_lib.sampling.sample",
    "course_lib.sampling.sample_naive",
    "course_lib.sampling.sample_cached",
    "course_lib.stepping.AncestralStepper",
)
KINDS = "tell the two kinds apart by the logits' shape: (B,) is Bernoulli, torch.sigmoid(logits / T); (B, K) is categorical, torch.softmax(logits / T, dim=1)"
SMALL = dict(channels=6, dilations=(1,))  # the layers of the tiny categorical models
_GLOBAL_SEED = 7919  # torch's global generator is seeded with (the draw seed + this) before the learner's call


# -- shared: one diagnosis form, the loop's known structures, the forward passes -----------------------------
def _fail(say, where="", **fields):
    """Fail with the verdict `SAYS[say]`, its fields filled in, `where` (the case) after what is wrong."""
    what, hint = SAYS[say].format(**fields).split(" Hint: ")
    fail(f"{what} {where}".strip(), hint)


def _diagnose(rows, fallback, where="", **fields):
    """Fail with the verdict of the first row (applies, name) that applies, else with `fallback`'s."""
    _fail(next((name for applies, name in rows if applies), fallback), where, **fields)


def _error_hint(message, line, model):
    """A hint for an error of the learner's loop (rows and columns, the mask's shape, the logits' layout), or None."""
    text, line = message.lower(), (line or "")
    bounds = re.search(r"out of bounds for dimension \d+ with size (\d+)", text)
    if "built for" in text or (bounds and int(bounds.group(1)) > 1 and int(bounds.group(1)) in model.image_shape[1:]):
        return "i runs over the H rows, j over the W columns: C, H, W = model.image_shape (images need not be square)"
    if "known" in line or "given" in line or "dimension 1 with size 1" in text:
        return "`known` may have one channel and one image, (1, 1, H, W): expand it to the images' shape before indexing it: known = known.expand_as(x)"
    if "logits" in line or "too many indices" in text or "dimension 2 with size 1" in text or model.levels > 2:
        return "decide from model.levels, not from the number of channels: a binary model (model.levels == 2) gives logits (B, C, H, W), read logits[:, c, i, j]; a K-level one (B, K, C, H, W), even with one channel, read logits[:, :, c, i, j]"


def _run_watched(fn, model, *args, seed, training, where, **kwargs):
    """Call the learner's `fn` with a generator seeded with `seed` and `model` arriving in training (or eval)
    mode, watching every forward pass. An error names the case it happened in. Returns (result, the passes)."""
    model.train(training)
    caller = functools.partial(call, hint=lambda m, line: _error_hint(m, line, model), context=where)
    return run_watched(caller, fn, model, *args, generator=torch.Generator().manual_seed(seed), **kwargs)


def _passes_and_images(calls, result, name, what, model, training, shape):
    """The rules of the forward passes (some made, in eval mode, without gradients, the caller's mode restored)
    and of the result (integer images of `shape`): (the number of passes, the images as a CPU int64 tensor)."""
    if not calls:
        _fail("never called", name=name)
    eval_rules(calls, name, doing=f"run for {what}")
    mode_restored_rule(model, training, name)
    hint = f"return the images as a tensor of shape {tuple(shape)}"
    shape_hint = (
        "the shape is (n, C, H, W): start from x = torch.zeros(n, C, H, W, dtype=torch.long) and fill it in place"
    )
    result = tensor_rule(result, name, shape, hint, shape_hint=shape_hint).cpu()
    if result.is_floating_point() or result.dtype == torch.bool:
        fraction = result.is_floating_point() and not torch.equal(result, result.round())
        _diagnose([(fraction, "not integers")], "dtype", name=name, dtype=result.dtype)
    return len(calls), result.long()


def _sites(c, h, w, order):
    """Sub-pixel positions (channel, row, column) in the given order."""
    orders = {
        "raster": [(ch, i, j) for i in range(h) for j in range(w) for ch in range(c)],
        "columns": [(ch, i, j) for j in range(w) for i in range(h) for ch in range(c)],
        "channels": [(ch, i, j) for ch in range(c) for i in range(h) for j in range(w)],
        "bgr": [(ch, i, j) for i in range(h) for j in range(w) for ch in reversed(range(c))],
    }
    return orders[order]


def _variant_probs(logits, i, j, c, temperature, variant):
    """The distribution of one sub-pixel, as a correct ("right") or a known-buggy loop computes it."""
    binary = logits.dim() == 4
    logit = (logits[:, c, i, j] if binary else logits[:, :, c, i, j]).float()
    squash = torch.sigmoid if binary else functools.partial(torch.softmax, dim=1)
    if variant == "after":  # probabilities divided by T (torch.multinomial renormalises them)
        return (squash(logit) / temperature).clamp(0, 1) if binary else squash(logit) / temperature
    return squash(logit / temperature if variant == "right" else logit * temperature)


@torch.no_grad()
def _variant_loop(model, images, known, labels, temperature, seed, *, order="raster", variant="right", **how):
    """What a loop with a given (possibly buggy) structure draws, with a generator seeded by `seed`.
    how["skip_known"]: True (default) skips a sub-pixel every image knows, False skips none, "any" skips one
    that any image knows (the hidden ones there keep the values passed in); how["paste_at_end"]: the given
    pixels are put into x only after the loop."""
    skip_known, paste_at_end = how.get("skip_known", True), how.get("paste_at_end", False)
    g = torch.Generator().manual_seed(seed)  # (the same draws as torch's global generator after manual_seed(seed))
    n, c, h, w = images.shape
    known = known.expand(n, c, h, w)
    x = torch.zeros_like(images) if paste_at_end else torch.where(known, images, torch.zeros_like(images))
    x = images.clone() if skip_known == "any" else x
    with eval_mode(model):
        for ch, i, j in _sites(c, h, w, order):
            todo = ~known[:, ch, i, j] if skip_known else torch.ones(n, dtype=torch.bool)
            if not todo.any() or (skip_known == "any" and known[:, ch, i, j].any()):
                continue
            value = draw(_variant_probs(model(x, labels), i, j, ch, temperature, variant), g)
            # a loop that draws known sub-pixels too still keeps the given values (unless it pastes them at the end)
            keep = todo if paste_at_end else ~known[:, ch, i, j]
            x[:, ch, i, j] = torch.where(keep, value, x[:, ch, i, j])
    return torch.where(known, images, x) if paste_at_end else x


def _setup(seed, reference, variants, **model_config):
    """(a sharpened model, a draw seed, `reference(model, seed)`) for which the reference and every tensor of
    `variants(model, seed)` all differ, so that every known bug is recognisable (16 tries; one try fails at
    most about a third of the time, for the 256-level completion)."""
    for attempt in range(16):
        model = tiny_gated(seed + 1009 * attempt, sharpen=True, **model_config)
        draw_seed = seed + 1 + 1009 * attempt
        outputs = [reference(model, draw_seed), *variants(model, draw_seed)]
        if all(not torch.equal(a, b) for k, a in enumerate(outputs) for b in outputs[k + 1 :]):
            break
    return model, draw_seed, outputs[0]


def _where(model, labels, temperature, n, extra=""):
    c, h, w = model.image_shape
    kind = "binary" if model.levels == 2 else f"{model.levels}-level categorical"
    conditional = "class-conditional " if labels is not None else ""
    return f"({conditional}{kind} {c}x{h}x{w} model, {n} image{'s' if n > 1 else ''}{extra}, T = {temperature:g})"


# -- task 1: temperature_probs -------------------------------------------------------------------------------
def _probs_mistakes(logits, t):
    """{name in SAYS: probabilities} of the plausible mistakes of temperature_probs, float64, in order."""
    kind = "sigmoid" if logits.dim() == 1 else "softmax"
    p = torch.sigmoid if kind == "sigmoid" else functools.partial(torch.softmax, dim=1)
    wrong = {f"{kind} / T": p(logits) / t, f"{kind} ** 1/T": p(logits) ** (1 / t), f"{kind}, T ignored": p(logits)}
    wrong["logits * T"] = p(logits * t)
    if kind == "sigmoid":
        wrong["P(x = 0)"] = 1 - p(logits / t)
    else:
        wrong["softmax over the batch"] = torch.softmax(logits / t, dim=0)
        wrong["log_softmax"] = torch.log_softmax(logits / t, dim=1)
    return {**wrong, f"{kind} missing": logits / t}


def _probs_case(temperature_probs, logits, t):
    """temperature_probs on `logits` ((B,) Bernoulli or (B, K) categorical, float32) at temperature `t`."""
    kind = "Bernoulli" if logits.dim() == 1 else "categorical"
    shape = tuple(logits.shape)
    got = call(temperature_probs, logits.clone(), t, context=f"on {kind} logits of shape {shape}", hint=KINDS)
    got, logits = tensor_rule(got, "temperature_probs").double().cpu(), logits.double()
    ref = torch.sigmoid(logits / t) if kind == "Bernoulli" else torch.softmax(logits / t, dim=1)
    fields = dict(kind=kind, shape=shape, t=t, got=tuple(got.shape), want=tuple(ref.shape))
    if got.shape != ref.shape:
        _diagnose([(kind == "Bernoulli" and got.shape == (*shape, 2), "two probabilities")], "probs shape", **fields)
    if not torch.isfinite(got).all():
        _fail("overflow", **fields)
    if not close(got, ref, "probability"):
        mistakes = _probs_mistakes(logits, t).items()
        _diagnose([(close(got, wrong, "probability"), name) for name, wrong in mistakes], "wrong probs", **fields)


@isolated
@no_delegation("course_lib.sampling.probabilities", "course_lib.sampling.distribution_at")
def check_temperature_probs(temperature_probs):
    """temperature_probs(logits, temperature) -> P(x=1) (B,) for Bernoulli logits (B,), or (B, K) for (B, K).
    Temperatures 0.05 to 20 (exp(logits / T) overflows float32 at the smallest), logits up to ±8, batch 1."""
    g = torch.Generator().manual_seed(fresh_seed())
    b, k = int(torch.randint(4, 9, (), generator=g)), int(torch.randint(3, 7, (), generator=g))
    bernoulli, categorical = torch.randn(b, generator=g) * 3, torch.randn(b, k, generator=g) * 3
    bernoulli[:2], categorical[0, 0], categorical[1, -1] = torch.tensor([8.0, -8.0]), 8.0, -8.0
    for logits in (bernoulli, categorical):
        for t in (1.0, 0.5, 2.0, 0.05, 20.0):
            _probs_case(temperature_probs, logits, t)
        _probs_case(temperature_probs, logits[:1], 0.5)  # a batch of one
    passed(
        "temperature_probs: the logits are divided by T before the sigmoid (Bernoulli) or the softmax over the "
        "K levels (categorical), for T from 0.05 to 20 without overflow, batches of one included"
    )


# -- task 2: ancestral_sample ----------------------------------------------------------------------------
def _sample_mistakes(model, n, temperature, labels, seed):
    """[(samples, name in SAYS)] of the known buggy sampling loops that apply to this model and temperature."""
    c, h, w = model.image_shape
    loops = [  # (applies to this model and temperature, the loop's options, name)
        (temperature != 1 and model.levels == 2, dict(variant="after"), "after"),
        (temperature != 1, dict(variant="times"), "times"),
        (temperature != 1, dict(temperature=1.0), "T ignored"),
        (h > 1, dict(order="columns"), "columns"),
        (c > 1, dict(order="bgr"), "bgr"),
        (c > 1, dict(order="channels"), "channels"),
        (True, dict(seed=seed + _GLOBAL_SEED), "global generator"),
    ]
    blank, known = torch.zeros(n, c, h, w, dtype=torch.long), torch.zeros(1, 1, 1, 1, dtype=torch.bool)
    loop = functools.partial(_variant_loop, model, blank, known, labels, temperature=temperature, seed=seed)
    return [(loop(**options), name) for applies, options, name in loops if applies]


def _sample_case(ancestral_sample, seed, n, temperature, labels, training=True, **model_config):
    """Sample with a model of `model_config` and a draw seed for which the correct samples, every known bug's
    and all zeros all differ (`_setup`); returns the model."""
    blank = torch.zeros(n, *model_config["image_shape"], dtype=torch.long)
    model, seed, reference = _setup(
        seed,
        lambda model, s: sample(model, n, temperature=temperature, labels=labels, seed=s, method="naive"),
        lambda model, s: [blank] + [wrong for wrong, _ in _sample_mistakes(model, n, temperature, labels, s)],
        **model_config,
    )
    c, h, w = model.image_shape
    where = _where(model, labels, temperature, n)
    torch.manual_seed(seed + _GLOBAL_SEED)  # (check_sample is @isolated: the caller's global state is restored)
    kwargs = dict(temperature=temperature, labels=labels, seed=seed, training=training, where=where)
    result, calls = _run_watched(ancestral_sample, model, n, **kwargs)
    passes, got = _passes_and_images(calls, result, "ancestral_sample", "sampling", model, training, (n, c, h, w))
    if torch.equal(got, reference) and passes == c * h * w:
        return model
    rows = [(passes == 1, "single pass")]
    rows += [(torch.equal(got, wrong), name) for wrong, name in _sample_mistakes(model, n, temperature, labels, seed)]
    rows += [(passes != c * h * w, "pass count"), (not got.any() and reference.any(), "all zeros")]
    _diagnose(rows, "wrong samples", where, passes=passes, d=c * h * w, t=temperature)


@isolated
@no_delegation(*_SAMPLERS, "course_lib.sampling.distribution_at", allowed=("course_lib.sampling.draw",))
def check_sample(ancestral_sample):
    """ancestral_sample(model, n, *, temperature=1.0, labels=None, generator=None) -> (n, C, H, W) levels."""
    seed = fresh_seed()
    labels = torch.randint(0, 3, (8,), generator=torch.Generator().manual_seed(seed))
    _sample_case(ancestral_sample, seed, 8, 1.5, labels, image_shape=(1, 4, 5), num_classes=3)
    # one channel, 256 levels (the lesson's tutorial model): categorical although it has a single channel
    _sample_case(ancestral_sample, seed + 3, 3, 0.8, None, training=False, image_shape=(1, 3, 3), levels=256, **SMALL)
    colour = dict(image_shape=(3, 2, 3), levels=4, **SMALL)
    model = _sample_case(ancestral_sample, seed + 2, 3, 0.6, None, **colour)
    _sample_case(ancestral_sample, seed + 2, 1, 1.0, None, training=False, **colour)  # a batch of one
    probe_device(
        ancestral_sample,
        model,
        (2,),
        dict(temperature=1.0, generator=torch.Generator()),
        what="the image x",
        hint="create x on the model's device: torch.zeros(n, C, H, W, dtype=torch.long, device=next(model.parameters()).device)",
    )
    passed(
        "ancestral_sample: eval mode and no_grad (the caller's mode restored), one forward pass per sub-pixel in "
        "raster order (R, G, B inside a pixel), temperature on the logits, on the model's device: draw for draw "
        "the same samples as course_lib.sample for binary, 1-channel 256-level and 3-channel 4-level models, "
        "images that are not square, a batch of one"
    )


# -- task 3: complete ----------------------------------------------------------------------------------
def _masks(n, h, w, g):
    """Per-image masks (n, 1, h, w), True where given: bottom half hidden, a box, the right half, random pixels;
    the pixel (h // 2, w // 2) hidden in every image (a loop that skips what ANY image knows still draws it)."""
    known = torch.ones(n, 1, h, w, dtype=torch.bool)
    known[0::4, :, h // 2 :] = False
    known[1::4, :, h // 4 : h // 4 + max(1, h // 2), w // 4 : w // 4 + max(1, w // 2)] = False
    known[2::4, :, :, w // 2 :] = False
    known[3::4] = torch.rand(len(known[3::4]), 1, h, w, generator=g) < 0.5
    known[:, :, h // 2, w // 2] = False
    return known


def _complete_variants(model, images, known, temperature, labels, seed):
    """{name: completions} of the known buggy completion loops."""
    loop = functools.partial(_variant_loop, model, images, known, labels)
    full = known.expand(images.shape).flatten(2)
    variants = {"pasted": loop(temperature, seed, paste_at_end=True)}
    if full.all(0).any():  # some sub-pixel every image knows (without one, not skipping changes nothing)
        variants["no skip"] = loop(temperature, seed, skip_known=False)
        variants["pasted, no skip"] = loop(temperature, seed, skip_known=False, paste_at_end=True)
    if (full.any(0) & ~full.all(0)).any():  # some sub-pixel known to some images only
        variants["skip any"] = loop(temperature, seed, skip_known="any")
    if temperature != 1:
        variants["T = 1"] = loop(1.0, seed)
    return variants


def _complete_setup(seed, images, known, t, labels, **model_config):
    """(a model, a draw seed, the correct completions) for which the completions and every known bug's differ."""
    given = dict(temperature=t, labels=labels, given=(images, known), method="naive")
    return _setup(
        seed,
        lambda model, s: sample(model, len(images), seed=s, **given),
        lambda model, s: list(_complete_variants(model, images, known, t, labels, s).values()),
        **model_config,
    )


def _diagnose_completion(got, reference, passes, todo, case, where):
    """Fail with the mistake that the learner's completions `got` (given pixels kept, not the reference) show."""
    variants = _complete_variants(*case)
    same = {name: torch.equal(got, wrong) for name, wrong in variants.items()}
    unchanged = torch.equal(got, case[1]) and not torch.equal(reference, case[1])
    rows = [
        (unchanged and passes == todo, "never reached x"),
        (unchanged, "nothing drawn"),
        (passes > todo and same.get("no skip", False), "known drawn"),
        (same["pasted"] or same.get("pasted, no skip", False), "pasted"),
        (passes < todo and same.get("skip any", False), "skip any"),
        (passes == 1, "single pass (completion)"),
        (passes > todo, "known drawn"),
        (same.get("T = 1", False), "T ignored (completion)"),
        (passes < todo, "too few passes"),
    ]
    _diagnose(rows, "wrong completions", where, passes=passes, todo=todo)


def _complete_case(complete, seed, images, known, temperature, labels, training=True, **model_config):
    """Complete with a model of `model_config` and a draw seed chosen by `_complete_setup`; returns the model."""
    model, seed, reference = _complete_setup(seed, images, known, temperature, labels, **model_config)
    n, c, h, w = images.shape
    known_full, case = known.expand(n, c, h, w), (model, images, known, temperature, labels, seed)
    masks = ", one mask for all images" if known.shape[0] == 1 else ", a different mask for every image"
    where = _where(model, labels, temperature, n, masks if n > 1 else "")
    given_images, given_known = images.clone(), known.clone()
    kwargs = dict(temperature=temperature, labels=labels, seed=seed, training=training, where=where)
    result, calls = _run_watched(complete, model, given_images, given_known, **kwargs)
    for tensor, original, what in ((given_images, images, "images"), (given_known, known, "known")):
        if tensor.shape != original.shape or not torch.equal(tensor, original):
            _fail("in place", where, what=what)
    if not calls and torch.is_tensor(result) and result.shape == images.shape:
        kept = result.detach().cpu().long()
        unchanged, given_kept = torch.equal(kept, images), torch.equal(kept[known_full], images[known_full])
        _diagnose([(unchanged, "no calls, unchanged"), (given_kept, "no calls, given kept")], "no calls", where)
    passes, got = _passes_and_images(calls, result, "complete", "completion", model, training, (n, c, h, w))
    if not torch.equal(got[known_full], images[known_full]):
        zeros = bool((got[known_full] == 0).all() and images[known_full].any())
        wrong = int(((got != images) & known_full).sum())
        _diagnose([(zeros, "given missing")], "given overwritten", where, wrong=wrong, given=int(known_full.sum()))
    todo = int((~known_full.all(0)).sum())  # the sub-pixels some image lacks
    if not torch.equal(got, reference):
        _diagnose_completion(got, reference, passes, todo, case, where)
    if passes != todo:
        _fail("completion pass count", where, passes=passes, todo=todo)
    return model


GREY_COMPLETION = dict(image_shape=(1, 4, 4), levels=256, **SMALL)


def _grey_completion(g):
    """One 4x4 256-level image (1, 1, 4, 4) and its mask: the first six sub-pixels in raster order given, ten hidden
    (with fewer, a confident model often draws the same at T = 0.8 as at T = 1, and the bugs cannot be told apart)."""
    return torch.randint(0, 256, (1, 1, 4, 4), generator=g), torch.arange(16).reshape(1, 1, 4, 4) < 6


@isolated
@no_delegation(*_SAMPLERS, "course_lib.finetune.complete_best_of", allowed=("course_lib.sampling.draw",))
def check_complete(complete):
    """complete(model, images, known, *, temperature=1.0, labels=None, generator=None) -> (n, C, H, W)."""
    seed = fresh_seed()
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 2, (8, 1, 6, 5), generator=g)
    bottom = torch.arange(30).reshape(1, 1, 6, 5) < 20  # the bottom two rows hidden
    for k, known in enumerate((bottom, _masks(8, 6, 5, g))):  # one mask for all images, then one for each
        _complete_case(complete, seed + 2 * k, images, known, 1.0, None, training=k == 0, image_shape=(1, 6, 5))
    # one channel, 256 levels (categorical although it has a single channel), a single image
    _complete_case(complete, seed + 6, *_grey_completion(g), 0.8, None, **GREY_COMPLETION)
    images, labels = torch.randint(0, 4, (4, 3, 3, 4), generator=g), torch.randint(0, 2, (4,), generator=g)
    config = dict(image_shape=(3, 3, 4), levels=4, num_classes=2, **SMALL)
    colour = _complete_case(complete, seed + 4, images, _masks(4, 3, 4, g), 0.7, labels, **config)
    # the model on the meta device, the images and the mask on the CPU; a meta tensor has no value:
    # `if known[:, c, i, j].all()` reads as False (some image lacks it)
    probe_device(
        complete,
        colour,
        (torch.zeros(2, 3, 3, 4, dtype=torch.long), torch.zeros(1, 1, 3, 4, dtype=torch.bool)),
        dict(generator=torch.Generator(), labels=torch.zeros(2, dtype=torch.long)),
        meta_bool=False,
        positions=(0,),  # the images (the labels are the caller's)
        what="the images x",
        hint="move the copy to the model's device: x = images.clone().to(next(model.parameters()).device) (and the mask: known.to(device))",
    )
    passed(
        "complete: given sub-pixels kept exactly (the caller's tensors untouched), the hidden ones drawn in raster "
        "order conditioned on them, known sub-pixels skipped, eval mode and no_grad (the caller's mode restored), "
        "on the model's device: the same completions as course_lib.sample(given=...), for binary, 256-level and "
        "colour images that are not square, a single image included"
    )
