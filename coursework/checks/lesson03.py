"""Checks for lesson 03 (training on a GPU): device choice, a mixed-precision training step, an evaluation
loop over every test image, an atomic checkpoint save, and resuming from a checkpoint.

Each check runs the learner's function on fresh random inputs (a tiny Gated PixelCNN) next to the reference,
applies the shared rules of training and evaluation (`rules`), names known mistakes from tables of (wrong
answer, message, hint) and probes each task's edges (a model on PyTorch's meta device, lr=0, a clip above the
gradient's norm, 2-channel images of odd sizes, a very confident model, a Ctrl-C or a full disk mid-save, a
checkpoint that runs code when unpickled).
"""

import copy
import errno
import functools
import math
import os
import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path

import torch

from course_lib.data import ImageDataset
from course_lib.likelihood import log_prob_from_logits

from . import rules
from .helpers import call, close, explain, fail, first_rule, fresh_seed, invoke, no_delegation, passed, patched
from .probes import meta_copy, probe_device, tiny_gated

IMAGE = (1, 8, 8)
EDGE_IMAGE = (2, 5, 7)  # two channels, odd sizes: D = C*H*W is not H*W
LR = 0.05
_call = functools.partial(call, hint=rules.device_error_hint)  # its hint names what is wrong about devices


def _flat_params(model):
    return torch.cat([p.detach().float().flatten().cpu() for p in model.parameters()])


# -- task 1: pick_device --------------------------------------------------------------------------------
@contextmanager
def _fake_hardware(cuda, mps):
    with patched(torch.cuda, is_available=lambda: cuda, device_count=lambda: int(cuda)):
        with patched(torch.backends.mps, is_available=lambda: mps, is_built=lambda: mps):
            yield


_DEVICE_CASES = [  # (CUDA present, Apple MPS present, argument, expected device, message if not)
    (True, True, None, "cuda", "with both CUDA and Apple MPS present you did not pick CUDA; check CUDA first"),
    (True, False, None, "cuda", "with CUDA present (and no Apple MPS) you did not pick CUDA"),
    (True, False, "auto", "cuda", "device='auto' must choose automatically, like device=None"),
    (False, True, None, "mps", "on a Mac with Apple MPS (and no CUDA) you did not pick 'mps'"),
    (False, False, None, "cpu", "with no GPU at all you did not return the CPU"),
    (True, True, "cpu", "cpu", "an explicit device='cpu' was ignored; a device the caller names must be used as given"),
    (False, False, "cuda:1", "cuda:1", "an explicit device='cuda:1' was not returned as given"),
]


@no_delegation("course_lib.device.pick_device")
def check_pick_device(pick_device):
    """pick_device(device=None) -> torch.device: explicit choice, else CUDA, else MPS, else CPU."""
    for cuda, mps, arg, expected, message in _DEVICE_CASES:
        hw = "+".join(n for n, present in (("CUDA", cuda), ("MPS", mps)) if present) or "no GPU"
        with _fake_hardware(cuda, mps):
            got = _call(pick_device, *(() if arg is None else (arg,)), context=f"(hardware: {hw}, argument {arg!r})")
        if not isinstance(got, torch.device):
            fail(
                f"pick_device returned {type(got).__name__} {got!r}, not a torch.device",
                "wrap the name: return torch.device('cuda'), so that model.to(device) and device.type work",
            )
        if (str(got) if ":" in expected else got.type) != expected:
            fail(
                f"{message} (hardware: {hw}, argument {arg!r}, you returned {got})",
                "explicit argument first (unless None/'auto'), then torch.cuda.is_available(), "
                "then torch.backends.mps.is_available(), then the CPU",
            )
    passed("pick_device: explicit choice wins, then CUDA, then Apple MPS, then the CPU; returns a torch.device")


# -- task 2: train_step -----------------------------------------------------------------------------------
def _reference_step(model, x, precision, clip):
    """The correct step on a copy of `model` with SGD(lr=LR): (loss, parameter update, raw gradient norm)."""
    model = copy.deepcopy(model).train()
    device = next(model.parameters()).device
    x, before = x.to(device), _flat_params(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        logits = model(x)
    loss = -log_prob_from_logits(logits, x).mean()
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip if clip else float("inf"))
    optimizer.step()
    return loss.item(), _flat_params(model) - before, norm.item()


def _run_learner_step(train_step, model, x, precision, clip, stale_seed):
    """The learner's step on a copy of `model` with SGD(lr=LR), watched, with old gradients left in .grad
    when `stale_seed` is set: (the returned value, the parameter update, the forward passes, GradWatch events)."""
    model = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    if stale_seed is not None:
        g = torch.Generator().manual_seed(stale_seed)
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=g).to(p.device)
    before = _flat_params(model)
    with rules.GradWatch(model, optimizer) as grads, rules.watching(model) as calls:
        loss = _call(train_step, model, optimizer, x.clone(), precision=precision, clip=clip)
    return loss, _flat_params(model) - before, calls, grads.events


def _autocast_rules(calls, precision, where):
    """The forward passes ran under bf16 autocast for 'bf16', and only then."""
    rows = (
        (precision == "fp32" and any(c["autocast"] for c in calls),
         "precision='fp32' still ran the forward pass under autocast",
         "enable autocast only for 'bf16' (and 'fp16'): torch.autocast(..., enabled=precision != 'fp32')"),
        (precision == "bf16" and not all(c["autocast"] and c["dtype"] == torch.bfloat16 for c in calls),
         "the forward pass did not run under bf16 autocast on the model's device",
         "wrap the forward pass in torch.autocast(device.type, dtype=torch.bfloat16), "
         "with device = the model's device (not a hard-coded 'cuda' or 'cpu')"),
    )  # fmt: skip
    first_rule(rows, where=where)


def _update_rules(update, ref_update, raw, clip, where):
    """The learner's parameter update against one correct step (`raw`: the gradient's norm before clipping)."""
    norm, ref_norm = update.norm().item(), ref_update.norm().item()
    ratio, cos = norm / ref_norm, torch.nn.functional.cosine_similarity(update, ref_update, dim=0).item()
    clip = clip or 0.0
    rows = (
        (cos < -0.9, "the parameters moved uphill (the NLL went up)", "minimise the negative log-likelihood"),
        (clip > 0 and not 0.9 < ratio < 1.1 and 0.9 < ratio * clip < 1.1,
         f"the gradient was clipped to norm 1.0, not to clip={clip:.3g}: the clip argument was ignored",
         "torch.nn.utils.clip_grad_norm_(model.parameters(), clip)"),
        (0 < raw < clip and ratio > 1.5 and close(ratio, clip / raw, rtol=0.1),
         "the gradient was stretched to norm clip although it was shorter: clipping only ever shortens a gradient",
         "torch.nn.utils.clip_grad_norm_(model.parameters(), clip) leaves a gradient shorter than clip as it is"),
        (clip > 0 and ratio > 1.5,
         f"the gradient was not clipped to norm {clip:.3g}: the step is {ratio:.1f}x too long",
         "call torch.nn.utils.clip_grad_norm_(model.parameters(), clip) after backward() and before optimizer.step()"),
        (clip == 0 and ratio < 0.67, f"clip=None must turn clipping off, but the step is {1 / ratio:.1f}x too short",
         "clip only when clip is set: if clip: torch.nn.utils.clip_grad_norm_(...)"),
        (cos < 0.99 or not 0.9 < ratio < 1.1,
         f"the parameter update differs from one correct step (cosine {cos:.3f}, length ratio {ratio:.2f})",
         "zero_grad -> forward under autocast -> NLL in float32, mean over images -> backward -> "
         "clip_grad_norm_ -> optimizer.step()"),
    )  # fmt: skip
    first_rule(rows, where=where)


def _check_one_step(train_step, model, x, precision, clip, stale_seed=None):
    """One step of the learner's train_step against the reference: the training rules, autocast, the loss,
    a float returned, gradients zeroed (when `stale_seed` plants old gradients), the update and its clipping."""
    device = next(model.parameters()).device
    ref_loss, ref_update, raw = _reference_step(model, x, precision, clip)
    returned, update, calls, events = _run_learner_step(train_step, model, x, precision, clip, stale_seed)
    where = f"(precision={precision!r}, clip={clip if clip is None else f'{clip:.3g}'}, device={device.type})"
    rules.training_rules(calls, "train_step", where)
    rules.on_device_rule(calls, device, where)
    _autocast_rules(calls, precision, where)
    loss = rules.as_float(returned)
    if not close(loss, ref_loss, rtol=5e-3, atol=1e-6):
        rules.diagnose_loss(loss, ref_loss, x[0].numel(), x.shape[0])
    rules.plain_number_rule("train_step", result=returned)
    if update.norm().item() == 0:
        fail(*rules.why_no_update(events, where))
    rules.stale_gradients_rule(events, "train_step", where)
    _update_rules(update, ref_update, raw, clip, where)


def _probe_step_device(train_step, model, x):
    """Device handling without a GPU: the model on the meta device, the batch on the CPU. The batch must
    reach the model on the model's device, under autocast for the model's device type in bfloat16."""
    record = probe_device(  # (the learner's zero_grad clears another meta copy's gradients: harmless)
        train_step,
        model,
        (torch.optim.SGD(meta_copy(model).parameters(), lr=LR), x.clone()),
        {"precision": "bf16", "clip": 1.0},
        what="the batch",
        hint="move the batch to the device of the model's parameters: x = x.to(next(model.parameters()).device), "
        "not to a hard-coded 'cuda' or 'cpu'",
    )
    hint = "device = next(model.parameters()).device, then torch.autocast(device.type, dtype=torch.bfloat16)"
    for device_type, dtype, enabled in record["autocast"] if record else []:
        if enabled and device_type != "meta":
            fail(
                f"torch.autocast was given the device type '{device_type}', not the type of the model's device "
                "(the check moved the model to PyTorch's 'meta' device): on any other device the forward pass "
                "would run without mixed precision",
                hint,
            )
        if enabled and dtype is None:
            fail("torch.autocast was called without dtype=torch.bfloat16: its default is float16 on a GPU", hint)
        if enabled and dtype != torch.bfloat16:
            fail(f"precision='bf16' asked torch.autocast for {dtype}, not torch.bfloat16", hint)


def _quietly(train_step, *args):
    """Run the learner's step; an error says nothing here (the checked steps report it with their context)."""
    with suppress(Exception):
        invoke(train_step, *args, precision="fp32", clip=1.0)


@no_delegation("course_lib.train.Trainer", "course_lib.train.fit", allowed=("course_lib.models.log_prob_from_logits",))
def check_train_step(train_step):
    """train_step(model, optimizer, x, *, precision="bf16", clip=1.0) -> float loss in nats per image.

    Proves: it steps the optimizer it is given (lr=0 changes nothing); with bf16, stale gradients and a clip
    far below the gradient's norm (and from 1.0) it returns the mean NLL per image as a float and takes one
    correct clipped step; with fp32, no clip and a model in eval mode it trains without autocast or clipping;
    a clip above the norm leaves the gradient alone; the batch follows the model's device."""
    seed = fresh_seed()
    model = tiny_gated(seed, IMAGE)
    x = (torch.rand(6, *IMAGE, generator=torch.Generator().manual_seed(seed)) < 0.35).long()
    rules.learning_rate_rule(  # first: an optimizer of its own would otherwise only be "a different update"
        lambda still, lr: _quietly(train_step, still, torch.optim.SGD(still.parameters(), lr=lr), x.clone()),
        model,
        "train_step",
        "take the step with the optimizer you were given: one built inside train_step ignores the caller's "
        "learning rate and forgets its state (Adam's moments) at every step",
    )
    _, _, raw = _reference_step(model, x, "bf16", None)
    clip = 0.1 * raw if not 1 / 3 < 0.1 * raw < 3 else 0.01 * raw
    _check_one_step(train_step, model, x, "bf16", clip, stale_seed=seed + 1)
    _check_one_step(train_step, model.eval(), x, "fp32", None)  # the step must switch to training mode itself
    _check_one_step(train_step, model.train(), x, "fp32", 10 * raw)
    _probe_step_device(train_step, model, x)
    if torch.cuda.is_available():  # device handling: the batch arrives on the CPU
        _check_one_step(train_step, model.to("cuda"), x, "bf16", clip)
    passed(
        "train_step: bf16 autocast, loss in nats per image (sum over pixels, mean over images), "
        "gradients zeroed and clipped, one step of the optimizer it is given"
        + (" (also on CUDA)" if torch.cuda.is_available() else "")
    )


# -- task 3: evaluate_nll -------------------------------------------------------------------------------------
def _eval_data(seed, n, shape=IMAGE):
    """n binary images of very different densities; the sparsest come last (they cost the most)."""
    g = torch.Generator().manual_seed(seed)
    density = torch.rand(n, generator=g).sort(descending=True).values * 0.9 + 0.05
    pixels = (torch.rand(n, *shape, generator=g) < density.view(-1, *[1] * len(shape))).float()
    return ImageDataset("random", pixels, torch.zeros(n, dtype=torch.long))


def _per_image(model, dataset):
    """The reference NLL of every image in nats, float64, in the data set's order."""
    with torch.no_grad():
        return -log_prob_from_logits(model(dataset.images), dataset.images).double()


def _evaluate(evaluate_nll, model, dataset, batch_size):
    """The learner's evaluation, watched: (the result dict, 'nats', 'bpd', 'n_images' as numbers, the forward
    passes)."""
    result, calls = rules.run_watched(_call, evaluate_nll, model, dataset, batch_size)
    if not isinstance(result, dict) or not {"nats", "bpd", "n_images"} <= set(result):
        fail(f"evaluate_nll returned {type(result).__name__}, not a dict with keys 'nats', 'bpd', 'n_images'",
             "return {'nats': nats_per_image, 'bpd': bits_per_dim, 'n_images': count}")  # fmt: skip
    nats, bpd, count = (rules.as_float(result[key]) for key in ("nats", "bpd", "n_images"))
    count = int(count) if count is not None and math.isfinite(count) else count
    return result, nats, bpd, count, calls


def _evaluate_edges(evaluate_nll, seed):
    """The edges: images with 2 channels and odd sizes, fewer than one batch; a very confident model (output
    biases of 40: in float32 the probability of a 0 rounds to exactly 0, so its log is lost)."""
    dataset = _eval_data(seed + 1, 3, EDGE_IMAGE)
    model = tiny_gated(seed, EDGE_IMAGE, out_bias=2.5)
    per_image = _per_image(model, dataset)
    _, nats, bpd, count, _ = _evaluate(evaluate_nll, model, dataset, 4)
    where = f"(3 images of shape {EDGE_IMAGE}, batch_size=4)"
    if not close(nats, per_image.mean().item(), "log_prob"):
        rules.diagnose_nll(nats, per_image, 4, dims=math.prod(EDGE_IMAGE), count=count, what=f"'nats' {where}")
    rules.bpd_rule(bpd, per_image.mean().item(), EDGE_IMAGE)
    confident = tiny_gated(seed, IMAGE, out_bias=40.0)
    dataset = _eval_data(seed, 5)
    want = _per_image(confident, dataset).mean().item()
    _, nats, _, _, _ = _evaluate(evaluate_nll, confident, dataset, 4)
    if not close(nats, want, "log_prob"):
        fail(
            f"with a very confident model (logits near +40) 'nats' is {nats!r}, not {want:.6g}: the log of a "
            "probability that rounds to 0 or 1 in float32 is lost",
            "work from the logits: -log_prob_from_logits(model(x), x) (binary_cross_entropy_with_logits), "
            "never the log of a sigmoid",
        )


_MAY_USE = ("course_lib.models.log_prob_from_logits", "course_lib.likelihood.nll", "course_lib.likelihood.bits_per_dim")


@no_delegation("course_lib.likelihood.evaluate", allowed=_MAY_USE)
def check_evaluate(evaluate_nll):
    """evaluate_nll(model, dataset, batch_size) -> {"nats", "bpd", "n_images"} over every image.

    Proves: it runs in eval mode without gradients and gives the caller's mode back (either mode), scores
    each image once in batches of batch_size (a last, smaller batch of the costliest images included) on the
    model's device, and returns plain numbers: nats per image, bits/dim, the count; also at the edges."""
    seed = fresh_seed()
    g = torch.Generator().manual_seed(seed)
    batch_size = 8
    n = batch_size * int(torch.randint(3, 6, (), generator=g)) + int(torch.randint(1, batch_size // 2, (), generator=g))
    dataset = _eval_data(seed, n)
    model = tiny_gated(seed, IMAGE, out_bias=2.5)  # confident: dense images are cheap, sparse ones expensive
    per_image = _per_image(model, dataset)
    full = per_image.mean().item()

    result, nats, bpd, count, calls = _evaluate(evaluate_nll, model.train(), dataset, batch_size)
    rules.eval_rules(calls, "evaluate_nll")
    rules.mode_restored_rule(model, True, "evaluate_nll")
    rules.plain_number_rule("evaluate_nll", **{key: result[key] for key in ("nats", "bpd", "n_images")})
    if not close(nats, full, "log_prob"):
        rules.diagnose_nll(nats, per_image, batch_size, dims=math.prod(IMAGE), count=count, what="'nats'")
    if count != n:
        fail(f"'n_images' is {count!r} but the data set has {n} images",
             "count the images you scored: count += x.shape[0] for every batch")  # fmt: skip
    rules.bpd_rule(bpd, full, IMAGE)
    rules.images_rule(calls, n, batch_size, "evaluate_nll")
    _evaluate(evaluate_nll, model.eval(), dataset, batch_size)
    rules.mode_restored_rule(model, False, "evaluate_nll")
    hint = "move every batch to the model's device: x = x.to(next(model.parameters()).device)"
    probe_device(evaluate_nll, model, (dataset, batch_size), what="a batch", hint=hint)
    _evaluate_edges(evaluate_nll, seed)
    passed(
        f"evaluate_nll: all {n} images scored (last batch of {n % batch_size} kept) in batches of {batch_size}, "
        "eval mode and no_grad (the caller's mode restored), nats per image and bits/dim correct, also for "
        f"images of shape {EDGE_IMAGE} and a very confident model"
    )


# -- task 4: save_checkpoint_atomically ------------------------------------------------------------------------
class _SimulatedCtrlC(KeyboardInterrupt):
    """A Ctrl-C that arrives while torch.save is writing (raised by the check's stand-in for torch.save)."""


def _payload(seed, epoch):
    g = torch.Generator().manual_seed(seed + epoch)
    return {"epoch": epoch, "state_dict": {"weight": torch.randn(64, 64, generator=g)}}


def _holds(path, payload):
    """True when `path` loads (weights_only) as `payload`."""
    with suppress(Exception):  # (a file that does not load, or holds something else, does not)
        loaded = torch.load(path, weights_only=True)
        same_weight = torch.equal(loaded["state_dict"]["weight"], payload["state_dict"]["weight"])
        return loaded["epoch"] == payload["epoch"] and same_weight
    return False


def _leftovers(path):
    return sorted(p.name for p in path.parent.iterdir() if p != path)


def _save(save_checkpoint_atomically, payload, path, error=None, half=False):
    """Run a save with torch.save replaced by a stand-in that records where it writes, then saves for real, or
    (`half`: after writing half a file) raises `error`. Returns (what the save raised or None, the targets)."""
    targets = []

    def stand_in(obj, f, *args, **kwargs):
        name = f if isinstance(f, (str, os.PathLike)) else getattr(f, "name", None)
        targets.append(Path(name).resolve() if isinstance(name, (str, os.PathLike)) else None)
        if error is None:
            return real["save"](obj, f, *args, **kwargs)
        if half:
            Path(f).write_bytes(b"PK half") if isinstance(f, (str, os.PathLike)) else f.write(b"PK half")
        raise error

    with patched(torch, save=stand_in) as real:
        try:
            invoke(save_checkpoint_atomically, payload, path)
        except (Exception, _SimulatedCtrlC) as raised:  # the learner must re-raise whatever happened
            return raised, targets
    return None, targets


def _with_str_path(fn, *args):
    """The learner's fn called with its last argument, a path, given as a string: an error says so."""
    hint = "accept both: path = Path(path)"
    return call(fn, *args[:-1], str(args[-1]), context="with `path` given as a string (not a pathlib.Path)", hint=hint)


def _first_save(save_checkpoint_atomically, good, path):
    """A save that succeeds: through a temporary file in the checkpoint's folder, the file loads back, no
    other file is left."""
    error, targets = _save(save_checkpoint_atomically, good, path)
    if path.resolve() in targets:
        fail(
            "torch.save wrote straight to `path`: it empties the file first, so a crash halfway (a full disk, "
            "Ctrl-C) destroys the last good checkpoint",
            "torch.save to a temporary file in the same folder, then os.replace(tmp, path)",
        )
    if error is not None:
        explain(error, getattr(save_checkpoint_atomically, "__name__", "save_checkpoint_atomically"))
    if not path.is_file():
        fail("no file was written at `path`", "save the payload with torch.save(...) and end with the file at `path`")
    if not _holds(path, good):
        fail("the saved file does not load back with torch.load(path, weights_only=True) as the same payload",
             "write the payload with torch.save(payload, file)")  # fmt: skip
    elsewhere = [t for t in targets if t is not None and t.parent != path.parent.resolve()]
    if elsewhere:
        fail(
            f"the temporary file was written to the folder {elsewhere[0].parent}, not to the checkpoint's folder: "
            "os.replace only renames within one file system, and fails with 'Invalid cross-device link' when "
            "that folder is on another one",
            "put the temporary file next to the checkpoint, e.g. tmp = path.with_name(path.name + '.tmp')",
        )
    if _leftovers(path):
        fail(f"a successful save left extra files behind: {_leftovers(path)}",
             "move the temporary file onto `path` with os.replace(tmp, path)")  # fmt: skip


_CLEAN_UP = "on failure delete the temporary file (try/except, then re-raise)"
_RERAISE = "after cleaning up, re-raise the very error you caught: a bare `raise`"
_FAILED_SAVES = [  # (makes the error torch.save raises, after writing half a file?, what the verdicts call it, hints)
    (lambda: RuntimeError("simulated crash while saving"), True, "a failed save", _CLEAN_UP, _RERAISE),
    (_SimulatedCtrlC, True, "a Ctrl-C (KeyboardInterrupt) in the middle of torch.save",
     "KeyboardInterrupt is not an Exception: clean up in `except BaseException:` (then re-raise)", _RERAISE),
    (lambda: OSError(errno.ENOSPC, "No space left on device (simulated by the check)"), False,
     "a full disk (torch.save failed before creating the temporary file)", _CLEAN_UP,
     "the temporary file may not exist yet: delete it with tmp.unlink(missing_ok=True), then re-raise"),
]  # fmt: skip


def _failed_save(save_checkpoint_atomically, good, path, payload, error, half, what, cleanup_hint, reraise_hint):
    """A save that fails (torch.save raises `error()`): the good checkpoint stays whole, nothing is left behind,
    the error reaches the caller as it was."""
    error = error()
    raised, _ = _save(save_checkpoint_atomically, payload, path, error, half)
    left = _leftovers(path)
    first_rule([
        (not path.exists(), f"{what} deleted the good checkpoint",
         "never delete or open the old file: write a temporary file, then os.replace it onto `path`"),
        (not _holds(path, good),
         f"{what} overwrote the good checkpoint: `path` no longer loads as the previous good checkpoint",
         "write to a temporary file in the same folder and os.replace(tmp, path) only once it is complete"),
        (bool(left), f"{what} left a temporary file behind: {left}", cleanup_hint),
        (raised is None, f"{what} returned silently: the caller believes the checkpoint is written",
         "clean up, then re-raise the error (`raise` inside the except block)"),
        (not isinstance(raised, type(error)) or getattr(raised, "errno", None) != getattr(error, "errno", None),
         f"{what} did not reach the caller: it became {type(raised).__name__}: {raised}", reraise_hint),
    ])  # fmt: skip


@no_delegation("course_lib.checkpoint.save_checkpoint")
def check_save_checkpoint(save_checkpoint_atomically):
    """save_checkpoint_atomically(payload, path): all or nothing, and never destroys the previous file.

    Proves: a save goes through a temporary file in the checkpoint's folder and leaves only `path`, which
    loads back; a crash, a Ctrl-C and a full disk mid-save each keep the previous checkpoint whole, leave no
    temporary file and re-raise the very error; a later save (to a string path) replaces the file."""
    if not callable(save_checkpoint_atomically):
        call(save_checkpoint_atomically)
    seed = fresh_seed()
    with tempfile.TemporaryDirectory(prefix="check03-") as folder:
        path = Path(folder) / "run" / "checkpoint.pt"
        path.parent.mkdir()
        good = _payload(seed, 1)
        _first_save(save_checkpoint_atomically, good, path)
        for failure in _FAILED_SAVES:
            _failed_save(save_checkpoint_atomically, good, path, _payload(seed, 2), *failure)
        newer = _payload(seed, 3)
        _with_str_path(save_checkpoint_atomically, newer, path)
        if not _holds(path, newer):
            fail(
                "a second save did not replace the old checkpoint", "os.replace(tmp, path) overwrites an existing file"
            )
        if _leftovers(path):
            fail(f"a save to a path given as a string left extra files behind: {_leftovers(path)}",
                 "accept both: path = Path(path)")  # fmt: skip
    passed(
        "save_checkpoint_atomically: writes a loadable file via a temporary file in the same folder; a crash, a "
        "Ctrl-C or a full disk mid-save keeps the good checkpoint, leaves no temporary file and re-raises the error"
    )


# -- task 5: resume ------------------------------------------------------------------------------------------------
def _trained(seed, steps):
    """A tiny model and its Adam optimizer after `steps` steps on random images."""
    model = tiny_gated(seed, IMAGE)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = (torch.rand(4, *IMAGE, generator=g) < 0.4).long()
        optimizer.zero_grad()
        (-log_prob_from_logits(model(x), x).mean()).backward()
        optimizer.step()
    return model, optimizer


_CODE_RAN = []  # what a malicious checkpoint's code does when it runs (here: it leaves a mark)


class _RunsCodeWhenLoaded:
    """Unpickling this object runs code: what torch.load(..., weights_only=False) allows any file to do."""

    def __reduce__(self):
        return (exec, ("import coursework.checks.lesson03 as m; m._CODE_RAN.append(True)",))


def _resume_from_nothing(resume, seed, path):
    """No file at `path` yet: resume returns 0 and leaves the model alone."""
    fresh, fresh_opt = _trained(seed + 1, 0)
    before = copy.deepcopy(fresh.state_dict())
    hint = "no file yet means a fresh start: if not path.exists(): return 0, before loading anything"
    start = call(resume, fresh, fresh_opt, path, context="(no checkpoint file at `path` yet)", hint=hint)
    if start != 0:
        fail(f"without a checkpoint file, resume returned {start!r}", "no checkpoint yet: return 0 (start at epoch 0)")
    if any(not torch.equal(before[k], v) for k, v in fresh.state_dict().items()):
        fail("without a checkpoint file, resume changed the model", "leave the model as it is when there is no file")


def _hostile_files(resume, seed, checkpoint, folder):
    """Offer resume a checkpoint that runs code when unpickled and one that lacks a weight: {"ran_code": did
    the code run?, "accepted_partial": was the partial file accepted?, "missing": the missing weight's name}."""
    hostile, partial = folder / "downloaded.pt", folder / "other_model.pt"
    torch.save({**checkpoint, "note": _RunsCodeWhenLoaded()}, hostile)
    missing = sorted(checkpoint["state_dict"])[-1]
    weights = {k: v for k, v in checkpoint["state_dict"].items() if k != missing}
    torch.save({**checkpoint, "state_dict": weights}, partial)

    def accepts(path):  # refusing the file (raising) is the right answer
        with suppress(Exception):
            return invoke(resume, *_trained(seed + 1, 0), path) or True
        return False

    _CODE_RAN.clear()
    accepts(hostile)
    seen = dict(ran_code=bool(_CODE_RAN), accepted_partial=accepts(partial), missing=missing)
    _CODE_RAN.clear()
    return seen


def _resume_verdicts(seen, saved_model, saved_opt, epoch):
    """(wrong?, message, hint) for what resume did; `seen`: its start epoch, model, optimizer, torch.load
    calls, the start epoch from a path given as a string, and what it did with the hostile files."""
    start, state, want = seen["start"], seen["optimizer"].state_dict()["state"], saved_opt.state_dict()["state"]
    load = "torch.load(path, map_location=next(model.parameters()).device, weights_only=True)"
    weights = zip(seen["model"].state_dict().values(), saved_model.state_dict().values())
    moments = set(state) == set(want) and all(torch.equal(state[k]["exp_avg"], want[k]["exp_avg"]) for k in want)
    return [
        (start == epoch, f"resume returned {start}, the epoch that was already finished: it would be trained twice",
         "the checkpoint stores the last finished epoch; return epoch + 1"),
        (start != epoch + 1, f"resume returned {start!r}; the checkpoint's last finished epoch is {epoch}",
         "return checkpoint['epoch'] + 1"),
        (any(not torch.equal(a, b) for a, b in weights), "the model's weights were not restored",
         "model.load_state_dict(checkpoint['state_dict'])"),
        (not state or not moments,
         "the optimizer state was not restored: Adam restarts with empty moment estimates and its step count at 0",
         "optimizer.load_state_dict(checkpoint['optimizer'])"),
        (seen["accepted_partial"],
         f"resume accepted a checkpoint that lacks one of the model's weights ('{seen['missing']}') without an "
         "error: load_state_dict(..., strict=False) silently keeps the fresh, untrained values for it",
         "model.load_state_dict(checkpoint['state_dict']): strict (the default) refuses missing or unexpected keys"),
        (seen["ran_code"],
         "resume ran code hidden in a checkpoint file: torch.load(..., weights_only=False) unpickles any object, "
         "and unpickling can run any code (a checkpoint downloaded from the internet could delete your files)",
         "load with torch.load(path, map_location=..., weights_only=True): it refuses anything but tensors and "
         "plain containers"),
        (any(c.get("weights_only") is not True for c in seen["loads"]),
         "resume called torch.load without weights_only=True: PyTorch before 2.6 then unpickles any object, "
         "so loading a checkpoint from someone else could run their code", load),
        (any(c["map_location"] is None for c in seen["loads"]),
         "resume called torch.load without map_location: a checkpoint saved on a GPU then loads onto that GPU, "
         "and fails on a machine without one", load),
        (seen["as_string"] != epoch + 1,
         f"with `path` given as a string, resume returned {seen['as_string']!r}, not {epoch + 1}",
         "accept both: path = Path(path) at the start"),
    ]  # fmt: skip


@no_delegation(
    "course_lib.checkpoint.load_checkpoint",
    "course_lib.checkpoint.load_into",
    "course_lib.checkpoint.load_model",
    "course_lib.train.Trainer",
)
def check_resume(resume):
    """resume(model, optimizer, path) -> the epoch to start from (0 without a checkpoint).

    Proves: without a file it returns 0 and leaves the model alone; else it restores the weights and Adam's
    state and returns the epoch after the last finished one, loading with weights_only=True (hidden code does
    not run) and a map_location; it refuses a checkpoint that lacks a weight; `path` may be a string."""
    seed = fresh_seed()
    epoch = int(torch.randint(1, 9, (), generator=torch.Generator().manual_seed(seed)))
    saved_model, saved_opt = _trained(seed, 3)
    checkpoint = {"state_dict": saved_model.state_dict(), "optimizer": saved_opt.state_dict(), "epoch": epoch}
    with tempfile.TemporaryDirectory(prefix="check03-") as name:
        folder = Path(name)
        path = folder / "checkpoint.pt"
        _resume_from_nothing(resume, seed, path)
        torch.save(checkpoint, path)
        model, optimizer = _trained(seed + 1, 0)
        loads = []

        def spied_load(f, *args, **kwargs):
            loads.append({"map_location": args[0] if args else kwargs.get("map_location"), **kwargs})
            return real["load"](f, *args, **kwargs)

        with patched(torch, load=spied_load) as real:
            start = _call(resume, model, optimizer, path)
        seen = dict(start=start, model=model, optimizer=optimizer, loads=loads)
        seen.update(_hostile_files(resume, seed, checkpoint, folder))
        seen["as_string"] = _with_str_path(resume, *_trained(seed + 1, 0), path)
    first_rule(_resume_verdicts(seen, saved_model, saved_opt, epoch))
    passed(
        "resume: weights and optimizer state restored, training continues after the last finished epoch, "
        "no checkpoint means epoch 0, and the file is loaded with weights_only=True onto the model's device"
    )
