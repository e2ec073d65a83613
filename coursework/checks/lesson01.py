"""Checks for lesson 01 (likelihood): `nll`, `bits_per_dim`, the independent baseline by counting, and an
evaluation loop over every image. Each calls the learner's code on fresh random inputs and on the edges of the
task (each check's docstring lists them), compares with a float64 reference, and names the plausible mistake a
wrong answer matches: a variant computed from the reference (the `_*_mistakes` tables, tried in order) or a
rule (the evaluation rules are shared with lesson 03: `rules`)."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from course_lib.data import ImageDataset

from . import rules
from .helpers import LN2, call, close, fail, first_match, fresh_generator, isolated, no_delegation, passed, tensor_rule
from .rules import diagnose_nll, eval_rules, images_rule, mode_restored_rule, plain_number_rule, run_watched

LAYOUTS = "4 dimensions are Bernoulli logits, 5 are K-way logits with the levels in dimension 1 (K = logits.shape[1])"
STABLE = "compute log-probabilities from logits directly (log-sigmoid / log-softmax), never the log of a probability"


def _as_float64(value, what):
    """The learner's result as a float64 tensor (detached), or a clear failure."""
    try:
        return torch.as_tensor(value.detach() if torch.is_tensor(value) else value).double()
    except Exception:
        fail(f"{what} returned {type(value).__name__}, not a number or a tensor", "return a torch tensor")


# -- task 1: nll(logits, x) -----------------------------------------------------------------------------
def _ref_nll(logits, x):
    """Reference NLL in nats per image, float64, shape (B,)."""
    if logits.dim() == 4:
        per = F.binary_cross_entropy_with_logits(logits.double(), x.double(), reduction="none")
    else:
        per = F.cross_entropy(logits.double(), x.long(), reduction="none")
    return per.flatten(1).sum(1)


def _nll_mistakes(logits, x):
    """{name: (what the mistake returns, message, hint)} for the plausible mistakes of task 1 (None: the mistake
    does not show here; a single number for a batch of one image is no reduction over the batch)."""
    ref, d, batch = _ref_nll(logits, x), x[0].numel(), len(x) > 1
    one = "nll must return one value per image, shape (B,)"
    return {
        "batch mean": (
            ref.mean() if batch else None,
            f"you averaged over the images: {one}",
            "keep the batch dimension; average over images only when you report a data set",
        ),
        "batch sum": (ref.sum() if batch else None, f"you summed over the images too: {one}", "sum over C, H, W only"),
        "default reduction": (
            (ref / d).mean() if batch else None,
            "you took the mean over pixels and images (PyTorch's default reduction): that is nats per pixel of the "
            "batch, not nats per image",
            "use reduction='none', then sum over C, H, W for each image",
        ),
        **rules.unit_mistakes(ref, d),
        "target flipped": (
            _ref_nll(-logits, x) if logits.dim() == 4 else None,
            "you scored the wrong value: a Bernoulli logit is the log-odds of pixel = 1, not of pixel = 0",
            "the target of each sub-pixel is x itself",
        ),
    }


def _diagnose_nll(got, logits, x, prefix):
    """Fail with the closest plausible mistake of a wrong NLL, else with what is wrong about its shape or values."""
    ref, b = _ref_nll(logits, x), len(x)
    first_match(got.reshape(()) if got.numel() == 1 < b else got, _nll_mistakes(logits, x), "log_prob", prefix=prefix)
    per_sub_pixel = (
        "you returned one value per sub-pixel, shape (B, C, H, W)",
        "the NLL of an image is the sum over its C*H*W sub-pixels: shape (B,)",
    )
    hint = "one value per image: sum over every dimension but the batch, and keep it even for one image (no squeeze())"
    tensor_rule(got, "nll", ref.shape, hint, shapes={tuple(x.shape): per_sub_pixel}, prefix=prefix)
    if logits.dim() == 5:
        fail(f"{prefix}wrong values for categorical logits of shape (B, K, C, H, W)",
             "the K levels are dimension 1 of the logits; the target x holds integer levels 0..K-1")  # fmt: skip
    i = int((got - ref).abs().argmax())
    fail(f"{prefix}wrong values: image {i} got {got[i].item():.4f}, expected {ref[i].item():.4f} nats",
         "per sub-pixel, -log p(x) with p = sigmoid(logit) for x = 1 and 1 - sigmoid(logit) for x = 0")  # fmt: skip


def _nll_case(g, b, levels=None, used=None):
    """(logits, x) for `b` random images of random size: Bernoulli logits, or categorical ones over `levels`
    levels; x uses the first `used` levels only, or else all of them (each occurs, when x has room for all)."""
    c = int(torch.randint(1, 4, (), generator=g))
    h, w = (int(v) for v in torch.randint(2, 6, (2,), generator=g))
    logits = torch.randn(b, *([levels] if levels else []), c, h, w, generator=g) * 2
    x = torch.randint(0, used or levels or 2, (b, c, h, w), generator=g)
    if levels and not used and x.numel() >= levels:
        x.view(-1)[torch.randperm(x.numel(), generator=g)[:levels]] = torch.arange(levels)
    return logits, x


def _nll_cases(g):
    """(what, logits, x) of every case: random Bernoulli and categorical logits, then the edges: levels absent
    from x, 256 levels, a batch of one image, logits so far from the boundary that the log of a probability is -inf."""
    b = [int(v) for v in torch.randint(3, 7, (5,), generator=g)]  # batch sizes
    k = int(torch.randint(2, 6, (), generator=g))
    absent = "categorical logits of shape (B, K, C, H, W), K = 6 levels of which x uses only 0 to 2"
    far = torch.tensor([[100.0, -100.0], [-100.0, 100.0], [0.0, 0.0]]).reshape(1, 3, 1, 1, 2).expand(2, -1, -1, -1, -1)
    return [
        ("", *_nll_case(g, b[0])),
        ("", *_nll_case(g, b[1])),
        (f"categorical logits of shape (B, K, C, H, W), K = {k} (Bernoulli logits work)", *_nll_case(g, b[2], k)),
        (absent, *_nll_case(g, b[4], 6, 3)),
        ("256-level categorical logits", *_nll_case(g, b[3], 256)),
        ("a batch of 1 image (Bernoulli logits)", *_nll_case(g, 1)),
        ("a batch of 1 image (categorical logits)", *_nll_case(g, 1, 4)),
        (
            "Bernoulli logits of ±40 and ±100 (all wrong, then all right)",
            torch.tensor([40.0, -40.0, 100.0, -100.0]).expand(2, 1, 1, 4),
            torch.tensor([[0, 1, 0, 1], [1, 0, 1, 0]]).reshape(2, 1, 1, 4),
        ),
        (
            "categorical logits of ±100 (all wrong, then all right)",
            far,
            torch.tensor([[1, 0], [0, 1]]).reshape(2, 1, 1, 2),
        ),
    ]


@isolated
@no_delegation("course_lib.models.log_prob_from_logits", "course_lib.likelihood.nll")
def check_nll(nll):
    """Task 1: `nll(logits, x)` returns the NLL in nats of each image, shape (B,), for Bernoulli logits
    (B, C, H, W) and categorical logits (B, K, C, H, W) of any K (levels absent from x included), for a batch of
    one image, and logits far from the decision boundary."""
    for what, logits, x in _nll_cases(fresh_generator()):
        hint = LAYOUTS if logits.dim() == 5 else None
        got = _as_float64(call(nll, logits.clone(), x.clone(), context=f"for {what}" if what else "", hint=hint), "nll")
        ref = _ref_nll(logits, x)
        if close(got, ref, "log_prob"):
            continue
        if logits.abs().max() >= 40:  # the probes far from the decision boundary
            fail(
                f"nll is not numerically stable: {what} should cost {[round(v, 2) for v in ref.tolist()]} nats per "
                f"image, got {got.flatten().tolist()}",
                STABLE,
            )
        _diagnose_nll(got, logits, x, f"with {what}: " if what else "")
    passed(
        "nll: nats per image (summed over C, H, W), one value per image, for Bernoulli and categorical logits "
        "(2 to 256 levels, absent levels included), a batch of one, and logits of ±100"
    )


# -- task 2: bits_per_dim(nats_per_image, dims) ---------------------------------------------------------
def _diagnose_bpd(got, given, ref, d):
    """Fail with the plausible mistake behind a wrong bits per dimension: one of the table, else a wrong
    denominator (a constant ratio to the NLL) or a wrong numerator."""
    hint = "work element-wise: a float gives a float, a tensor of NLLs a tensor of the same shape"
    tensor_rule(got, "bits_per_dim", ref.shape, hint)
    first_match(got, rules.bpd_mistakes(ref, d), "float64")
    ratio = given / got  # what the learner divided each NLL by
    if got.numel() > 1 and close(ratio, ratio.flatten()[0].expand_as(ratio), "log_prob"):
        fail(
            f"the denominator is wrong: your bits_per_dim divides the NLL by {ratio.flatten()[0].item():.6g}, but "
            f"with D = {d} it must divide by D · ln 2 = {d * LN2:.6g} (the numerator, the NLL itself, is right)",
            "bits/dim = nats per image / (D * ln 2): ln 2 converts nats to bits, D makes it per dimension",
        )
    x, y, want = given.flatten()[0].item(), got.flatten()[0].item(), ref.flatten()[0].item()
    if got.numel() > 1:
        fail(
            f"the numerator is wrong: your bits per dimension are not proportional to the NLL "
            f"(bits_per_dim({x:.3f}, {d}) returned {y:.6f}, expected {want:.6f})",
            "divide nats_per_image itself, unchanged, by D * ln 2",
        )
    fail(f"bits_per_dim({x:.3f}, {d}) returned {y:.6f}, expected {want:.6f}", "bits/dim = nats per image / (D * ln 2)")


def _kind(value):  # "a float", "a float32 tensor"
    return f"a {str(value.dtype)[6:]} tensor" if torch.is_tensor(value) else "a float"


@isolated
@no_delegation("course_lib.likelihood.bits_per_dim")
def check_bits_per_dim(bits_per_dim):
    """Task 2: `bits_per_dim(nats_per_image, dims)` = nats / (dims * ln 2), element-wise, of the input's type:
    a float gives a float, a float64 or float32 tensor a tensor of that dtype."""
    g = fresh_generator()
    nats = torch.rand(5, generator=g, dtype=torch.float64) * 300 + 10
    d = int(torch.randint(50, 800, (), generator=g))
    for given in (nats, float(nats[0]), nats.float()):  # the tensor first: 5 values tell numerator from denominator
        raw, exact = call(bits_per_dim, given, d), torch.as_tensor(given, dtype=torch.float64)
        got, ref = _as_float64(raw, "bits_per_dim"), exact / (d * LN2)
        if not close(got, ref, "float64"):
            _diagnose_bpd(got, exact, ref, d)
        if _kind(raw) != _kind(given):
            fail(
                f"bits_per_dim returned {_kind(raw)} for {_kind(given)}: the result must have the type of "
                "nats_per_image (the values are right)",
                "keep the constants plain Python numbers (math.log(2), "
                "not torch.log(torch.tensor(2.0))): a float then stays a float and a tensor keeps its dtype",
            )
    passed("bits_per_dim: nats per image / (D · ln 2), for a float and for float64 and float32 tensors")


# -- task 3: fit_independent(images, levels, alpha) -----------------------------------------------------
def _fit_images(g, levels, c, absent):
    """Images (N, C, H, W) where some levels are rare, pixel (0, 0) only ever takes level 0, and level
    `absent` (if given) occurs nowhere."""
    n = int(torch.randint(20, 40, (), generator=g))
    h, w = (int(v) for v in torch.randint(3, 6, (2,), generator=g))
    p = torch.rand(levels, c, h, w, generator=g) ** 3  # some levels rare, so zero counts happen
    p[:, :, 0, 0] = (torch.arange(levels) == 0)[:, None].float()  # pixel (0, 0): level 0 only
    if absent is not None:
        p[absent] = 0
        p[0] += 0.05  # every pixel keeps some level it can take
    p = (p / p.sum(0, keepdim=True)).permute(1, 2, 3, 0).reshape(-1, levels)
    return torch.multinomial(p, n, replacement=True, generator=g).T.reshape(n, c, h, w)


def _fit_shape_rules(got, ref, images, levels, where):
    """Fail when the probabilities have the wrong shape, naming the plausible reason."""
    (c, h, w), seen = images.shape[1:], int(images.max()) + 1
    shapes = {
        (c, h, w, levels): (
            "levels are the last dimension; expected shape (K, C, H, W), levels first",
            "put the level dimension first (permute)",
        )
    }
    if levels == 2:
        shapes[c, h, w] = (
            "you returned only p(pixel = 1), shape (C, H, W)",
            "return the probability of every level, shape (K, C, H, W)",
        )
    if seen < levels:
        shapes[seen, c, h, w] = (
            f"you returned probabilities for {seen} levels, not {levels}: level {levels - 1} never occurs in these "
            f"images, and your counting dropped it. It still needs its probability, alpha / (N + K * alpha), or a "
            "test image that uses it has no probability at all",
            "count over all K = levels levels: F.one_hot(x, levels) (without num_classes, one_hot only makes as many "
            "classes as the largest value it sees)",
        )
    hint = "one probability per level and sub-pixel: (K, C, H, W)"
    tensor_rule(got, "fit_independent", ref.shape, hint, shapes=shapes, where=where)


def _fit_mistakes(counts, ref, n, levels, alpha):
    """{name: (what the mistake returns, message, hint)} for the plausible mistakes of task 3 (`ref`: the answer)."""
    return {
        "no pseudo-counts": (
            counts / n,
            "no pseudo-counts: a level never seen in training gets probability 0, "
            "so one test image with it would have infinite NLL",
            "add alpha to every count (Laplace smoothing)",
        ),
        "reversed": (ref.flip(0), "the levels are in reverse order", "entry [k] must be the probability of level k"),
        "multiplied": (
            (counts + alpha) * (n + alpha * levels),
            "you multiplied by N + K * alpha instead of dividing by it",
            "p = (count + alpha) / (N + K * alpha)",
        ),
    }


def _formula_rule(got, counts, n, levels, alpha, where):
    """When the learner's probabilities are exactly (count + a) / D for one pseudo-count a and one denominator D
    (a straight line through every (count, probability) pair): fail naming the wrong part of
    p = (count + alpha) / (N + K * alpha), and the right one."""
    x, y = counts.flatten(), got.flatten()
    slope = ((x - x.mean()) * (y - y.mean())).mean() / ((x - x.mean()) ** 2).mean()  # (NaN when x is constant)
    intercept = y.mean() - slope * x.mean()
    if x.var() < 1e-9 or slope <= 0 or (y - (slope * x + intercept)).abs().max() > 1e-6:
        return
    a, d, want = (intercept / slope).item(), (1 / slope).item(), n + alpha * levels
    yours, expected = f"(count + {a:.4g}) / {d:.4g}", f"(count + {alpha:g}) / {want:g}"
    if not math.isclose(a, alpha, rel_tol=1e-4, abs_tol=1e-4) and math.isclose(d, want, rel_tol=1e-4):
        fail(
            f"the numerator is wrong {where}: each probability must be (count + alpha) / (N + K * alpha), {expected} "
            f"here; yours is {yours}. Your denominator is right",
            "add alpha once to the count of each level: the numerator is count + alpha",
        )
    if math.isclose(a, alpha, rel_tol=1e-4, abs_tol=1e-4):
        plus_alpha = math.isclose(d, n + alpha, rel_tol=1e-4)
        fail(
            f"the denominator is wrong, so the probabilities do not sum to 1 over the levels {where}: yours divides "
            f"(count + alpha) by {d:.4g}" + (", your denominator is N + alpha" if plus_alpha else "") + f", expected N "
            f"+ K * alpha = {n} + {levels} * {alpha:g} = {want:g}. Your numerator is right",
            "the denominator needs alpha once for every level, K times: N + K * alpha, N the number of images "
            "(images.shape[0])",
        )
    fail(
        f"both the numerator and the denominator are wrong {where}: yours is {yours}, expected {expected}",
        "p = (count + alpha) / (N + K * alpha): alpha once per level in the numerator, K times in the denominator",
    )


@isolated
@no_delegation("course_lib.likelihood.IndependentPixelModel")
def check_fit_independent(fit_independent):
    """Task 3: `fit_independent(images, levels, alpha)` -> probabilities (K, C, H, W) by counting, with
    `alpha` pseudo-counts per level, binary and 4-level, 1 to 3 channels, also for a level no image uses."""
    g = fresh_generator()
    for levels, c, alpha, absent in ((2, 1, 1.0, None), (2, 1, 0.5, None), (4, 3, 1.0, None), (4, 2, 0.5, 3)):
        images = _fit_images(g, levels, c, absent)
        got = _as_float64(call(fit_independent, images.clone(), levels, alpha), "fit_independent")
        counts, n = F.one_hot(images.long(), levels).sum(0).permute(3, 0, 1, 2).double(), len(images)  # (K, C, H, W)
        ref = (counts + alpha) / (n + alpha * levels)
        if close(got, ref, "probability"):
            continue
        where = f"({levels} levels, {c} channel{'s' * (c > 1)}, alpha={alpha})"
        _fit_shape_rules(got, ref, images, levels, where)
        first_match(got, _fit_mistakes(counts, ref, n, levels, alpha), "probability", where=where)
        _formula_rule(got, counts, n, levels, alpha, where)
        if (got - ref.mean((1, 2, 3), keepdim=True)).abs().max() < 0.05 or got.flatten(1).std(1).max() < 1e-6:
            fail(
                f"one probability shared by all pixels {where}: the baseline has its own probabilities for every "
                "sub-pixel",
                "count over the images only (dimension 0)",
            )
        if not close(got.sum(0), torch.ones_like(ref[0]), "log_prob"):
            fail(f"the probabilities of a sub-pixel do not sum to 1 over the levels {where}",
                 "normalise the smoothed counts by N + K * alpha")  # fmt: skip
        k, ch, i, j = (int(v) for v in torch.nonzero((got - ref).abs() > 1e-5)[0])
        fail(
            f"wrong probability for level {k} at (c={ch}, i={i}, j={j}) {where}: got {got[k, ch, i, j].item():.4f}, "
            f"expected {ref[k, ch, i, j].item():.4f}",
            "(count of that level at that sub-pixel + alpha) / (N + K * alpha)",
        )
    passed(
        "fit_independent: per-sub-pixel frequencies with alpha pseudo-counts, summing to 1, "
        "binary and 4-level, 1 to 3 channels, also for a level that never occurs"
    )


# -- task 4: evaluate_nll(model, dataset, batch_size) ---------------------------------------------------
class _FixedModel(nn.Module):
    """The same Bernoulli logits for every image, whatever the input: each image's NLL is known exactly."""

    def __init__(self, logits):
        super().__init__()
        self.logit = nn.Parameter(logits.clone())

    def forward(self, x, labels=None):
        return self.logit.expand(x.shape[0], *self.logit.shape)


@isolated
@no_delegation("course_lib.likelihood.evaluate", "course_lib.likelihood.nll")
def check_evaluate(evaluate_nll):
    """Task 4: `evaluate_nll(model, dataset, batch_size)` returns the average NLL in nats per image over every
    image of `dataset` (last, smaller batch included), as a float, in eval mode, without gradients, the caller's
    mode restored."""
    g = fresh_generator()
    bs = int(torch.randint(4, 8, (), generator=g))
    n = bs * int(torch.randint(3, 5, (), generator=g)) + int(torch.randint(1, bs, (), generator=g))
    # images sorted by ink, so the last batch differs from the others and dropping it shows; the model expects
    # little ink, so an image's NLL grows with its ink and the last batch scores worst
    images = (torch.rand(n, 1, 4, 4, generator=g) < torch.linspace(0.1, 0.9, n)[:, None, None, None]).float()
    dataset = ImageDataset("random", images, torch.zeros(n, dtype=torch.long))
    logits = torch.randn(1, 4, 4, generator=g) * 0.5 - 1.5
    per_image = _ref_nll(logits.expand(n, 1, 4, 4), dataset.images)
    model = _FixedModel(logits).train()
    raw, calls = run_watched(call, evaluate_nll, model, dataset, bs)
    got = _as_float64(raw, "evaluate_nll")
    if got.numel() != 1:
        fail(f"evaluate_nll returned {got.numel()} numbers", "return one float: the mean NLL per image")
    if not close(got.reshape(()), per_image.mean(), "log_prob"):
        implied = per_image.sum().item() / got.item() if got.item() else 0.0  # what the learner divided by
        count = round(implied) if implied >= 1 and abs(implied - round(implied)) < 1e-3 else None
        diagnose_nll(got.item(), per_image, bs, dims=16, count=count, what="evaluate_nll's mean NLL per image")
    images_rule(calls, n, bs, "evaluate_nll")
    eval_rules(calls, "evaluate_nll")
    plain_number_rule("evaluate_nll", result=raw)
    mode_restored_rule(model, True, "evaluate_nll")
    model.eval()
    call(evaluate_nll, model, dataset, bs)
    mode_restored_rule(model, False, "evaluate_nll")
    passed(
        f"evaluate_nll: mean nats per image over all {n} images (batch size {bs}, last batch of {n % bs} "
        "included), in eval mode, without gradients, and the caller's mode restored"
    )
