"""Checks for lesson 03 (training on a GPU): device choice, a mixed-precision training step, an evaluation
loop over every test image, an atomic checkpoint save, and resuming from a checkpoint.

Each check builds fresh random inputs (a tiny Gated PixelCNN on 8x8 binary images), runs the learner's
function next to the reference behaviour computed with course_lib, prints one verdict line and raises
CheckFailed when something is wrong. Known mistakes get their own message (nats reported as bits, a
dropped last batch, a mean over pixels, missing clipping or autocast, a failed save that destroys the
good checkpoint, ...).
"""

import copy
import math
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

from course_lib.data import ImageDataset
from course_lib.likelihood import log_prob_from_logits

from .helpers import LN2, ForwardSpy, call, close, fail, fresh_seed, not_implemented, passed, tiny_gated

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


def _call(fn, *args, **kwargs):
    """Call the learner's code through `checks.call` (NotImplementedError and other exceptions become
    verdicts); a device mismatch gets its own hint."""
    name = getattr(fn, "__name__", None) or type(fn).__name__

    def guarded(*a, **k):
        try:
            return fn(*a, **k)
        except RuntimeError as err:
            if "device" in str(err).lower():
                first = str(err).strip().splitlines()[0][:300]
                fail(
                    f"{name} raised RuntimeError: {first}",
                    "move every batch to the device the model lives on, e.g. x = x.to(next(model.parameters()).device)",
                )
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


def check_pick_device(pick_device):
    """pick_device(device=None) -> torch.device: explicit choice, else CUDA, else MPS, else CPU."""
    cases = [  # (cuda present, mps present, argument, expected, message if wrong)
        (True, True, None, "cuda", "with both CUDA and Apple MPS present you did not pick CUDA; check CUDA first"),
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
        with _fake_hardware(cuda, mps):
            got = _call(pick_device, *(() if arg is None else (arg,)))
        if not isinstance(got, torch.device):
            fail(
                f"pick_device returned {type(got).__name__} {got!r}, not a torch.device",
                "wrap the name: return torch.device('cuda'), so that model.to(device) and device.type work",
            )
        ok = str(got) == expected if ":" in expected else got.type == expected
        if not ok:
            hw = "+".join(n for n, present in (("CUDA", cuda), ("MPS", mps)) if present) or "no GPU"
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
    model = copy.deepcopy(model)
    device = next(model.parameters()).device
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    if noise is not None:
        for p, n in zip(model.parameters(), noise):
            p.grad = n.clone().to(device)
    before = _flat_params(model)
    spy = ForwardSpy(model)
    try:
        loss = _call(train_step, model, optimizer, x.clone(), precision=precision, clip=clip)
    finally:
        spy.remove()
    return _as_float(loss), _flat_params(model) - before, spy.calls


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
    loss, update, calls = _run_learner_step(train_step, model, x, precision, clip, noise)
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

    ref_norm, norm = ref_update.norm().item(), update.norm().item()
    if norm == 0:
        fail(
            f"the parameters did not change {where}", "call loss.backward() and then optimizer.step() inside train_step"
        )
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


def check_train_step(train_step):
    """train_step(model, optimizer, x, *, precision="bf16", clip=1.0) -> float loss in nats per image."""
    seed = fresh_seed()
    g = torch.Generator().manual_seed(seed)
    model = tiny_gated(seed, IMAGE)
    batch = 6
    x = (torch.rand(batch, *IMAGE, generator=g) < 0.35).long()
    _, _, raw = _reference_step(model, x, "bf16", None)
    # bf16 autocast, a clip well below the gradient norm, and stale gradients left in .grad
    _check_one_step(train_step, model, x, "bf16", 0.1 * raw, use_noise=True)
    # fp32 without clipping
    model.eval()  # the step must switch to training mode itself
    _check_one_step(train_step, model, x, "fp32", None, use_noise=False)
    model.train()
    if torch.cuda.is_available():  # device handling: the batch arrives on the CPU
        _check_one_step(train_step, model.to("cuda"), x, "bf16", 0.1 * raw, use_noise=False)
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
    kept = n - n % batch_size
    batch_means = [per_image[i : i + batch_size].mean().item() for i in range(0, n, batch_size)]

    model.train()
    spy = ForwardSpy(model)
    try:
        result = _call(evaluate_nll, model, dataset, batch_size)
    finally:
        spy.remove()
    if not isinstance(result, dict) or not {"nats", "bpd", "n_images"} <= set(result):
        fail(
            f"evaluate_nll returned {type(result).__name__}, not a dict with keys 'nats', 'bpd', 'n_images'",
            "return {'nats': nats_per_image, 'bpd': bits_per_dim, 'n_images': count}",
        )
    if not spy.calls:
        fail("evaluate_nll never called the model", "loop over a DataLoader of the dataset and call model(x)")
    if any(c["training"] for c in spy.calls):
        fail(
            "the model was evaluated in training mode",
            "call model.eval() before the loop (dropout and batch norm behave differently in training mode)",
        )
    if any(c["grad"] for c in spy.calls):
        fail(
            "the evaluation recorded gradients (no torch.no_grad())",
            "wrap the loop in `with torch.no_grad():` (or decorate the function): faster and less memory",
        )
    if not model.training:
        fail(
            "the model was left in eval mode after evaluating",
            "remember was_training = model.training and call model.train(was_training) at the end",
        )
    nats, bpd, count = _as_float(result["nats"]), _as_float(result["bpd"]), _as_float(result["n_images"])
    count = int(count) if count is not None and math.isfinite(count) else count

    ok = _close(nats, full, rtol=1e-4)
    if not ok:
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
        fail(
            f"'nats' is {nats!r} but the mean NLL of the {n} images is {full:.4f} nats per image",
            "NLL per image = -(log-likelihood summed over pixels); average it over every image",
        )
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
    passed(
        f"evaluate_nll: all {n} images scored (last batch of {n % batch_size} kept), eval mode and no_grad, "
        f"nats per image and bits/dim correct"
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


def check_save_checkpoint(save_checkpoint_atomically):
    """save_checkpoint_atomically(payload, path): all or nothing, and never destroys the previous file."""
    seed = fresh_seed()
    with tempfile.TemporaryDirectory(prefix="check03-") as folder:
        path = Path(folder) / "run" / "checkpoint.pt"
        path.parent.mkdir()
        good = _payload(seed, 1)
        _call(save_checkpoint_atomically, good, path)
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
        leftovers = sorted(p.name for p in path.parent.iterdir() if p != path)
        if leftovers:
            fail(
                f"a successful save left extra files behind: {leftovers}",
                "move the temporary file onto `path` with os.replace(tmp, path)",
            )

        bad = {**_payload(seed, 2), "extra": _ExplodesWhenSaved()}
        raised = False
        try:
            save_checkpoint_atomically(bad, path)
        except NotImplementedError:
            not_implemented(getattr(save_checkpoint_atomically, "__name__", None))
        except Exception:
            raised = True
        if not path.exists():
            fail(
                "a failed save deleted the good checkpoint",
                "never delete or open the old file: write a temporary file, then os.replace it onto `path`",
            )
        loaded = _load(path)
        if loaded is None:
            fail(
                "a failed save overwrote the good checkpoint with a broken file (it no longer loads)",
                "write to a temporary file in the same folder and os.replace(tmp, path) only once it is complete",
            )
        if not _same(loaded, good):
            fail(
                "after a failed save, `path` no longer holds the previous good checkpoint",
                "only move the new file into place after torch.save finished without error",
            )
        leftovers = sorted(p.name for p in path.parent.iterdir() if p != path)
        if leftovers:
            fail(
                f"a failed save left a temporary file behind: {leftovers}",
                "on failure delete the temporary file (try/except, then re-raise)",
            )
        if not raised:
            fail(
                "a failed save returned silently: the caller believes the checkpoint is written",
                "clean up, then re-raise the error (`raise` inside the except block)",
            )

        newer = _payload(seed, 3)
        _call(save_checkpoint_atomically, newer, path)
        loaded = _load(path)
        if loaded is None or not _same(loaded, newer):
            fail(
                "a second save did not replace the old checkpoint", "os.replace(tmp, path) overwrites an existing file"
            )
    passed(
        "save_checkpoint_atomically: writes a loadable file; a crash mid-save keeps the good checkpoint, "
        "leaves no temporary file and raises"
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


def check_resume(resume):
    """resume(model, optimizer, path) -> the epoch to start from (0 without a checkpoint)."""
    seed = fresh_seed()
    epoch = int(torch.randint(1, 9, (), generator=torch.Generator().manual_seed(seed)))
    saved_model, saved_opt = _trained(seed, 3)
    with tempfile.TemporaryDirectory(prefix="check03-") as folder:
        path = Path(folder) / "checkpoint.pt"
        fresh, fresh_opt = _trained(seed + 1, 0)
        before = copy.deepcopy(fresh.state_dict())
        start = _call(resume, fresh, fresh_opt, path)
        if start != 0:
            fail(
                f"without a checkpoint file, resume returned {start!r}",
                "no checkpoint yet: return 0 (start at epoch 0)",
            )
        if any(not torch.equal(before[k], v) for k, v in fresh.state_dict().items()):
            fail(
                "without a checkpoint file, resume changed the model", "leave the model as it is when there is no file"
            )

        torch.save({"state_dict": saved_model.state_dict(), "optimizer": saved_opt.state_dict(), "epoch": epoch}, path)
        model, optimizer = _trained(seed + 1, 0)
        start = _call(resume, model, optimizer, path)
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
    passed(
        "resume: weights and optimizer state restored, training continues after the last finished epoch, "
        "and no checkpoint means epoch 0"
    )
