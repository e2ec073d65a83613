"""Checks for lesson 01 (likelihood): `nll`, `bits_per_dim`, the independent baseline by counting, and
an evaluation loop over every image.

Each check calls the learner's code on fresh random inputs, compares with reference behaviour computed
here, recognises the classic mistakes (bits for nats, mean instead of sum over pixels, a dropped last
batch, ...) by what they would return, and prints one verdict line. It raises `CheckFailed` on failure.
"""

import math
import traceback

import torch
import torch.nn as nn
import torch.nn.functional as F

from .helpers import LN2, _in_library, close, fail, fresh_generator, isolated, learner_call, no_delegation, passed


# ---------------------------------------------------------------------------------------------------
# shared helpers
def _as_float64(value, what):
    """The learner's result as a float64 tensor (detached), or a clear failure."""
    try:
        return torch.as_tensor(value.detach() if torch.is_tensor(value) else value).double()
    except Exception:
        fail(f"{what} returned {type(value).__name__}, not a number or a tensor", "return a torch tensor")


def _error_text(error):
    """`TypeError: message (at `the learner's line`)` for an exception the learner's code raised."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    text = type(error).__name__ + (f" ({message[:150]})" if message else "")
    lines = [f.line for f in traceback.extract_tb(error.__traceback__) if f.line and not _in_library(f.filename)]
    return text + (f" at `{lines[-1].strip()}`" if lines else "")


def _close(a, b, rtol=1e-4, atol=1e-4):
    return close(a, b, rtol=rtol, atol=atol)


def _ref_nll(logits, x):
    """Reference NLL in nats per image, float64, shape (B,)."""
    if logits.dim() == 4:
        per = F.binary_cross_entropy_with_logits(logits.double(), x.double(), reduction="none")
    else:
        per = F.cross_entropy(logits.double(), x.long(), reduction="none")
    return per.flatten(1).sum(1)


# ---------------------------------------------------------------------------------------------------
# task 1: nll(logits, x)
def _random_case(kind, g):
    b = int(torch.randint(3, 7, (), generator=g))
    c = 1 if kind == "bernoulli" else int(torch.randint(1, 4, (), generator=g))
    h, w = (int(v) for v in torch.randint(2, 6, (2,), generator=g))
    if kind == "bernoulli":
        logits = torch.randn(b, c, h, w, generator=g) * 2
        x = torch.randint(0, 2, (b, c, h, w), generator=g)
    else:
        k = int(torch.randint(3, 6, (), generator=g))
        logits = torch.randn(b, k, c, h, w, generator=g) * 2
        x = torch.randint(0, k, (b, c, h, w), generator=g)
    return logits, x


def _diagnose_nll(got, ref, logits, x):
    """Message and hint for a wrong NLL, recognising the classic mistakes."""
    b = ref.shape[0]
    d = x[0].numel()
    if got.numel() == 1 and b > 1:
        got = got.reshape(())
        if math.isclose(got.item(), ref.mean().item(), rel_tol=1e-4):
            return (
                "you averaged over the images: nll must return one value per image, shape (B,)",
                "keep the batch dimension; average over images only when you report a data set",
            )
        if math.isclose(got.item(), ref.sum().item(), rel_tol=1e-4):
            return (
                "you summed over the images too: nll must return one value per image, shape (B,)",
                "sum over the sub-pixel dimensions (C, H, W) only",
            )
        if math.isclose(got.item(), (ref / d).mean().item(), rel_tol=1e-4):
            return (
                "you took the mean over pixels and images (PyTorch's default reduction): "
                "that is nats per pixel of the batch, not nats per image",
                "use reduction='none', then sum over C, H, W for each image",
            )
        return (f"nll returned a single number for a batch of {b} images", "return a tensor of shape (B,)")
    if got.shape == x.shape:
        return (
            "you returned one value per sub-pixel, shape (B, C, H, W)",
            "the NLL of an image is the sum over its C*H*W sub-pixels: shape (B,)",
        )
    if got.shape != ref.shape:
        return (
            f"nll returned shape {tuple(got.shape)}, expected ({b},): one value per image",
            "sum the per-sub-pixel NLL over every dimension but the batch",
        )
    if _close(got, -ref):
        return (
            "the sign is wrong: you returned the log-likelihood, not the negative log-likelihood",
            "an NLL is never negative",
        )
    if _close(got, ref / LN2):
        return (
            "you reported bits, not nats (your values are the nats divided by ln 2)",
            "use the natural logarithm; convert to bits only in bits_per_dim",
        )
    if _close(got, ref / d):
        return (
            "you took the mean over pixels instead of the sum: that is nats per pixel, "
            f"{d} times too small for nats per image",
            "the probability of an image is the product over its pixels, so its log is a sum",
        )
    if _close(got, ref / (d * LN2)):
        return (
            "you returned bits per dimension (mean over pixels, in bits), not nats per image",
            "sum over the pixels and stay in nats",
        )
    if logits.dim() == 4 and _close(got, _ref_nll(-logits, x)):
        return (
            "you scored the wrong value: a Bernoulli logit is the log-odds of pixel = 1, not of pixel = 0",
            "the target of each sub-pixel is x itself",
        )
    if logits.dim() == 5:
        return (
            "wrong values for categorical logits of shape (B, K, C, H, W)",
            "the K levels are dimension 1 of the logits; the target x holds integer levels 0..K-1",
        )
    i = int((got - ref).abs().argmax())
    return (
        f"wrong values: image {i} got {got[i].item():.4f}, expected {ref[i].item():.4f} nats",
        "per sub-pixel, -log p(x) with p = sigmoid(logit) for x = 1 and 1 - sigmoid(logit) for x = 0",
    )


@isolated
@no_delegation("course_lib.models.log_prob_from_logits", "course_lib.likelihood.nll")
def check_nll(nll):
    """Task 1: `nll(logits, x)` returns the NLL in nats of each image, shape (B,), for Bernoulli logits
    (B, C, H, W) and categorical logits (B, K, C, H, W)."""
    g = fresh_generator()
    for kind in ("bernoulli", "bernoulli", "categorical", "categorical"):
        logits, x = _random_case(kind, g)
        if kind == "categorical":
            try:
                got = nll(logits.clone(), x.clone())
            except NotImplementedError:
                learner_call(nll, logits, x)
            except Exception as err:  # the learner's code may fail in any way
                fail(
                    f"nll works for Bernoulli logits (B, C, H, W) but raised {_error_text(err)} for "
                    "categorical logits of shape (B, K, C, H, W)",
                    "handle both layouts: 4 dimensions are Bernoulli logits, 5 are K-way logits with the "
                    "levels in dimension 1",
                )
        else:
            got = learner_call(nll, logits.clone(), x.clone())
        got = _as_float64(got, "nll")
        ref = _ref_nll(logits, x)
        if not _close(got, ref):
            msg, hint = _diagnose_nll(got, ref, logits, x)
            if kind == "categorical":
                msg = "Bernoulli logits are right, but with categorical logits: " + msg
            fail(msg, hint)
    # a large, confident logit must not overflow (log(sigmoid) computed naively gives inf)
    logits = torch.tensor([[[[40.0, -40.0]]]])
    x = torch.tensor([[[[0, 1]]]])
    got = _as_float64(learner_call(nll, logits, x), "nll")
    if not (got.numel() == 1 and torch.isfinite(got).all() and abs(got.item() - 80.0) < 1e-2):
        fail(
            "nll is not numerically stable: logits of ±40 on the wrong pixel value should cost 80 nats, "
            f"got {got.flatten().tolist()}",
            "compute log-probabilities from logits directly (log-sigmoid / log-softmax), "
            "never the log of a probability",
        )
    passed("nll: nats per image (summed over C, H, W), one value per image, for Bernoulli and categorical logits")


# ---------------------------------------------------------------------------------------------------
# task 2: bits_per_dim(nats_per_image, dims)
@isolated
@no_delegation("course_lib.likelihood.bits_per_dim")
def check_bits_per_dim(bits_per_dim):
    """Task 2: `bits_per_dim(nats_per_image, dims)` = nats / (dims * ln 2), for floats and tensors."""
    g = fresh_generator()
    nats = torch.rand(5, generator=g, dtype=torch.float64) * 300 + 10
    dims = int(torch.randint(50, 800, (), generator=g))
    cases = [(nats, dims), (float(nats[0]), dims)]  # the tensor first: its 5 values tell numerator from denominator
    for value, d in cases:
        got = _as_float64(learner_call(bits_per_dim, value, d), "bits_per_dim")
        ref = torch.as_tensor(value, dtype=torch.float64) / (d * LN2)
        if _close(got, ref, rtol=1e-6, atol=1e-9):
            continue
        if got.shape != ref.shape:
            fail(
                f"bits_per_dim returned shape {tuple(got.shape)} for input of shape {tuple(ref.shape)}",
                "work element-wise: a float gives a float, a tensor of NLLs a tensor of the same shape",
            )
        for factor, msg, hint in (
            (
                LN2,
                "you forgot to convert nats to bits: that is nats per dimension",
                "1 nat = 1/ln 2 bits: divide by ln 2",
            ),
            (d, "you forgot to divide by the number of dimensions: that is bits per image", "divide by D = C*H*W"),
            (
                LN2 * LN2,
                "you multiplied by ln 2 instead of dividing: 1 nat = 1/ln 2 ≈ 1.443 bits",
                "bits = nats / ln 2",
            ),
            (LN2 / math.log10(2), "you used log10(2) instead of ln 2", "the NLL is in nats: use math.log(2)"),
            (1 / LN2**2, "you divided by ln 2 twice", "bits = nats / ln 2, once"),
            (d * LN2, "you returned nats per image unchanged", "divide by D and by ln 2"),
            (
                (d * LN2) ** 2,
                "you multiplied by D · ln 2 instead of dividing by it",
                "bits/dim = nats per image / (D * ln 2)",
            ),
            (d * d, "you multiplied by D instead of dividing by it", "bits/dim = nats per image / (D * ln 2)"),
        ):
            if _close(got, ref * factor, rtol=1e-6, atol=1e-9):
                fail(msg, hint)
        given = torch.as_tensor(value, dtype=torch.float64)
        ratio = given / got  # what the learner divided each NLL by
        if got.numel() > 1 and torch.isfinite(ratio).all() and _close(ratio, ratio.flatten()[0].expand_as(ratio)):
            fail(
                f"the denominator is wrong: your bits_per_dim divides the NLL by {ratio.flatten()[0].item():.6g}, "
                f"but with D = {d} it must divide by D · ln 2 = {d * LN2:.6g} (the numerator, the NLL itself, is right)",
                "bits/dim = nats per image / (D * ln 2): ln 2 converts nats to bits, D makes it per dimension",
            )
        if got.numel() > 1:
            fail(
                "the numerator is wrong: your bits per dimension are not proportional to the NLL "
                f"(bits_per_dim({given.flatten()[0].item():.3f}, {d}) returned {got.flatten()[0].item():.6f}, "
                f"expected {ref.flatten()[0].item():.6f})",
                "divide nats_per_image itself, unchanged, by D * ln 2",
            )
        fail(
            f"bits_per_dim({float(given.flatten()[0]):.3f}, {d}) returned "
            f"{got.flatten()[0].item():.6f}, expected {ref.flatten()[0].item():.6f}",
            "bits/dim = nats per image / (D * ln 2)",
        )
    passed("bits_per_dim: nats per image / (D · ln 2), for a float and for a tensor")


# ---------------------------------------------------------------------------------------------------
# task 3: fit_independent(images, levels, alpha)
def _ref_independent(images, levels, alpha):
    counts = F.one_hot(images.long(), levels).sum(0).permute(3, 0, 1, 2).double()  # (K, C, H, W)
    return (counts + alpha) / (images.shape[0] + alpha * levels)


def _smoothing_fit(got, counts):
    """(a, D) when `got` is exactly (counts + a) / D for one pseudo-count a and one denominator D (a straight
    line through every (count, probability) pair), else None: what the learner's formula computed."""
    x, y = counts.flatten(), got.flatten()
    if x.var() < 1e-9:
        return None
    slope = ((x - x.mean()) * (y - y.mean())).mean() / ((x - x.mean()) ** 2).mean()
    intercept = y.mean() - slope * x.mean()
    if slope <= 0 or (y - (slope * x + intercept)).abs().max() > 1e-6:
        return None
    return (intercept / slope).item(), (1 / slope).item()


@isolated
@no_delegation("course_lib.likelihood.IndependentPixelModel")
def check_fit_independent(fit_independent):
    """Task 3: `fit_independent(images, levels, alpha)` -> probabilities (K, C, H, W) by counting, with
    `alpha` pseudo-counts per level."""
    g = fresh_generator()
    # the last case: level 3 of 4 never occurs in the images at all, yet it needs its (smoothed) probability
    for levels, c, alpha, absent in ((2, 1, 1.0, None), (2, 1, 0.5, None), (4, 3, 1.0, None), (4, 2, 0.5, 3)):
        n = int(torch.randint(20, 40, (), generator=g))
        h, w = (int(v) for v in torch.randint(3, 6, (2,), generator=g))
        p = torch.rand(levels, c, h, w, generator=g) ** 3  # some levels rare, so zero counts happen
        p[:, :, 0, 0] = 0
        p[0, :, 0, 0] = 1  # pixel (0, 0) never takes a level > 0
        if absent is not None:
            p[absent] = 0
            p[0] += 0.05  # every pixel keeps some level it can take
        p = p / p.sum(0, keepdim=True)
        images = torch.multinomial(
            p.permute(1, 2, 3, 0).reshape(-1, levels), n, replacement=True, generator=g
        ).T.reshape(n, c, h, w)
        got = _as_float64(learner_call(fit_independent, images.clone(), levels, alpha), "fit_independent")
        ref = _ref_independent(images, levels, alpha)
        if _close(got, ref, rtol=1e-5, atol=1e-6):
            continue
        where = f"({levels} levels, {c} channel{'s' * (c > 1)}, alpha={alpha})"
        if got.shape == (c, h, w) and levels == 2:
            fail(
                f"you returned only p(pixel = 1), shape (C, H, W) {where}",
                "return the probability of every level, shape (K, C, H, W)",
            )
        if got.shape == (c, h, w, levels):
            fail(
                f"levels are the last dimension {where}; expected shape (K, C, H, W), levels first",
                "put the level dimension first (permute)",
            )
        seen_levels = int(images.max()) + 1
        if got.dim() == 4 and got.shape[1:] == ref.shape[1:] and got.shape[0] == seen_levels < levels:
            fail(
                f"you returned probabilities for {got.shape[0]} levels, not {levels}: level {levels - 1} never "
                f"occurs in these images, and your counting dropped it {where}. It still needs its probability, "
                "alpha / (N + K * alpha), or a test image that uses it has no probability at all",
                "count over all K = levels levels: F.one_hot(x, levels) (without num_classes, one_hot only makes "
                "as many classes as the largest value it sees)",
            )
        if got.shape != ref.shape:
            fail(
                f"fit_independent returned shape {tuple(got.shape)}, expected {tuple(ref.shape)} {where}",
                "one probability per level and sub-pixel: (K, C, H, W)",
            )
        if _close(got, _ref_independent(images, levels, 0.0), rtol=1e-5, atol=1e-6):
            fail(
                f"no pseudo-counts: a level never seen in training gets probability 0 {where}, "
                "so one test image with it would have infinite NLL",
                "add alpha to every count (Laplace smoothing)",
            )
        if _close(got, ref.flip(0), rtol=1e-5, atol=1e-6):
            fail(f"the levels are in reverse order {where}", "entry [k] must be the probability of level k")
        counts = F.one_hot(images.long(), levels).sum(0).permute(3, 0, 1, 2).double()
        denominator = n + alpha * levels
        if _close(got, (counts + alpha) * denominator, rtol=1e-5, atol=1e-6):
            fail(
                f"you multiplied by N + K * alpha instead of dividing by it {where}",
                "p = (count + alpha) / (N + K * alpha)",
            )
        fitted = _smoothing_fit(got, counts)
        if fitted is not None:
            a, d = fitted
            right_a = math.isclose(a, alpha, rel_tol=1e-4, abs_tol=1e-4)
            right_d = math.isclose(d, denominator, rel_tol=1e-4, abs_tol=1e-4)
            if right_d and not right_a:
                fail(
                    f"the numerator is wrong {where}: each probability must be (count + alpha) / (N + K * alpha), "
                    f"(count + {alpha:g}) / {denominator:g} here; yours is (count + {a:.4g}) / {d:.4g}. "
                    "Your denominator is right",
                    "add alpha once to the count of each level: the numerator is count + alpha",
                )
            if right_a and math.isclose(d, n + alpha, rel_tol=1e-4, abs_tol=1e-4):
                fail(
                    f"the probabilities do not sum to 1 over the levels {where}: your denominator is N + alpha "
                    f"= {d:.4g}, but each of the K = {levels} levels adds alpha to its count",
                    "the denominator needs alpha once for every level: N + K * alpha",
                )
            if right_a:
                fail(
                    f"the denominator is wrong, so the probabilities do not sum to 1 over the levels {where}: "
                    f"yours divides (count + alpha) by {d:.4g}, expected N + K * alpha = {n} + {levels} * {alpha:g} "
                    f"= {denominator:g}. Your numerator is right",
                    "N is the number of images (images.shape[0]), K the number of levels",
                )
            fail(
                f"both the numerator and the denominator are wrong {where}: yours is (count + {a:.4g}) / {d:.4g}, "
                f"expected (count + {alpha:g}) / {denominator:g}",
                "p = (count + alpha) / (N + K * alpha): alpha once per level in the numerator, K times in the "
                "denominator",
            )
        pooled = ref.mean((1, 2, 3), keepdim=True).expand_as(ref)
        if (got - pooled).abs().max() < 0.05 or got.flatten(1).std(1).max() < 1e-6:
            fail(
                f"one probability shared by all pixels {where}: the baseline has its own "
                "probabilities for every sub-pixel",
                "count over the images only (dimension 0)",
            )
        sums = got.sum(0)
        if not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
            fail(
                f"the probabilities of a sub-pixel do not sum to 1 over the levels {where}",
                "normalise the smoothed counts by N + K * alpha",
            )
        k, ch, i, j = (int(v) for v in torch.nonzero((got - ref).abs() > 1e-5)[0])
        fail(
            f"wrong probability for level {k} at (c={ch}, i={i}, j={j}) {where}: "
            f"got {got[k, ch, i, j].item():.4f}, expected {ref[k, ch, i, j].item():.4f}",
            "(count of that level at that sub-pixel + alpha) / (N + K * alpha)",
        )
    passed(
        "fit_independent: per-sub-pixel frequencies with alpha pseudo-counts, summing to 1, "
        "binary and 4-level, 1 to 3 channels, also for a level that never occurs"
    )


# ---------------------------------------------------------------------------------------------------
# task 4: evaluate_nll(model, dataset, batch_size)
class _ProbeModel(nn.Module):
    """A fixed-probability model that records how it is called: mode, gradients, images seen."""

    def __init__(self, logits):
        super().__init__()
        self.logit = nn.Parameter(logits.clone())
        self.image_shape = tuple(logits.shape)
        self.num_classes = None
        self.calls = []  # (training, grad_enabled, batch size)

    def forward(self, x, labels=None):
        self.calls.append((self.training, torch.is_grad_enabled(), x.shape[0]))
        return self.logit.expand(x.shape[0], *self.image_shape)


class _ListDataset(torch.utils.data.Dataset):
    def __init__(self, images):
        self.images = images
        self.image_shape = tuple(images.shape[1:])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], torch.tensor(0)


@isolated
@no_delegation("course_lib.likelihood.evaluate", "course_lib.likelihood.nll")
def check_evaluate(evaluate_nll):
    """Task 4: `evaluate_nll(model, dataset, batch_size)` returns the average NLL in nats per image over
    every image of `dataset` (last, smaller batch included), in eval mode, without gradients."""
    g = fresh_generator()
    bs = int(torch.randint(4, 8, (), generator=g))
    n = bs * int(torch.randint(3, 5, (), generator=g)) + int(torch.randint(1, bs, (), generator=g))
    c, h, w = 1, 4, 4
    # images sorted by ink, so the last batch differs from the others and dropping it shows
    images = (torch.rand(n, c, h, w, generator=g) < torch.linspace(0.1, 0.9, n)[:, None, None, None]).long()
    # a model that expects little ink: an image's NLL grows with its ink, so the last batch scores worst
    logits = torch.randn(c, h, w, generator=g) * 0.5 - 1.5
    model = _ProbeModel(logits)
    model.train()
    raw = learner_call(evaluate_nll, model, _ListDataset(images), bs)
    got = _as_float64(raw, "evaluate_nll")
    seen = sum(k for _, _, k in model.calls)
    kept = (n // bs) * bs
    if seen == kept < n:
        fail(
            f"you dropped the last batch: only {kept} of the {n} images were scored",
            "never use drop_last=True for evaluation; every test image counts",
        )
    with torch.no_grad():
        per_image = _ref_nll(logits.expand(n, c, h, w), images)
    ref = per_image.mean()
    d = c * h * w
    if got.numel() != 1:
        fail(f"evaluate_nll returned {got.numel()} numbers", "return one float: the mean NLL per image")
    got = got.reshape(())
    ok = math.isclose(got.item(), ref.item(), rel_tol=1e-4, abs_tol=1e-4)
    if not ok:
        batch_means = torch.stack([per_image[s : s + bs].mean() for s in range(0, n, bs)])
        for value, msg, hint in (
            (
                per_image[:kept].mean(),
                f"you dropped the last batch: only {kept} of the {n} images were scored",
                "never use drop_last=True for evaluation; every test image counts",
            ),
            (
                batch_means.mean(),
                "you averaged the batch means: the last, smaller batch weighs as much as a full one",
                "add up the per-image NLLs over all batches and divide by the number of images",
            ),
            (ref / LN2, "you reported bits, not nats", "stay in nats; convert with bits_per_dim"),
            (
                -ref,
                "your NLL is negative: the sign is wrong (a negative log-likelihood is never negative)",
                "add each batch's NLLs to the total (+=), and divide the total by the number of images",
            ),
            (
                ref / d,
                "you averaged over pixels: that is nats per pixel, not per image",
                "sum over the pixels of an image, average over images",
            ),
            (
                per_image.sum(),
                "you returned the total over the data set, not the average per image",
                "divide by the number of images",
            ),
            (
                per_image[:kept].sum() / n,
                "the last batch's NLL is missing from the total",
                "add every batch, including the last, smaller one",
            ),
            (
                (per_image[:kept].sum() + per_image[kept:].mean() * bs) / n,
                f"you counted the last batch as a full one: it has {n - kept} images, not {bs}",
                "add up each batch's per-image NLLs (sum), not its mean times the batch size",
            ),
            (
                per_image.sum() / len(batch_means),
                "you divided the total by the number of batches, not by the number of images",
                "count the images: count += x.shape[0] for every batch",
            ),
        ):
            if math.isclose(got.item(), value.item(), rel_tol=1e-4, abs_tol=1e-4):
                fail(msg, hint)
        if seen < n:
            fail(f"the model saw only {seen} of the {n} images", "loop over every batch of the data set")
        fail(
            f"evaluate_nll returned {got.item():.4f} nats per image, expected {ref.item():.4f}",
            "mean over all images of each image's NLL (summed over its pixels), in nats",
        )
    if seen > n:
        fail(
            f"the model scored {seen} images but the data set has {n}: some were scored twice",
            "one pass over the data set",
        )
    if any(training for training, _, _ in model.calls):
        fail(
            "the model was in train mode during evaluation (dropout or batch statistics would change the numbers)",
            "call model.eval() before the loop",
        )
    if any(grad for _, grad, _ in model.calls):
        fail(
            "evaluation built a computation graph for gradients it never uses (memory and time wasted)",
            "wrap the loop in torch.no_grad()",
        )
    largest = max(k for _, _, k in model.calls)
    if largest != bs:
        fail(
            f"the model saw batches of up to {largest} images, but batch_size was {bs}: your loop ignores the "
            "batch_size argument",
            "DataLoader(dataset, batch_size=batch_size)",
        )
    if torch.is_tensor(raw):
        fail(
            "evaluate_nll returned a tensor, not a float: the value is right, but a reported number should be "
            "a plain Python float",
            "turn the tensor into a float with .item()",
        )
    if not model.training:
        fail(
            "evaluate_nll left the model in eval mode, but it arrived in train mode: the caller's next training "
            "step would run without dropout or batch statistics",
            "remember the caller's mode (was_training = model.training) and restore it at the end with "
            "model.train(was_training)",
        )
    model = _ProbeModel(logits)
    model.eval()
    learner_call(evaluate_nll, model, _ListDataset(images), bs)
    if model.training:
        fail(
            "evaluate_nll put a model that arrived in eval mode into train mode: restore the caller's mode, "
            "not always train mode",
            "remember was_training = model.training before model.eval(), and call model.train(was_training) at the end",
        )
    passed(
        f"evaluate_nll: mean nats per image over all {n} images (batch size {bs}, last batch of {n % bs} "
        "included), in eval mode, without gradients, and the caller's mode restored"
    )
