"""Checks for lesson 03 (training on a GPU): device choice, a mixed-precision training step, an evaluation
loop over every test image, an atomic checkpoint save, and resuming from a checkpoint.

Each check builds fresh random inputs (a tiny Gated PixelCNN on 8x8 binary images), runs the learner's
function next to the reference behaviour computed with course_lib, prints one verdict line and raises
CheckFailed when something is wrong. Known mistakes get their own message (nats reported as bits, a
dropped last batch, a mean over pixels, missing clipping or autocast, a failed save that destroys the
good checkpoint, ...).

Without a GPU, device handling is tested on PyTorch's "meta" device (`helpers.probe_forward`): the model
moves there, and the batch must follow it. The checkpoint checks stand in for torch.save (to see where the
temporary file goes, and to simulate a Ctrl-C or a full disk halfway) and watch torch.load (weights_only,
map_location), and a checkpoint that would run code when unpickled must be refused.
"""

import copy
import errno
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

from course_lib.data import ImageDataset
from course_lib.likelihood import log_prob_from_logits

from .helpers import (
    LN2,
    ForwardSpy,
    _learner_line,
    call,
    call_explained,
    close,
    fail,
    fail_off_device,
    fresh_seed,
    meta_copy,
    no_delegation,
    not_implemented,
    passed,
    probe_forward,
    tiny_gated,
)

IMAGE = (1, 8, 8)
DIMS = math.prod(IMAGE)


# -- helpers ------------------------------------------------------------------------------------
def _close(a, b, rtol=1e-3, atol=1e-6):
    return close(a, b, rtol=rtol, atol=atol)


def _as_float(value):
    try:
        return float(value.detach().item() if torch.is_tensor(value) else value)
    except Exception:
        return None


def _device_error_hint(message):
    """A hint for a RuntimeError about devices that says what is actually wrong, or None."""
    text = message.lower()
    if "device string" in text or "invalid device" in text:
        return (
            "that is not a device name PyTorch knows: use 'cuda', 'mps' or 'cpu' (with an index if needed, 'cuda:1'), "
            "and return torch.device(name)"
        )
    if "autocast" in text and "device_type" in text:
        return "torch.autocast needs the type of the model's device: torch.autocast(device.type, dtype=torch.bfloat16)"
    if "nvidia driver" in text or "not compiled with cuda" in text or "no cuda gpus" in text:
        return (
            "your code asks for CUDA on a machine without it: use the model's device, "
            "next(model.parameters()).device, instead of a hard-coded 'cuda'"
        )
    if "same device" in text or ("expected" in text and "device" in text and "found" in text):
        return (
            "tensors on different devices: move every batch to the device the model lives on, "
            "x = x.to(next(model.parameters()).device)"
        )
    return None


def _call(fn, *args, **kwargs):
    """Call the learner's code through `checks.call` (NotImplementedError and other exceptions become
    verdicts); an error about devices gets a hint that names what is wrong."""
    name = getattr(fn, "__name__", None) or type(fn).__name__

    def guarded(*a, **k):
        try:
            return fn(*a, **k)
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
            hint = _device_error_hint(first)
            if hint:
                where = _learner_line(err)
                fail(f"{name} raised RuntimeError: {first}" + (f" (at `{where}`)" if where else ""), hint)
            raise

    guarded.__name__ = name
    return call(guarded, *args, **kwargs) if callable(fn) else call(fn, *args, **kwargs)


def _flat_params(model):
    return torch.cat([p.detach().float().flatten().cpu() for p in model.parameters()])


# -- task 1: pick_device --------------------------------------------------------------------------
@contextmanager
def _fake_hardware(cuda, mps):
    mps_backend = torch.backends.mps
    saved = (torch.cuda.is_available, torch.cuda.device_count, mps_backend.is_available, mps_backend.is_built)
    torch.cuda.is_available = lambda: cuda
    torch.cuda.device_count = lambda: 1 if cuda else 0
    mps_backend.is_available = lambda: mps
    mps_backend.is_built = lambda: mps
    try:
        yield
    finally:
        (torch.cuda.is_available, torch.cuda.device_count, mps_backend.is_available, mps_backend.is_built) = saved


@no_delegation("course_lib.device.pick_device")
def check_pick_device(pick_device):
    """pick_device(device=None) -> torch.device: explicit choice, else CUDA, else MPS, else CPU."""
    cases = [  # (cuda present, mps present, argument, expected, message if wrong)
        (True, True, None, "cuda", "with both CUDA and Apple MPS present you did not pick CUDA; check CUDA first"),
        (True, False, None, "cuda", "with CUDA present (and no Apple MPS) you did not pick CUDA"),
        (True, False, "auto", "cuda", "device='auto' must choose automatically, like device=None"),
        (False, True, None, "mps", "on a Mac with Apple MPS (and no CUDA) you did not pick 'mps'"),
        (False, False, None, "cpu", "with no GPU at all you did not return the CPU"),
        (
            True,
            True,
            "cpu",
            "cpu",
            "an explicit device='cpu' was ignored; a device the caller names must be used as given",
        ),
        (False, False, "cuda:1", "cuda:1", "an explicit device='cuda:1' was not returned as given"),
    ]
    for cuda, mps, arg, expected, message in cases:
        hw = "+".join(n for n, present in (("CUDA", cuda), ("MPS", mps)) if present) or "no GPU"
        with _fake_hardware(cuda, mps):
            got = call_explained(
                pick_device,
                *(() if arg is None else (arg,)),
                context=f"(hardware: {hw}, argument {arg!r})",
                hint=lambda message, line, arg=arg: (
                    "'auto' is not a device name but a request to choose: treat it like None"
                    if arg == "auto"
                    else _device_error_hint(message) or "run your function on a small input in a new cell"
                ),
            )
        if not isinstance(got, torch.device):
            fail(
                f"pick_device returned {type(got).__name__} {got!r}, not a torch.device",
                "wrap the name: return torch.device('cuda'), so that model.to(device) and device.type work",
            )
        ok = str(got) == expected if ":" in expected else got.type == expected
        if not ok:
            fail(
                f"{message} (hardware: {hw}, argument {arg!r}, you returned {got})",
                "explicit argument first (unless None/'auto'), then torch.cuda.is_available(), "
                "then torch.backends.mps.is_available(), then the CPU",
            )
    passed("pick_device: explicit choice wins, then CUDA, then Apple MPS, then the CPU; returns a torch.device")


# -- task 2: train_step -----------------------------------------------------------------------------
LR = 0.05


def _reference_step(model, x, precision, clip, noise=None, zero_grad=True):
    """The correct step on a copy of `model` with SGD(lr=LR). Returns (loss, update, raw grad norm)."""
    model = copy.deepcopy(model)
    device = next(model.parameters()).device
    x = x.to(device)
    before = _flat_params(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    if noise is not None:
        for p, n in zip(model.parameters(), noise):
            p.grad = n.clone().to(device)
    if zero_grad:
        optimizer.zero_grad(set_to_none=True)
    model.train()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    with torch.autocast(device.type, dtype=dtype, enabled=precision != "fp32"):
        logits = model(x)
    loss = -log_prob_from_logits(logits, x).mean()
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip if clip else float("inf"))
    optimizer.step()
    return loss.item(), _flat_params(model) - before, norm.item()


def _diagnose_loss(got, ref, batch):
    """A message for a loss value that is not `ref` nats per image, naming the known mistake."""
    if got is None or not math.isfinite(got):
        return (
            f"the returned loss is {got!r}, not a finite number",
            "return the batch loss as a float, e.g. loss.item()",
        )
    variants = [
        (
            ref / LN2,
            "you returned the loss in bits, not nats",
            "the loss is in nats (natural log); do not divide by ln 2 (bits are only for reporting bits/dim)",
        ),
        (
            ref / DIMS,
            "you averaged the NLL over pixels (a mean per dimension) instead of summing it",
            "sum the per-pixel NLL over C*H*W for each image, then average over the images of the batch",
        ),
        (
            ref / (DIMS * LN2),
            "you returned bits per dimension, not nats per image",
            "return the NLL in nats per image: sum over pixels, mean over images, no ln 2",
        ),
        (
            ref * batch,
            "you summed the NLL over the images of the batch instead of averaging it",
            "take .mean() over the batch, so the loss (and the step size) does not grow with the batch size",
        ),
        (
            -ref,
            "your loss has the wrong sign: it is the log-likelihood, not the NEGATIVE log-likelihood",
            "minimise -log p(x): loss = -log_prob.mean()",
        ),
    ]
    for value, message, hint in variants:
        if _close(got, value, rtol=2e-2):
            return message + f" (got {got:.4g}, expected about {ref:.4g})", hint
    return (
        f"the returned loss is {got:.4g} but the mean NLL of the batch is {ref:.4g} nats per image",
        "loss = mean over images of the NLL summed over all pixels, in nats, computed in float32",
    )


def _run_learner_step(train_step, model, x, precision, clip, noise=None):
    """The learner's step on a copy of `model` with SGD(lr=LR), watched: returns (the returned value, the
    parameter update, the forward passes, the events: "backward" when gradients were computed and
    ("step", whether any gradient was there to apply) at every optimizer.step())."""
    model = copy.deepcopy(model)
    device = next(model.parameters()).device
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    if noise is not None:
        for p, n in zip(model.parameters(), noise):
            p.grad = n.clone().to(device)
    before = _flat_params(model)
    events = []

    def backward_seen(param):
        if not events or events[-1] != "backward":
            events.append("backward")

    def step_seen(opt, args, kwargs):
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        events.append(("step", any(bool(g.abs().sum() > 0) for g in grads)))

    handles = [p.register_post_accumulate_grad_hook(backward_seen) for p in model.parameters()]
    handles.append(optimizer.register_step_pre_hook(step_seen))
    spy = ForwardSpy(model)
    try:
        loss = _call(train_step, model, optimizer, x.clone(), precision=precision, clip=clip)
    finally:
        spy.remove()
        for handle in handles:
            handle.remove()
    return loss, _flat_params(model) - before, spy.calls, events


def _no_update_verdict(events, where):
    """Why did one step leave the parameters unchanged? (message, hint) from the watched events."""
    steps = [k for k, e in enumerate(events) if e != "backward"]
    backwards = [k for k, e in enumerate(events) if e == "backward"]
    if not steps:
        return (
            f"the parameters did not change: optimizer.step() was never called {where}",
            "after loss.backward() (and clipping), call optimizer.step()",
        )
    if not backwards:
        return (
            f"the parameters did not change: loss.backward() was never called, so there were no gradients {where}",
            "call loss.backward() before clipping and optimizer.step()",
        )
    if any(events[k][1] for k in steps):
        return (
            f"the parameters did not change although optimizer.step() had gradients to apply {where}",
            "take the step with the optimizer you were given, after loss.backward()",
        )
    if min(steps) < min(backwards):
        return (
            f"the parameters did not change: optimizer.step() ran before loss.backward(), when there were no "
            f"gradients yet {where}",
            "the order is zero_grad -> forward -> loss -> backward -> clip -> step",
        )
    return (
        f"the parameters did not change: the gradients were zeroed after loss.backward() and before "
        f"optimizer.step(), so the step had nothing to apply {where}",
        "clear the old gradients at the start of the step (before the forward pass), never between backward and step",
    )


def _check_one_step(train_step, model, x, precision, clip, use_noise):
    device = next(model.parameters()).device
    noise = None
    if use_noise:  # stale gradients from an earlier step, as large as a real gradient
        _, _, raw = _reference_step(model, x, precision, None)
        g = torch.Generator().manual_seed(fresh_seed())
        noise = [torch.randn(p.shape, generator=g) for p in model.parameters()]
        scale = raw / torch.cat([n.flatten() for n in noise]).norm().item()
        noise = [n * scale for n in noise]
    ref_loss, ref_update, _ = _reference_step(model, x, precision, clip)
    returned, update, calls, events = _run_learner_step(train_step, model, x, precision, clip, noise)
    loss = _as_float(returned)
    where = f"(precision={precision!r}, clip={clip}, device={device.type})"

    if not calls:
        fail(f"train_step never called the model {where}", "compute logits = model(x) inside the step")
    if not all(c["training"] for c in calls):
        fail(
            f"the model was in eval mode during the training step {where}",
            "call model.train() at the start of the step (evaluation may have left it in eval mode)",
        )
    if not all(c["grad"] for c in calls):
        fail(
            f"the forward pass ran without gradients (under torch.no_grad) {where}",
            "no_grad belongs to evaluation; the training forward pass must record gradients",
        )
    if not all(c["device"] == device for c in calls):
        fail(
            f"the batch was not moved to the model's device {where}",
            "x = x.to(next(model.parameters()).device) before the forward pass",
        )
    if precision == "fp32" and any(c["autocast"] for c in calls):
        fail(
            f"precision='fp32' still ran the forward pass under autocast {where}",
            "enable autocast only for 'bf16' (and 'fp16'): torch.autocast(..., enabled=precision != 'fp32')",
        )
    if precision == "bf16" and not all(c["autocast"] and c["dtype"] == torch.bfloat16 for c in calls):
        fail(
            f"the forward pass did not run under bf16 autocast on the model's device {where}",
            "wrap the forward pass in torch.autocast(device.type, dtype=torch.bfloat16), "
            "with device = the model's device (not a hard-coded 'cuda' or 'cpu')",
        )
    if not _close(loss, ref_loss, rtol=5e-3):
        fail(*_diagnose_loss(loss, ref_loss, x.shape[0]))
    if not isinstance(returned, float):
        fail(
            f"train_step returned a {type(returned).__name__}, not a Python float {where}",
            "return loss.item(): a tensor that requires grad keeps the whole graph of the step alive, and a "
            "training loop that collects them runs out of memory",
        )

    ref_norm, norm = ref_update.norm().item(), update.norm().item()
    if norm == 0:
        fail(*_no_update_verdict(events, where))
    cos = torch.nn.functional.cosine_similarity(update, ref_update, dim=0).item()
    if cos < -0.9:
        fail(
            f"the parameters moved uphill (the NLL went up) {where}",
            "minimise the negative log-likelihood: loss = -log_prob.mean()",
        )
    if noise is not None and cos < 0.99:
        _, stale_update, _ = _reference_step(model, x, precision, clip, noise=noise, zero_grad=False)
        if torch.nn.functional.cosine_similarity(update, stale_update, dim=0).item() > 0.99:
            fail(
                f"old gradients were added to the new ones {where}",
                "call optimizer.zero_grad() before loss.backward(): .backward() accumulates into .grad",
            )
    if clip and not 0.9 < norm / ref_norm < 1.1 and 0.9 < norm / ref_norm * clip < 1.1:
        fail(
            f"the gradient was clipped to norm 1.0, not to clip={clip:.3g}: the clip argument was ignored {where}",
            "torch.nn.utils.clip_grad_norm_(model.parameters(), clip)",
        )
    if clip and norm > 1.5 * ref_norm:
        fail(
            f"the gradient was not clipped to norm {clip:.3g}: the step is {norm / ref_norm:.1f}x too long {where}",
            "call torch.nn.utils.clip_grad_norm_(model.parameters(), clip) after backward() and before optimizer.step()",
        )
    if not clip and norm < 0.67 * ref_norm:
        fail(
            f"clip=None must turn clipping off, but the step is {ref_norm / norm:.1f}x too short {where}",
            "clip only when clip is set: if clip: torch.nn.utils.clip_grad_norm_(...)",
        )
    if cos < 0.99 or not 0.9 < norm / ref_norm < 1.1:
        fail(
            f"the parameter update differs from one correct step (cosine {cos:.3f}, length ratio "
            f"{norm / ref_norm:.2f}) {where}",
            "zero_grad -> forward under autocast -> NLL in float32, mean over images -> backward -> "
            "clip_grad_norm_ -> optimizer.step()",
        )


def _probe_step_device(train_step, model, x):
    """Device handling without a GPU: the model on the meta device, the batch on the CPU. The batch must
    reach the model on the model's device, under autocast for the model's device type in bfloat16."""
    meta = meta_copy(model)
    optimizer = torch.optim.SGD(meta.parameters(), lr=LR)
    record = probe_forward(train_step, meta, meta, optimizer, x.clone(), precision="bf16", clip=1.0)
    fail_off_device(
        record,
        "train_step",
        "the batch",
        "move the batch to the device of the model's parameters: x = x.to(next(model.parameters()).device), "
        "not to a hard-coded 'cuda' or 'cpu'",
    )
    for device_type, dtype, enabled in record["autocast"] if record else []:
        if not enabled:
            continue
        if device_type != "meta":
            fail(
                f"torch.autocast was given the device type '{device_type}', not the type of the model's device "
                "(the check moved the model to PyTorch's 'meta' device): on any other device the forward pass "
                "would run without mixed precision",
                "device = next(model.parameters()).device, then torch.autocast(device.type, dtype=torch.bfloat16)",
            )
        if dtype is None:
            fail(
                "torch.autocast was called without dtype=torch.bfloat16: its default is float16 on a GPU "
                "(bfloat16 only on the CPU)",
                "torch.autocast(device.type, dtype=torch.bfloat16) when precision == 'bf16'",
            )
        if dtype != torch.bfloat16:
            fail(
                f"precision='bf16' asked torch.autocast for {dtype}, not torch.bfloat16",
                "torch.autocast(device.type, dtype=torch.bfloat16) when precision == 'bf16'",
            )


@no_delegation("course_lib.train.Trainer", "course_lib.train.fit", allowed=("course_lib.models.log_prob_from_logits",))
def check_train_step(train_step):
    """train_step(model, optimizer, x, *, precision="bf16", clip=1.0) -> float loss in nats per image."""
    seed = fresh_seed()
    g = torch.Generator().manual_seed(seed)
    model = tiny_gated(seed, IMAGE)
    batch = 6
    x = (torch.rand(batch, *IMAGE, generator=g) < 0.35).long()
    _, _, raw = _reference_step(model, x, "bf16", None)
    # bf16 autocast, a clip well below the gradient norm (and far from 1.0, a value a learner might hard-code),
    # and stale gradients left in .grad
    clip = 0.1 * raw if not 1 / 3 < 0.1 * raw < 3 else 0.01 * raw
    _check_one_step(train_step, model, x, "bf16", clip, use_noise=True)
    # fp32 without clipping
    model.eval()  # the step must switch to training mode itself
    _check_one_step(train_step, model, x, "fp32", None, use_noise=False)
    model.train()
    _probe_step_device(train_step, model, x)
    if torch.cuda.is_available():  # device handling: the batch arrives on the CPU
        _check_one_step(train_step, model.to("cuda"), x, "bf16", clip, use_noise=False)
    passed(
        "train_step: bf16 autocast, loss in nats per image (sum over pixels, mean over images), "
        "gradients zeroed and clipped, one optimizer step" + (" (also on CUDA)" if torch.cuda.is_available() else "")
    )


# -- task 3: evaluate_nll ---------------------------------------------------------------------------
def _eval_data(seed, n):
    """n binary 8x8 images of very different densities; the sparsest come last (they cost the most)."""
    g = torch.Generator().manual_seed(seed)
    density = torch.rand(n, generator=g).sort(descending=True).values * 0.9 + 0.05
    pixels = (torch.rand(n, *IMAGE, generator=g) < density[:, None, None, None]).float()
    return ImageDataset("random", pixels, torch.zeros(n, dtype=torch.long))


def _run_evaluate(evaluate_nll, model, dataset, batch_size, training):
    """The learner's evaluation with `model` arriving in training (or eval) mode, watched: (result, forward
    passes, batch sizes seen by the model)."""
    model.train(training)
    sizes = []
    spy = ForwardSpy(model)
    handle = model.register_forward_pre_hook(
        lambda module, args: sizes.append(int(args[0].shape[0]) if args and torch.is_tensor(args[0]) else 0)
    )
    try:
        result = _call(evaluate_nll, model, dataset, batch_size)
    finally:
        spy.remove()
        handle.remove()
    if not isinstance(result, dict) or not {"nats", "bpd", "n_images"} <= set(result):
        fail(
            f"evaluate_nll returned {type(result).__name__}, not a dict with keys 'nats', 'bpd', 'n_images'",
            "return {'nats': nats_per_image, 'bpd': bits_per_dim, 'n_images': count}",
        )
    return result, spy.calls, sizes


def _diagnose_nats(nats, count, per_image, batch_size):
    """Fail with the message of the known mistake that a wrong 'nats' value (and the count) matches."""
    n = len(per_image)
    full, total = per_image.mean().item(), per_image.sum().item()
    kept = n - n % batch_size
    batches = [per_image[i : i + batch_size] for i in range(0, n, batch_size)]
    batch_means = [b.mean().item() for b in batches]
    if nats is None or not math.isfinite(nats):
        fail(f"'nats' is {nats!r}, not a finite number", "return the mean NLL per image as a float")
    if _close(nats, per_image[:kept].mean().item(), rtol=1e-4) or count == kept:
        fail(
            f"the last, incomplete batch was dropped: {count} of {n} images scored with batch size {batch_size}",
            "keep drop_last=False (the default) and divide the summed NLL by the number of images seen",
        )
    if _close(nats, sum(batch_means) / len(batch_means), rtol=1e-4):
        fail(
            "you averaged the batch means, so the small last batch weighs as much as a full one",
            "add up the NLL of every image and divide by the number of images at the end",
        )
    if isinstance(count, int) and count < 0:
        fail(
            f"the image count went down instead of up: 'n_images' is {count}",
            "count += x.shape[0] for every batch",
        )
    if _close(nats, -full, rtol=1e-4):
        fail(
            "'nats' has the wrong sign: you summed the log-likelihood, not the NEGATIVE log-likelihood",
            "the NLL of a batch is -log_prob_from_logits(model(x), x).sum()",
        )
    if _close(nats, full / LN2, rtol=1e-3):
        fail(
            "nats reported as bits: your 'nats' value was divided by ln 2",
            "'nats' is the mean NLL per image in natural log units; only 'bpd' uses ln 2",
        )
    if _close(nats, full / DIMS, rtol=1e-3):
        fail(
            "you took the mean over pixels instead of the sum: 'nats' must be per image",
            "sum the NLL over the C*H*W sub-pixels of each image, then average over images",
        )
    if _close(nats, full * n, rtol=1e-3) or _close(nats, full * batch_size, rtol=1e-3):
        fail("'nats' is a total, not an average per image", "divide the summed NLL by the number of images")
    if _close(nats, total * n, rtol=1e-3):
        fail(
            "'nats' multiplies the summed NLL by the number of images instead of dividing by it",
            "nats = total / count",
        )
    if isinstance(count, int) and count not in (0, n) and _close(nats * count, total, rtol=1e-4):
        # the summed NLL is right: the division is wrong
        what = "the number of batches" if count == len(batches) else f"{count}"
        fail(
            f"'nats' divides the summed NLL by {what}, not by the number of images ({n})",
            "count the images: count = 0 before the loop, count += x.shape[0] (the batch size) for every batch",
        )
    if count == n:  # the count is right: the summed NLL is wrong
        summed = nats * n
        if _close(summed, sum(batch_means), rtol=1e-4):
            fail(
                "your sum adds one mean per batch instead of the NLL of every image",
                "add the NLL summed over the images of each batch: total += nll.sum()",
            )
        if _close(summed, batches[-1].sum().item(), rtol=1e-4):
            fail(
                "only the last batch was counted in the sum: the total was overwritten, not added to",
                "total += ... (not total = ...) for every batch",
            )
        fail(
            f"the summed NLL is off by {summed - total:+.3g} nats (the count of {n} images is right)",
            "start from total = 0 and add -log_prob_from_logits(model(x), x).sum() for every batch",
        )
    fail(
        f"'nats' is {nats!r} but the mean NLL of the {n} images is {full:.4f} nats per image",
        "NLL per image = -(log-likelihood summed over pixels); average it over every image",
    )


@no_delegation(
    "course_lib.likelihood.evaluate",
    allowed=(
        "course_lib.models.log_prob_from_logits",
        "course_lib.likelihood.nll",
        "course_lib.likelihood.bits_per_dim",
    ),
)
def check_evaluate(evaluate_nll):
    """evaluate_nll(model, dataset, batch_size) -> {"nats", "bpd", "n_images"} over every image."""
    seed = fresh_seed()
    g = torch.Generator().manual_seed(seed)
    batch_size = 8
    n = batch_size * int(torch.randint(3, 6, (), generator=g)) + int(torch.randint(1, batch_size // 2, (), generator=g))
    dataset = _eval_data(seed, n)
    model = tiny_gated(seed, IMAGE, out_bias=2.5)  # confident: dense images are cheap, sparse ones expensive
    with torch.no_grad():
        per_image = -log_prob_from_logits(model(dataset.images), dataset.images).double()
    full = per_image.mean().item()

    result, calls, sizes = _run_evaluate(evaluate_nll, model, dataset, batch_size, training=True)
    if not calls:
        fail("evaluate_nll never called the model", "loop over a DataLoader of the dataset and call model(x)")
    if any(c["training"] for c in calls):
        fail(
            "the model was evaluated in training mode",
            "call model.eval() before the loop (dropout and batch norm behave differently in training mode)",
        )
    if any(c["grad"] for c in calls):
        fail(
            "the evaluation recorded gradients (no torch.no_grad())",
            "wrap the loop in `with torch.no_grad():` (or decorate the function): faster and less memory",
        )
    if not model.training:
        fail(
            "the model was left in eval mode after evaluating",
            "remember was_training = model.training and call model.train(was_training) at the end",
        )
    tensors = [key for key in ("nats", "bpd", "n_images") if torch.is_tensor(result[key])]
    if tensors:
        fail(
            f"evaluate_nll returned a tensor for {', '.join(repr(k) for k in tensors)}, not a Python number",
            "return plain numbers: `.item()` turns a one-element tensor into a float (printing, JSON and "
            "comparisons then behave as expected)",
        )
    nats, bpd, count = _as_float(result["nats"]), _as_float(result["bpd"]), _as_float(result["n_images"])
    count = int(count) if count is not None and math.isfinite(count) else count

    if not _close(nats, full, rtol=1e-4):
        _diagnose_nats(nats, count, per_image, batch_size)
    if count != n:
        fail(
            f"'n_images' is {count!r} but the data set has {n} images",
            "count the images you scored: count += x.shape[0] for every batch",
        )
    want_bpd = full / (DIMS * LN2)
    if not _close(bpd, want_bpd, rtol=1e-4):
        if _close(bpd, full / DIMS, rtol=1e-3):
            fail("'bpd' is nats per dimension, not bits per dimension", "divide by ln 2 as well: nats / (D * ln 2)")
        if _close(bpd, full / LN2, rtol=1e-3):
            fail("'bpd' is bits per image, not per dimension", "divide by D = C*H*W as well: nats / (D * ln 2)")
        if _close(bpd, full * LN2 / DIMS, rtol=1e-3):
            fail("'bpd' multiplies by ln 2 instead of dividing", "bits = nats / ln 2")
        fail(
            f"'bpd' is {bpd!r}, expected {want_bpd:.5f} for {full:.4f} nats per image and D = {DIMS}",
            "bits/dim = nats per image / (D * ln 2) with D = C*H*W",
        )
    if sizes and max(sizes) != batch_size:
        fail(
            f"batch_size={batch_size} was ignored: the model saw at most {max(sizes)} images per batch",
            "pass it on: DataLoader(dataset, batch_size=batch_size)",
        )

    # the model arrives in eval mode: it must leave in eval mode
    _, calls, _ = _run_evaluate(evaluate_nll, model, dataset, batch_size, training=False)
    if model.training:
        fail(
            "the model arrived in eval mode and left in training mode: evaluate_nll must put it back into the "
            "mode it was in, not always into training mode",
            "was_training = model.training before model.eval(), and model.train(was_training) at the end",
        )
    meta = meta_copy(model)
    record = probe_forward(evaluate_nll, meta, meta, dataset, batch_size)
    fail_off_device(
        record,
        "evaluate_nll",
        "a batch",
        "move every batch to the model's device: x = x.to(next(model.parameters()).device)",
    )
    passed(
        f"evaluate_nll: all {n} images scored (last batch of {n % batch_size} kept) in batches of {batch_size}, "
        "eval mode and no_grad (the caller's mode restored), nats per image and bits/dim correct"
    )


# -- task 4: save_checkpoint_atomically ----------------------------------------------------------------
class _ExplodesWhenSaved:
    """Pickling this object fails halfway through torch.save: a simulated crash (disk full, Ctrl-C)."""

    def __reduce_ex__(self, protocol):
        raise RuntimeError("simulated crash while saving")


def _payload(seed, epoch):
    g = torch.Generator().manual_seed(seed + epoch)
    return {"epoch": epoch, "state_dict": {"weight": torch.randn(64, 64, generator=g)}}


def _same(a, b):
    return a["epoch"] == b["epoch"] and torch.equal(a["state_dict"]["weight"], b["state_dict"]["weight"])


def _load(path):
    try:
        return torch.load(path, weights_only=True)
    except Exception:
        return None


class _SimulatedCtrlC(KeyboardInterrupt):
    """A Ctrl-C that arrives while torch.save is writing (raised by the check's stand-in for torch.save)."""


def _written_to(f):
    """The file that torch.save(obj, f) writes: a path, or the name of an open file (None if unknown)."""
    name = f if isinstance(f, (str, os.PathLike)) else getattr(f, "name", None)
    return Path(name).resolve() if isinstance(name, (str, os.PathLike)) else None


@contextmanager
def _patched_save(behaviour):
    """Replace torch.save for a moment. behaviour "spy": record where it writes, then save for real;
    "interrupt": write half a file, then a Ctrl-C (KeyboardInterrupt); "full disk": raise OSError before
    anything is written. Yields the list of targets written to."""
    real, targets = torch.save, []

    def stand_in(obj, f, *args, **kwargs):
        targets.append(_written_to(f))
        if behaviour == "spy":
            return real(obj, f, *args, **kwargs)
        if behaviour == "full disk":
            raise OSError(errno.ENOSPC, "No space left on device (simulated by the check)")
        if isinstance(f, (str, os.PathLike)):
            Path(f).write_bytes(b"PK half a checkpoint")
        else:
            f.write(b"PK half a checkpoint")
        raise _SimulatedCtrlC()

    torch.save = stand_in
    try:
        yield targets
    finally:
        torch.save = real


def _leftovers(path):
    return sorted(p.name for p in path.parent.iterdir() if p != path)


def _failed_save(save_checkpoint_atomically, payload, path, behaviour=None):
    """Run a save that fails (payload that cannot be pickled, or a patched torch.save); returns what it raised."""
    try:
        if behaviour is None:
            save_checkpoint_atomically(payload, path)
        else:
            with _patched_save(behaviour):
                save_checkpoint_atomically(payload, path)
    except NotImplementedError:
        not_implemented(getattr(save_checkpoint_atomically, "__name__", None))
    except (Exception, _SimulatedCtrlC) as error:  # the learner must re-raise whatever happened
        return error
    return None


def _raises(error, fn):
    """A stand-in for the learner's `fn` that raises the error `fn` raised (to report it as a verdict)."""

    def again(*args, **kwargs):
        raise error

    again.__name__ = getattr(fn, "__name__", None) or type(fn).__name__
    return again


def _check_intact(path, good, what):
    """After a failed save: the previous good checkpoint is still there, whole, and nothing else is."""
    if not path.exists():
        fail(
            f"{what} deleted the good checkpoint",
            "never delete or open the old file: write a temporary file, then os.replace it onto `path`",
        )
    loaded = _load(path)
    if loaded is None:
        fail(
            f"{what} overwrote the good checkpoint with a broken file (it no longer loads)",
            "write to a temporary file in the same folder and os.replace(tmp, path) only once it is complete",
        )
    if not _same(loaded, good):
        fail(
            f"after {what}, `path` no longer holds the previous good checkpoint",
            "only move the new file into place after torch.save finished without error",
        )


def _call_with_str_path(fn, *args):
    """Call the learner's fn with its last argument a path given as a string: an error names that."""
    return call_explained(
        fn, *args, context="with `path` given as a string (not a pathlib.Path)", hint="accept both: path = Path(path)"
    )


@no_delegation("course_lib.checkpoint.save_checkpoint")
def check_save_checkpoint(save_checkpoint_atomically):
    """save_checkpoint_atomically(payload, path): all or nothing, and never destroys the previous file."""
    if not callable(save_checkpoint_atomically):
        call(save_checkpoint_atomically)
    seed = fresh_seed()
    with tempfile.TemporaryDirectory(prefix="check03-") as folder:
        path = Path(folder) / "run" / "checkpoint.pt"
        path.parent.mkdir()
        good = _payload(seed, 1)
        with _patched_save("spy") as targets:
            error = _failed_save(save_checkpoint_atomically, good, path)
        if path.resolve() in targets:
            fail(
                "torch.save wrote straight to `path`: it empties the file first, so a crash halfway (a full disk, "
                "Ctrl-C) destroys the last good checkpoint",
                "torch.save to a temporary file in the same folder, then os.replace(tmp, path)",
            )
        if error is not None:
            _call(_raises(error, save_checkpoint_atomically), good, path)
        if not path.is_file():
            fail(
                "no file was written at `path`", "save the payload with torch.save(...) and end with the file at `path`"
            )
        loaded = _load(path)
        if loaded is None or not _same(loaded, good):
            fail(
                "the saved file does not load back with torch.load(path, weights_only=True) as the same payload",
                "write the payload with torch.save(payload, file)",
            )
        elsewhere = [t for t in targets if t is not None and t.parent != path.parent.resolve()]
        if elsewhere:
            fail(
                f"the temporary file was written to the folder {elsewhere[0].parent}, not to the checkpoint's "
                f"folder: os.replace only renames within one file system, and fails with 'Invalid cross-device "
                f"link' when that folder is on another one",
                "put the temporary file next to the checkpoint, e.g. tmp = path.with_name(path.name + '.tmp')",
            )
        leftovers = _leftovers(path)
        if leftovers:
            fail(
                f"a successful save left extra files behind: {leftovers}",
                "move the temporary file onto `path` with os.replace(tmp, path)",
            )

        bad = {**_payload(seed, 2), "extra": _ExplodesWhenSaved()}
        raised = _failed_save(save_checkpoint_atomically, bad, path)
        _check_intact(path, good, "a failed save")
        leftovers = _leftovers(path)
        if leftovers:
            fail(
                f"a failed save left a temporary file behind: {leftovers}",
                "on failure delete the temporary file (try/except, then re-raise)",
            )
        if raised is None:
            fail(
                "a failed save returned silently: the caller believes the checkpoint is written",
                "clean up, then re-raise the error (`raise` inside the except block)",
            )

        raised = _failed_save(save_checkpoint_atomically, _payload(seed, 2), path, "interrupt")
        _check_intact(path, good, "a Ctrl-C (KeyboardInterrupt) in the middle of torch.save")
        leftovers = _leftovers(path)
        if leftovers:
            fail(
                f"a Ctrl-C (KeyboardInterrupt) in the middle of torch.save left the temporary file behind: {leftovers}",
                "KeyboardInterrupt is not an Exception: clean up in `except BaseException:` (then re-raise)",
            )
        if not isinstance(raised, _SimulatedCtrlC):
            fail(
                "a Ctrl-C (KeyboardInterrupt) in the middle of torch.save did not reach the caller"
                + (f": it became {type(raised).__name__}" if raised is not None else ""),
                "after cleaning up, re-raise the very error you caught: a bare `raise`",
            )

        raised = _failed_save(save_checkpoint_atomically, _payload(seed, 2), path, "full disk")
        _check_intact(path, good, "a save that failed before writing anything")
        if not isinstance(raised, OSError) or raised.errno != errno.ENOSPC:
            got = "nothing" if raised is None else f"{type(raised).__name__}: {raised}"
            fail(
                "when torch.save failed before creating the temporary file (a full disk), the caller did not get "
                f"that error but {got}",
                "the temporary file may not exist yet: delete it with tmp.unlink(missing_ok=True), then re-raise",
            )
        leftovers = _leftovers(path)
        if leftovers:
            fail(
                f"a save that failed before writing anything left files behind: {leftovers}",
                "on failure delete the temporary file (try/except, then re-raise)",
            )

        newer = _payload(seed, 3)
        _call_with_str_path(save_checkpoint_atomically, newer, str(path))
        loaded = _load(path)
        if loaded is None or not _same(loaded, newer):
            fail(
                "a second save did not replace the old checkpoint", "os.replace(tmp, path) overwrites an existing file"
            )
        leftovers = _leftovers(path)
        if leftovers:
            fail(
                f"a save to a path given as a string left extra files behind: {leftovers}",
                "accept both: path = Path(path)",
            )
    passed(
        "save_checkpoint_atomically: writes a loadable file via a temporary file in the same folder; a crash, a "
        "Ctrl-C or a full disk mid-save keeps the good checkpoint, leaves no temporary file and re-raises the error"
    )


# -- task 5: resume --------------------------------------------------------------------------------------
def _trained(seed, steps):
    """A tiny model and its Adam optimizer after `steps` steps on random images."""
    model = tiny_gated(seed, IMAGE)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = (torch.rand(4, *IMAGE, generator=g) < 0.4).long()
        loss = -log_prob_from_logits(model(x), x).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model, optimizer


_CODE_RAN = []


def _code_in_checkpoint():
    """What a malicious checkpoint runs when it is unpickled (here: it only leaves a mark)."""
    _CODE_RAN.append(True)
    return "this ran while the checkpoint was loaded"


class _RunsCodeWhenLoaded:
    """Unpickling this object calls a function: what torch.load(..., weights_only=False) allows any file to do."""

    def __reduce__(self):
        return (_code_in_checkpoint, ())


@contextmanager
def _spied_load():
    """Record the keyword arguments of every torch.load call, and load as asked."""
    real, calls = torch.load, []

    def stand_in(f, *args, **kwargs):
        calls.append({"map_location": args[0] if args else kwargs.get("map_location"), **kwargs})
        return real(f, *args, **kwargs)

    torch.load = stand_in
    try:
        yield calls
    finally:
        torch.load = real


@no_delegation(
    "course_lib.checkpoint.load_checkpoint",
    "course_lib.checkpoint.load_into",
    "course_lib.checkpoint.load_model",
    "course_lib.train.Trainer",
)
def check_resume(resume):
    """resume(model, optimizer, path) -> the epoch to start from (0 without a checkpoint)."""
    seed = fresh_seed()
    epoch = int(torch.randint(1, 9, (), generator=torch.Generator().manual_seed(seed)))
    saved_model, saved_opt = _trained(seed, 3)
    checkpoint = {"state_dict": saved_model.state_dict(), "optimizer": saved_opt.state_dict(), "epoch": epoch}
    with tempfile.TemporaryDirectory(prefix="check03-") as folder:
        path = Path(folder) / "checkpoint.pt"
        fresh, fresh_opt = _trained(seed + 1, 0)
        before = copy.deepcopy(fresh.state_dict())
        start = call_explained(
            resume,
            fresh,
            fresh_opt,
            path,
            context="(no checkpoint file at `path` yet)",
            hint="no file yet means a fresh start: if not path.exists(): return 0, before loading anything",
        )
        if start != 0:
            fail(
                f"without a checkpoint file, resume returned {start!r}",
                "no checkpoint yet: return 0 (start at epoch 0)",
            )
        if any(not torch.equal(before[k], v) for k, v in fresh.state_dict().items()):
            fail(
                "without a checkpoint file, resume changed the model", "leave the model as it is when there is no file"
            )

        torch.save(checkpoint, path)
        model, optimizer = _trained(seed + 1, 0)
        with _spied_load() as loads:
            start = _call(resume, model, optimizer, path)

        hostile = Path(folder) / "downloaded.pt"
        torch.save({**checkpoint, "note": _RunsCodeWhenLoaded()}, hostile)
        _CODE_RAN.clear()
        try:
            resume(*_trained(seed + 1, 0), hostile)
        except Exception:  # refusing the file is the right answer
            pass
        ran_code = bool(_CODE_RAN)
        _CODE_RAN.clear()

        partial = Path(folder) / "other_model.pt"
        missing = sorted(checkpoint["state_dict"])[-1]
        torch.save(
            {**checkpoint, "state_dict": {k: v for k, v in checkpoint["state_dict"].items() if k != missing}}, partial
        )
        try:
            resume(*_trained(seed + 1, 0), partial)
            accepted_partial = True
        except Exception:  # refusing the file is the right answer
            accepted_partial = False

        as_string = _call_with_str_path(resume, *_trained(seed + 1, 0), str(path))
    if start == epoch:
        fail(
            f"resume returned {start}, the epoch that was already finished: it would be trained twice",
            "the checkpoint stores the last finished epoch; return epoch + 1",
        )
    if start != epoch + 1:
        fail(
            f"resume returned {start!r}; the checkpoint's last finished epoch is {epoch}",
            "return checkpoint['epoch'] + 1",
        )
    if any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), saved_model.state_dict().values())):
        fail("the model's weights were not restored", "model.load_state_dict(checkpoint['state_dict'])")
    state, want = optimizer.state_dict()["state"], saved_opt.state_dict()["state"]
    if (
        not state
        or set(state) != set(want)
        or any(not torch.equal(state[k]["exp_avg"], want[k]["exp_avg"]) for k in want)
    ):
        fail(
            "the optimizer state was not restored: Adam restarts with empty moment estimates and its step count at 0",
            "optimizer.load_state_dict(checkpoint['optimizer'])",
        )
    if accepted_partial:
        fail(
            f"resume accepted a checkpoint that lacks one of the model's weights ('{missing}') without an error: "
            "load_state_dict(..., strict=False) silently keeps the fresh, untrained values for it",
            "model.load_state_dict(checkpoint['state_dict']): strict (the default) refuses missing or unexpected keys",
        )
    if ran_code:
        fail(
            "resume ran code hidden in a checkpoint file: torch.load(..., weights_only=False) unpickles any "
            "object, and unpickling can run any code (a checkpoint downloaded from the internet could delete your files)",
            "load with torch.load(path, map_location=..., weights_only=True): it refuses anything but tensors and "
            "plain containers",
        )
    if any(call_.get("weights_only") is not True for call_ in loads):
        fail(
            "resume called torch.load without weights_only=True: PyTorch before 2.6 then unpickles any object, "
            "so loading a checkpoint from someone else could run their code",
            "torch.load(path, map_location=next(model.parameters()).device, weights_only=True)",
        )
    if any(call_["map_location"] is None for call_ in loads):
        fail(
            "resume called torch.load without map_location: a checkpoint saved on a GPU then loads onto that GPU, "
            "and fails on a machine without one",
            "torch.load(path, map_location=next(model.parameters()).device, weights_only=True)",
        )
    if as_string != epoch + 1:
        fail(
            f"with `path` given as a string, resume returned {as_string!r}, not {epoch + 1}",
            "accept both: path = Path(path) at the start",
        )
    passed(
        "resume: weights and optimizer state restored, training continues after the last finished epoch, "
        "no checkpoint means epoch 0, and the file is loaded with weights_only=True onto the model's device"
    )
