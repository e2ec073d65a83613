"""The rules of evaluation and of training, written once for every check that grades such a function
(lessons 01 and 03's evaluate_nll, lesson 03's train_step, lesson 05's fine-tuning and scoring), and the one
diagnosis of a wrong mean NLL per image (`diagnose_nll`) and of a wrong training loss (`diagnose_loss`).

A check records the model's forward passes with `watching(model)` (or `run_watched`), then applies the rules
it needs in the order it wants its verdicts. Every rule fails with `fail(message, hint)` or returns quietly.
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager

import torch

from .helpers import LN2, close, fail, first_match


# -- watching a model ---------------------------------------------------------------------------------------
@contextmanager
def watching(model):
    """Record every forward pass of `model` while the block runs; yields the list of records, one dict per
    pass: training (the mode), grad (gradients on), autocast and dtype (for the model's device type),
    device (of the input), batch (the input's first dimension, 0 if none)."""
    calls, kind = [], next(model.parameters()).device.type

    def record(module, args):
        x = args[0] if args else None
        calls.append(
            {
                "training": module.training,
                "grad": torch.is_grad_enabled(),
                "autocast": torch.is_autocast_enabled(kind),
                "dtype": torch.get_autocast_dtype(kind),
                "device": x.device if torch.is_tensor(x) else None,
                "batch": int(x.shape[0]) if torch.is_tensor(x) and x.dim() else 0,
            }
        )

    handle = model.register_forward_pre_hook(record)
    try:
        yield calls
    finally:
        handle.remove()


def run_watched(caller, fn, model, *args, **kwargs):
    """`caller(fn, model, *args, **kwargs)` (e.g. `helpers.call`) while watching `model`: (result, calls)."""
    with watching(model) as calls:
        result = caller(fn, model, *args, **kwargs)
    return result, calls


def as_float(value):
    """The learner's number (a float, an int or a one-element tensor) as a float, or None."""
    try:
        return float(value.detach().item() if torch.is_tensor(value) else value)
    except Exception:
        return None


def model_called_rule(calls, name, where=""):
    """The function ran the model at least once."""
    if not calls:
        fail(f"{name} never called the model {where}".strip(), "compute logits = model(x) for every batch")


# -- evaluation -----------------------------------------------------------------------------------------------
def eval_rules(calls, name, doing="evaluated"):
    """Every forward pass in eval mode and without gradients. `doing`: what the function does with the model
    ("evaluated", "scored"), for the messages."""
    model_called_rule(calls, name)
    if any(c["training"] for c in calls):
        fail(
            f"the model was {doing} in training mode (train mode): dropout or batch statistics would change the "
            "numbers",
            "call model.eval() before the loop, and restore the caller's mode at the end",
        )
    if any(c["grad"] for c in calls):
        fail(
            f"the model was {doing} with gradients on: it recorded gradients it never uses (no torch.no_grad(); "
            "memory and time wasted)",
            "wrap the loop in `with torch.no_grad():` (or decorate the function with @torch.no_grad())",
        )


def mode_restored_rule(model, arrived_training, name):
    """After the call, `model` is back in the mode it arrived in (`arrived_training`)."""
    if arrived_training and not model.training:
        fail(
            f"{name} left the model in eval mode, but it arrived in train mode: the caller's next training step "
            "would run without dropout or batch statistics",
            "remember was_training = model.training and call model.train(was_training) at the end",
        )
    if not arrived_training and model.training:
        fail(
            f"the model arrived in eval mode and left in training mode: {name} must put it back into the mode it "
            "was in, not always into training mode",
            "was_training = model.training before model.eval(), and model.train(was_training) at the end",
        )


def images_rule(calls, n, batch_size, name):
    """The model saw each of the `n` images once (the last, smaller batch included), in batches of
    `batch_size`. Dropping the last batch, scoring fewer images and scoring some twice get their own message."""
    seen, kept = sum(c["batch"] for c in calls), n - n % batch_size
    if seen == kept < n:
        fail(*_dropped(n, batch_size))
    if seen < n:
        fail(f"the model saw only {seen} of the {n} images", "loop over every batch of the data set")
    if seen > n:
        fail(f"the model scored {seen} images but the data set has {n}: some were scored twice", "one pass only")
    largest = max((c["batch"] for c in calls), default=0)
    if largest != batch_size:
        fail(f"batch_size={batch_size} was ignored: the model saw at most {largest} images per batch",
             "pass it on: DataLoader(dataset, batch_size=batch_size)")  # fmt: skip


def _dropped(n, batch_size):
    """(message, hint) of a dropped last, incomplete batch."""
    kept = n - n % batch_size
    return (
        f"the last, incomplete batch was dropped: only {kept} of the {n} images were scored with batch size "
        f"{batch_size}",
        "never use drop_last=True for evaluation (every test image counts); divide the summed NLL by the number of "
        "images seen",
    )


def plain_number_rule(name, **values):
    """Each value is a plain Python number, not a tensor. `values`: {what: value}; a single value may be
    passed as result=... (the message then names no key)."""
    tensors = [key for key, value in values.items() if torch.is_tensor(value)]
    if tensors:
        keys = "" if tensors == ["result"] else " for " + ", ".join(repr(k) for k in tensors)
        fail(
            f"{name} returned a tensor{keys}, not a float (a plain Python number)",
            "`.item()` turns a one-element tensor into a float (printing, JSON and comparisons then behave as "
            "expected, and no graph is kept alive)",
        )


# -- on the model's device: errors about devices explained -----------------------------------------------------
def on_device_rule(calls, device, where=""):
    """Every forward pass got its input on `device`, the model's (for a model really on a GPU; without one,
    `probes.probe_device` tests the same on the meta device)."""
    if any(c["device"] != device for c in calls):
        fail(f"the batch was not moved to the model's device {where}".strip(),
             "x = x.to(next(model.parameters()).device) before the forward pass")  # fmt: skip


DEVICE_HINTS = [  # (does an error message (lower case) say this?, what is actually wrong)
    (
        lambda t: t.endswith("device string: auto"),
        "'auto' is not a device name but a request to choose: treat it like None",
    ),
    (
        lambda t: "device string" in t or "invalid device" in t,
        "that is not a device name PyTorch knows: use 'cuda', 'mps' or 'cpu' (with an index if needed, 'cuda:1'), "
        "and return torch.device(name)",
    ),
    (
        lambda t: "autocast" in t and "device_type" in t,
        "torch.autocast needs the type of the model's device: torch.autocast(device.type, dtype=torch.bfloat16)",
    ),
    (
        lambda t: "nvidia driver" in t or "not compiled with cuda" in t or "no cuda gpus" in t,
        "your code asks for CUDA on a machine without it: use the model's device, next(model.parameters()).device, "
        "instead of a hard-coded 'cuda'",
    ),
    (
        lambda t: "same device" in t or ("expected" in t and "device" in t and "found" in t),
        "tensors on different devices: move every batch to the device the model lives on, "
        "x = x.to(next(model.parameters()).device)",
    ),
]


def device_error_hint(message, line=None, default=None):
    """A hint for `helpers.call`: what is wrong when the learner's error is about devices, else `default` (None:
    `call`'s own)."""
    return next((hint for says, hint in DEVICE_HINTS if says(message.lower())), default)


# -- the one diagnosis of a wrong mean NLL per image -------------------------------------------------------------
def unit_mistakes(ref, dims):
    """{name: (wrong value, message, hint)}: the unit mistakes of an NLL in nats per image `ref` (a number or a
    tensor) of images of `dims` = C*H*W sub-pixels."""
    return {
        "sign": (
            -ref,
            "the sign is wrong: that is the log-likelihood, not the negative log-likelihood (an NLL is never negative)",
            "negate the log-probabilities: NLL = -log p(x)",
        ),
        "bits": (
            ref / LN2,
            "you reported bits, not nats: the NLL per image was divided by ln 2",
            "use the natural logarithm and stay in nats; convert to bits only in bits_per_dim",
        ),
        "per pixel": (
            ref / dims,
            f"you averaged over pixels instead of summing: that is nats per sub-pixel, not per image, {dims} times too small",
            "the probability of an image is the product over its C*H*W sub-pixels, so its log is a sum",
        ),
        "bits per dim": (
            ref / (dims * LN2),
            "you returned bits per dimension (mean over pixels, in bits), not nats per image",
            "sum over the pixels and stay in nats",
        ),
    }


def bpd_mistakes(ref, dims, hw=None):
    """{name: (wrong value, message, hint)}: the plausible mistakes of bits per dimension `ref` = nats per image
    / (D ln 2), D = `dims`; with `hw` (H*W), also dividing by H*W instead of D."""
    over = "bits/dim = nats per image / (D * ln 2)"
    factors = {  # name: (the mistake's answer / the right one, message, hint)
        "nats/dim": (LN2, "you forgot to convert nats to bits: that is nats per dimension", "1 nat = 1/ln 2 bits"),
        "bits/image": (dims, "you forgot to divide by the number of dimensions: that is bits per image", "divide by D"),
        "times ln 2": (LN2 * LN2, "you multiplied by ln 2 instead of dividing: 1 nat = 1/ln 2 ≈ 1.443 bits", over),
        "log10": (LN2 / math.log10(2), "you used log10(2) instead of ln 2", "the NLL is in nats: use math.log(2)"),
        "ln 2 twice": (1 / LN2**2, "you divided by ln 2 twice", "bits = nats / ln 2, once"),
        "unchanged": (dims * LN2, "you returned nats per image unchanged", "divide by D and by ln 2"),
        "times D ln 2": ((dims * LN2) ** 2, "you multiplied by D · ln 2 instead of dividing by it", over),
        "times D": (dims * dims, "you multiplied by D instead of dividing by it", over),
        "H*W": (
            dims / (hw or dims),
            "you divided by H*W, not by D = C*H*W: each channel of a pixel is a dimension of its own",
            "D = math.prod(dataset.image_shape)",
        ),
    }
    return {
        name: (None if name == "H*W" and not hw else ref * f, message, hint)
        for name, (f, message, hint) in factors.items()
    }


def bpd_rule(bpd, nats, shape, what="'bpd'"):
    """`bpd` is `nats` per image / (D ln 2) for images of `shape`; a known mistake gets its message."""
    d, want = math.prod(shape), nats / (math.prod(shape) * LN2)
    if not close(bpd, want, "log_prob"):
        first_match(bpd, bpd_mistakes(want, d, hw=math.prod(shape[1:])), "loose", prefix=f"{what}: ")
        fail(f"{what} is {bpd!r}, expected {want:.5f} for {nats:.4f} nats per image and D = {d}",
             "bits/dim = nats per image / (D * ln 2) with D = C*H*W")  # fmt: skip


_COUNT_HINT = "count the images: count = 0 before the loop, count += x.shape[0] for every batch"


def _nll_variants(per_image, batch_size, dims):
    """{name: (wrong value, message, hint)} of the known mistakes of a mean NLL per image, computed from the
    reference NLL of every image (in the order the function reads them); None: the mistake does not show here."""
    n = len(per_image)
    full, total = per_image.mean().item(), per_image.sum().item()
    kept = n - n % batch_size
    batches = [per_image[i : i + batch_size] for i in range(0, n, batch_size)]
    means = [b.mean().item() for b in batches]
    smaller = kept < n  # a smaller last batch: the mistakes about it show
    divide = "divide the summed NLL by the number of images"
    return {
        "dropped": (per_image[:kept].mean().item() if smaller else None, *_dropped(n, batch_size)),
        "batch means": (
            sum(means) / len(means),
            "you averaged the batch means, so the last, smaller batch weighs as much as a full one",
            "add up the NLL of every image and divide by the number of images at the end",
        ),
        **unit_mistakes(full, dims),
        "total": (total, "you returned the total, not the average per image", divide),
        "batch total": (full * batch_size, "you returned a total over a batch, not the average per image", divide),
        "times n": (
            total * n,
            "you multiplied the summed NLL by the number of images instead of dividing by it",
            "mean = total / count",
        ),
        "last missing": (
            per_image[:kept].sum().item() / n if smaller else None,
            "the last batch's NLL is missing from the total (its images were counted)",
            "add every batch to the total, including the last, smaller one",
        ),
        "last as full": (
            (per_image[:kept].sum().item() + means[-1] * batch_size) / n if smaller else None,
            f"you counted the last batch as a full one: it has {n - kept} images, not {batch_size}",
            "add up each batch's per-image NLLs (its sum), not its mean times the batch size",
        ),
        "per batch": (
            total / len(batches),
            "you divided the summed NLL by the number of batches, not by the number of images",
            _COUNT_HINT,
        ),
        "sum of means": (
            sum(means) / n,
            "your sum adds one mean per batch instead of the NLL of every image",
            "add the NLL summed over the images of each batch: total += nll.sum()",
        ),
        "overwritten": (
            batches[-1].sum().item() / n,
            "only the last batch was counted in the sum: the total was overwritten, not added to",
            "total += ... (not total = ...) for every batch",
        ),
    }


def diagnose_nll(got, per_image, batch_size, *, dims, count=None, what="the mean NLL per image"):
    """Fail with the known mistake that a wrong mean NLL per image `got` matches, else with a plain "expected"
    message; call it only when `got` is wrong. per_image: the reference NLL of every image in nats (float64, in
    the order the function reads them); dims: C*H*W; count: the number of images the function reports (None when
    it reports none): a wrong count, or a right count with a wrong sum, is named as such."""
    n, full, total = len(per_image), per_image.mean().item(), per_image.sum().item()
    got = None if got is None else float(got)
    if got is None or not math.isfinite(got):
        fail(f"{what} is {got!r}, not a finite number", "return the mean NLL per image as a float")
    if count is not None and count < 0:
        fail(f"the image count went down instead of up: it is {count}", "count += x.shape[0] for every batch")
    if count is not None and count == n - n % batch_size < n:  # the count shows the dropped last batch
        fail(*_dropped(n, batch_size))
    first_match(got, _nll_variants(per_image, batch_size, dims), "log_prob")
    if count is not None and count not in (0, n) and close(got * count, total, "log_prob"):
        fail(f"you divided the summed NLL by {count}, not by the number of images ({n})", _COUNT_HINT)
    if count == n:  # the count is right: the summed NLL is wrong
        fail(f"the summed NLL is off by {got * n - total:+.3g} nats (the count of {n} images is right)",
             "start from total = 0 and add -log_prob_from_logits(model(x), x).sum() for every batch")  # fmt: skip
    fail(f"{what} is {got:.6g}, but the mean NLL of the {n} images is {full:.6g} nats per image",
         "mean over every image of its NLL summed over its C*H*W sub-pixels, in nats")  # fmt: skip


# -- training -------------------------------------------------------------------------------------------------
def training_rules(calls, name, where=""):
    """Every forward pass in training mode and recording gradients (a model may arrive in eval mode, as
    after an evaluation: the function must switch it)."""
    model_called_rule(calls, name, where)
    if not all(c["training"] for c in calls):
        fail(
            f"the model was in eval mode during the training step {where}".strip(),
            f"{name} must call model.train() itself: the model may arrive in eval mode, as after an evaluation",
        )
    if not all(c["grad"] for c in calls):
        fail(f"the forward pass ran without gradients (under torch.no_grad) {where}".strip(),
             "no_grad belongs to evaluation; the training forward pass must record gradients")  # fmt: skip


LOSS_MISTAKES = [  # (the wrong loss of one batch from the right one `ref`, D = C*H*W, batch size; message; hint)
    (
        lambda ref, d, b: ref / LN2,
        "you returned the loss in bits, not nats",
        "the loss is in nats (natural log); do not divide by ln 2 (bits are only for reporting bits/dim)",
    ),
    (
        lambda ref, d, b: ref / d,
        "you averaged the NLL over pixels (a mean per dimension) instead of summing it",
        "sum the per-pixel NLL over C*H*W for each image, then average over the images of the batch",
    ),
    (
        lambda ref, d, b: ref / (d * LN2),
        "you returned bits per dimension, not nats per image",
        "return the NLL in nats per image: sum over pixels, mean over images, no ln 2",
    ),
    (
        lambda ref, d, b: ref * b,
        "you summed the NLL over the images of the batch instead of averaging it",
        "take .mean() over the batch, so the loss (and the step size) does not grow with the batch size",
    ),
    (
        lambda ref, d, b: -ref,
        "your loss has the wrong sign: it is the log-likelihood, not the NEGATIVE log-likelihood",
        "minimise -log p(x): loss = -log_prob.mean()",
    ),
]


def diagnose_loss(got, ref, dims, batch):
    """The one diagnosis of a training loss that should be `ref`, the mean over a batch of `batch` images of
    the NLL summed over each image's `dims` sub-pixels, in nats: fail with the known mistake it matches (to
    2%: mixed precision moves a loss a little), else with a plain "expected" message. Call it only when `got`
    is wrong."""
    if got is None or not math.isfinite(got):
        fail(f"the returned loss is {got!r}, not a finite number", "return the batch loss as a float, e.g. loss.item()")
    values = {message: (wrong(ref, dims, batch), message, hint) for wrong, message, hint in LOSS_MISTAKES}
    first_match(got, values, (2e-2, 1e-6), where=f"(got {got:.4g}, expected about {ref:.4g})")
    fail(f"the returned loss is {got:.4g} but the mean NLL of the batch is {ref:.4g} nats per image",
         "loss = mean over images of the NLL summed over all pixels, in nats, computed in float32")  # fmt: skip


class GradWatch:
    """Watches the gradients of `model` and the steps of `optimizer` while a learner's function trains:
    `events` gets ("backward", stale) once per backward pass, stale = some parameter's .grad already held
    values when the new gradient arrived (not zeroed before backward), and ("step", had_gradients) at every
    optimizer.step(). A context manager."""

    def __init__(self, model, optimizer):
        self.model, self.optimizer, self.events, self.handles = model, optimizer, [], []

    def _arrived(self, param):
        def hook(grad):
            stale = param.grad is not None and bool(param.grad.detach().abs().sum() > 0)
            if self.events and self.events[-1][0] == "backward":
                self.events[-1] = ("backward", self.events[-1][1] or stale)
            else:
                self.events.append(("backward", stale))

        return hook

    def _step(self, optimizer, args, kwargs):
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        self.events.append(("step", any(bool(g.abs().sum() > 0) for g in grads)))

    def __enter__(self):
        self.handles = [p.register_hook(self._arrived(p)) for p in self.model.parameters() if p.requires_grad]
        self.handles.append(self.optimizer.register_step_pre_hook(self._step))
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()


def why_no_update(events, where=""):
    """(message, hint): why the parameters did not change, read from a `GradWatch`'s events."""
    steps = [k for k, (kind, _) in enumerate(events) if kind == "step"]
    backwards = [k for k, (kind, _) in enumerate(events) if kind == "backward"]
    if not steps:
        return (
            f"the parameters did not change: optimizer.step() was never called {where}".strip(),
            "after loss.backward() (and clipping), call optimizer.step()",
        )
    if not backwards:
        return (
            f"the parameters did not change: loss.backward() was never called, so there were no gradients {where}",
            "call loss.backward() before clipping and optimizer.step()",
        )
    if any(events[k][1] for k in steps):
        return (
            f"the parameters did not change although optimizer.step() had gradients to apply {where}".strip(),
            "take the step with the optimizer you were given, after loss.backward()",
        )
    if min(steps) < min(backwards):
        return (
            "the parameters did not change: optimizer.step() ran before loss.backward(), when there were no "
            f"gradients yet {where}".strip(),
            "the order is zero_grad -> forward -> loss -> backward -> clip -> step",
        )
    return (
        "the parameters did not change: the gradients were zeroed after loss.backward() and before "
        f"optimizer.step(), so the step had nothing to apply {where}".strip(),
        "clear the old gradients at the start of the step (before the forward pass), never between backward and step",
    )


def stale_gradients_rule(events, name, where=""):
    """Gradients zeroed before every backward pass: a backward pass that added to gradients already in .grad
    (stale ones planted by the check, or the previous batch's) fails. Over several steps, a function that
    only cleared them after its first step is told apart from one that never cleared them."""
    stale = [s for kind, s in events if kind == "backward"]
    if not any(stale):
        return
    if len(stale) > 1 and not any(stale[1:]):
        fail(
            f"the gradients already in .grad when {name} was called reached the first step: they were only cleared "
            f"after it {where}".strip(),
            "optimizer.zero_grad() before every loss.backward(), not after optimizer.step()",
        )
    fail(f"old gradients were added to the new ones: .grad was not cleared before loss.backward() {where}".strip(),
         "call optimizer.zero_grad() before loss.backward(): .backward() adds into .grad")  # fmt: skip


def learning_rate_rule(train_with_lr, model, name, hint="build the optimiser with lr=lr"):
    """`train_with_lr(copy of model, 0.0)` runs the learner's training with a learning rate of 0 (an lr
    argument, or an optimiser built with lr=0): every parameter must stay as it was."""
    still = copy.deepcopy(model)
    before = [p.detach().clone() for p in still.parameters()]
    train_with_lr(still, 0.0)
    if any(not torch.equal(p.detach(), b) for p, b in zip(still.parameters(), before)):
        fail(f"with lr=0 the weights still changed: the learning rate does not reach the optimizer {name} steps with",
             hint)  # fmt: skip
