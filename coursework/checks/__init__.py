"""Checks for the graded exercises: instant feedback for the learner, points for the autograder.

Each exercise notebook calls a check right after a task, for example
``checks.lesson01.check_nll(nll)``. A check runs the learner's code on fresh random inputs, compares it
with the reference behaviour computed with ``course_lib``, and prints one line:

    ✓ <what passed>
    ✗ <what is wrong>. Hint: <hint>

On failure it also raises :class:`CheckFailed`, so the cell shows an error and the autograder
(``python -m course_lib.grade``) gives the task no points. The verdict never shows the solution.

This module holds the shared machinery; the checks themselves live in one module per lesson
(``lesson01`` ... ``lesson05``), imported lazily: ``from course_lib import checks`` then
``checks.lesson02.check_mask(...)``.

Writing a check (in ``lessonNN.py``)::

    from . import call, close, expect, fail, fresh_generator, passed

    def check_nll(nll):
        g = fresh_generator()
        x = torch.randint(0, 2, (3, 1, 4, 4), generator=g).float()
        logits = torch.randn(3, 1, 4, 4, generator=g)
        got = call(nll, logits, x)                       # NotImplementedError -> "✗ not implemented yet"
        ref = reference_nll(logits, x)
        expect(got.shape == ref.shape, f"nll returned shape {tuple(got.shape)}, expected {tuple(ref.shape)}",
               "return one number per image")
        if close(got, ref / math.log(2)):
            fail("you returned bits, not nats", "use the natural logarithm")
        expect(close(got, ref), "nll differs from the reference", "sum over pixels, not mean")
        passed("nll matches the reference on 3 random images")
"""
from __future__ import annotations

import importlib
import os
import traceback
from typing import Any, Callable

import torch

__all__ = [
    "CheckFailed", "passed", "fail", "expect", "verdict", "not_implemented", "call", "close",
    "fresh_generator", "fresh_seed",
]

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


def expect(condition: Any, what_is_wrong: str, hint: str | None = None) -> None:
    """Fail with `what_is_wrong` and `hint` unless `condition` holds."""
    if not condition:
        fail(what_is_wrong, hint)


def verdict(ok: Any, what_passed: str, what_is_wrong: str, hint: str | None = None) -> str:
    """Print ``✓ what_passed`` when `ok`, else fail with ``✗ what_is_wrong. Hint: hint``."""
    if ok:
        return passed(what_passed)
    fail(what_is_wrong, hint)


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
        fail(f"expected a function, got {type(fn).__name__}",
             "pass the function itself (no parentheses) to the check")
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


def _learner_line(error: BaseException) -> str | None:
    """The last line of code outside course_lib in the traceback (the learner's line), if any."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    line = None
    for frame in traceback.extract_tb(error.__traceback__):
        if frame.filename and not os.path.abspath(frame.filename).startswith(here) and frame.line:
            line = frame.line.strip()
    return line


def close(a, b, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    """True when `a` and `b` (tensors or numbers) have the same shape and equal values within tolerance."""
    try:
        a = torch.as_tensor(a).detach().double().cpu()
        b = torch.as_tensor(b).detach().double().cpu()
    except (TypeError, ValueError, RuntimeError):
        return False
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=rtol, atol=atol, equal_nan=False))


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
        self.calls.append({"training": module.training, "grad": torch.is_grad_enabled(),
                           "autocast": torch.is_autocast_enabled(dev),
                           "dtype": torch.get_autocast_dtype(dev),
                           "device": x.device if torch.is_tensor(x) else None})

    def remove(self):
        self.handle.remove()


def __getattr__(name: str):
    """Import lesson modules lazily: ``checks.lesson01`` works after ``from course_lib import checks``."""
    if name.startswith("lesson"):
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"{__name__}.{name}":
                raise AttributeError(f"course_lib.checks has no module {name!r}") from None
            raise
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
