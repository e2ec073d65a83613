"""What every check shares: the verdict vocabulary, calling the learner's code, comparing numbers,
fresh random inputs, watching a model, and the small models the checks test with.

The vocabulary: `passed(what)` prints ``✓ what``; `fail(what, hint)` prints ``✗ what. Hint: hint`` and raises
`CheckFailed`; `call(fn, ...)` runs the learner's function and turns its exceptions (``NotImplementedError`` included) into verdicts.
"""

from __future__ import annotations

import functools
import math
import os
import traceback
from collections.abc import Callable

import torch

import course_lib
import coursework
from course_lib.models import GatedPixelCNN

LN2 = math.log(2)  # nats per bit

PASS_MARK = "✓"
FAIL_MARK = "✗"


class CheckFailed(AssertionError):
    """Raised by a check that failed; its message is the verdict line (starting with ✗)."""

    def _render_traceback_(self):
        # IPython shows this instead of a long traceback through the check's internals.
        return [f"CheckFailed: {self}"]


def _sentence(text: str) -> str:
    text = str(text).strip()
    return text if not text or text[-1] in ".!?" else text + "."


def passed(what: str) -> str:
    """Print ``✓ <what>`` and return the line."""
    line = f"{PASS_MARK} {str(what).strip()}"
    print(line, flush=True)
    return line


def fail(what: str, hint: str | None = None):
    """Print ``✗ <what>. Hint: <hint>`` and raise :class:`CheckFailed` with that line."""
    line = f"{FAIL_MARK} {_sentence(what)}"
    if hint:
        line += f" Hint: {_sentence(hint)}"
    print(line, flush=True)
    raise CheckFailed(line)


def not_implemented(name: str | None = None):
    """Fail with the standard "not implemented yet" verdict."""
    what = "not implemented yet" if not name else f"{name} is not implemented yet"
    fail(what, "replace `raise NotImplementedError()` with your code, run that cell, then run this check again")


def call(fn: Callable, *args, **kwargs):
    """Call the learner's `fn` and turn its exceptions into verdicts.

    ``NotImplementedError`` becomes "✗ not implemented yet"; any other exception becomes
    "✗ <name> raised <Error>: <message>" with the line of the learner's code that raised it.
    A :class:`CheckFailed` raised inside (a nested check) passes through unchanged.
    """
    name = getattr(fn, "__name__", None) or type(fn).__name__
    if not callable(fn):
        fail(f"expected a function, got {type(fn).__name__}", "pass the function itself (no parentheses) to the check")
    try:
        return fn(*args, **kwargs)
    except CheckFailed:
        raise
    except NotImplementedError:
        not_implemented(name)
    except Exception as error:  # noqa: BLE001 - any learner error becomes a verdict
        where = _learner_line(error)
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        what = f"{name} raised {type(error).__name__}" + (f": {message}" if message else "")
        if where:
            what += f" (at `{where}`)"
        fail(what[:400], "run your function on a small input in a new cell to see the full error")


_PACKAGES = tuple(os.path.dirname(os.path.abspath(m.__file__)) + os.sep for m in (course_lib, coursework))


def _learner_line(error: BaseException) -> str | None:
    """The last line of code outside course_lib and coursework in the traceback (the learner's line), if any."""
    line = None
    for frame in traceback.extract_tb(error.__traceback__):
        if frame.filename and not os.path.abspath(frame.filename).startswith(_PACKAGES) and frame.line:
            line = frame.line.strip()
    return line


def close(a, b, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    """True when `a` and `b` (tensors or numbers) have the same shape and finite values equal within
    |a - b| <= atol + rtol * |b|. Anything else (None, a string, NaN, inf) is never close."""
    try:
        a = torch.as_tensor(a.detach() if torch.is_tensor(a) else a).double().cpu()
        b = torch.as_tensor(b.detach() if torch.is_tensor(b) else b).double().cpu()
    except (TypeError, ValueError, RuntimeError):
        return False
    if a.shape != b.shape or not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        return False
    return bool(torch.allclose(a, b, rtol=rtol, atol=atol))


def fresh_seed() -> int:
    """A new random seed each call, so checks test on fresh inputs (not the notebook's seed)."""
    return int.from_bytes(os.urandom(4), "little")


def fresh_generator(seed: int | None = None) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with `seed` or a fresh random seed."""
    g = torch.Generator()
    g.manual_seed(fresh_seed() if seed is None else seed)
    return g


class ForwardSpy:
    """Watches a learner's function use `model`: records, at every forward call, the training mode,
    whether gradients were on, the autocast state and dtype, and the input's device. `remove()` stops it."""

    def __init__(self, model):
        self.calls = []
        self.param_device = next(model.parameters()).device
        self.handle = model.register_forward_pre_hook(self)

    def __call__(self, module, args):
        x = args[0] if args else None
        dev = self.param_device.type
        self.calls.append(
            {
                "training": module.training,
                "grad": torch.is_grad_enabled(),
                "autocast": torch.is_autocast_enabled(dev),
                "dtype": torch.get_autocast_dtype(dev),
                "device": x.device if torch.is_tensor(x) else None,
            }
        )

    def remove(self):
        self.handle.remove()


def isolated(check: Callable) -> Callable:
    """Decorator for a check: it runs without touching the notebook's global random state (fresh inputs come
    from `fresh_generator`; the learner's code and the references may still draw from torch's generator) and
    on one CPU thread (tiny models: threads only add overhead on a busy machine), both restored afterwards."""

    @functools.wraps(check)
    def wrapper(*args, **kwargs):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.random.fork_rng(devices=[]):
                return check(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return wrapper


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
