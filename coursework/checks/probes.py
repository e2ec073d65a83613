"""Probes: what a learner's function does with a model's device, without a GPU (`probe_device`, on PyTorch's
"meta" device), and the small random model the checks test with (`tiny_gated`)."""

from __future__ import annotations

import contextlib
import copy
import warnings

import torch

from course_lib.models import GatedPixelCNN

from .helpers import fail, invoke, patched


def tiny_gated(
    seed: int, image_shape=(1, 8, 8), *, sharpen: bool = False, out_bias: float | None = None, **config
) -> GatedPixelCNN:
    """A small random Gated PixelCNN (8 channels, dilations 1-2 unless `config` says otherwise), built from
    `seed` without touching the global random generator.

    sharpen: confident, varied logits (hidden weights x2, output weights x4, output biases ~ N(0, 1.5)), so
    that every prediction depends clearly on the pixels before it. out_bias: every output bias set to it.
    """
    config = {"channels": 8, "dilations": (1, 2), **config}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GatedPixelCNN(image_shape=image_shape, **config)
        with torch.no_grad():
            if sharpen:
                for name, p in model.named_parameters():
                    if p.dim() > 1 and not name.startswith("out2"):
                        p.mul_(2)
                model.out2.weight.mul_(4)
                model.out2.bias.normal_(0, 1.5)
            if out_bias is not None:
                model.out2.bias.fill_(out_bias)
    return model


# -- device probes (lessons 03-05): device handling tested without a GPU ---------------------------------
class ProbeStop(BaseException):
    """Raised by `probe_forward` at the model's first forward pass, to stop the learner's function there.
    A BaseException, so that a learner's ``except Exception`` does not swallow it."""


def meta_copy(model):
    """A copy of `model` on PyTorch's "meta" device: tensors with shapes and no data. A learner's code that
    honours the model's device sends its tensors there; one that forgets, or hard-codes "cpu", does not."""
    return copy.deepcopy(model).to("meta")


def _recording_autocast(record: list):
    """A stand-in for ``torch.autocast`` (which refuses the meta device) that appends (device_type, dtype,
    enabled) to `record` for every context made, and does nothing else."""

    class RecordingAutocast(contextlib.nullcontext):
        def __init__(self, device_type, dtype=None, enabled=True, cache_enabled=None):
            super().__init__(self)  # `with` gives the context itself, as torch.autocast does
            record.append((str(device_type), dtype, bool(enabled)))

        def __call__(self, func):  # as a decorator
            return func

    return RecordingAutocast


def _meta_truth(meta_bool: bool) -> dict:
    """Tensor methods under which a meta tensor (no value) reads as `meta_bool` in ``if``, and ``.all()`` /
    ``.any()`` of one are a meta bool (PyTorch's own meta version is slow to load)."""
    original_bool = torch.Tensor.__bool__

    def fake_bool(self):
        return meta_bool if self.device.type == "meta" else original_bool(self)

    def reduction(original):
        def reduce(self, *args, **kwargs):
            if self.device.type == "meta" and not args and not kwargs:
                return torch.empty((), dtype=torch.bool, device="meta")
            return original(self, *args, **kwargs)

        return reduce

    return {"__bool__": fake_bool, "all": reduction(torch.Tensor.all), "any": reduction(torch.Tensor.any)}


def probe_forward(fn, model, *args, meta_bool=None, **kwargs):
    """Run the learner's ``fn(*args, **kwargs)``, which uses `model` (a `meta_copy`), up to the model's first
    forward pass and stop it there: what did the function send to the model, and how?

    Meanwhile ``torch.autocast`` is replaced by a recorder (autocast refuses the meta device), and with
    `meta_bool` set, ``bool()`` of a meta tensor gives `meta_bool` instead of raising (a meta tensor has no
    value: ``if known.all():`` needs one).

    Returns None when `fn` never reached a forward pass (it returned, or raised first: the probe then says
    nothing), else {"devices": [the device of each tensor argument of the forward pass, in order],
    "autocast": [(device_type, dtype or None, enabled) of every autocast context entered before it]}.
    """
    record = {"devices": None, "autocast": []}

    def stop(module, inputs):
        record["devices"] = [a.device for a in inputs if torch.is_tensor(a)]
        raise ProbeStop()

    autocast = _recording_autocast(record["autocast"])
    truth = _meta_truth(meta_bool) if meta_bool is not None else {}
    handle = model.register_forward_pre_hook(stop)
    try:
        with patched(torch, autocast=autocast), patched(torch.amp, autocast=autocast), patched(torch.Tensor, **truth):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                invoke(fn, *args, **kwargs)
    except (ProbeStop, Exception):  # Exception: code that cannot run on the meta device, the probe tells nothing
        pass
    finally:
        handle.remove()
    return None if record["devices"] is None else record


def probe_device(fn, model, args=(), kwargs=None, *, what: str, hint: str, meta_bool=None, positions=None):
    """The device check in one call: run ``fn(meta, *args, **kwargs)`` with `meta` a `meta_copy` of `model`,
    up to its first forward pass, and fail (naming `what` the model received) when a tensor argument of that
    pass (those at `positions`, default all) is not on the model's device. Returns the `probe_forward` record
    (None when no forward pass was reached: the probe then says nothing)."""
    meta = meta_copy(model)
    record = probe_forward(fn, meta, meta, *args, meta_bool=meta_bool, **(kwargs or {}))
    devices = [] if record is None else record["devices"]
    wrong = [d for k, d in enumerate(devices) if d.type != "meta" and (positions is None or k in positions)]
    if wrong:
        name = getattr(fn, "__name__", None) or type(fn).__name__
        fail(
            f"{name} gave the model {what} on the device '{wrong[0]}', not on the model's device (the check "
            "moved the model to PyTorch's 'meta' device, as a GPU would, to see where your tensors go)",
            hint,
        )
    return record
